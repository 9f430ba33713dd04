"""Running one function in several forked OS processes at once, each with its own connection."""

import multiprocessing
import traceback

from django.db import connections

SQLITE_BUSY_TIMEOUT_SECONDS = 120


def run_in_processes(target, args_per_process):
    """Run `target(*args)` in one forked process per args tuple, all at once; return results."""
    # Forked children must not share the parent's database sockets or file handles.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_together = context.Barrier(len(args_per_process))
    processes = [
        context.Process(target=_child, args=(target, args, index, start_together, results))
        for index, args in enumerate(args_per_process)
    ]
    for process in processes:
        process.start()
    outcomes = sorted(results.get(timeout=180) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    errors = [detail for _, status, detail in outcomes if status == "error"]
    assert errors == [], "\n".join(errors)
    assert [process.exitcode for process in processes] == [0] * len(processes)
    return [value for _, _, value in outcomes]


def _child(target, args, index, start_together, results):
    connections.close_all()
    database = connections["default"]
    if database.vendor == "sqlite":
        # SQLite's busy handler is not fair; let a starved writer wait longer than the default.
        database.settings_dict["OPTIONS"]["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
    try:
        start_together.wait(timeout=60)
        results.put((index, "ok", target(*args)))
    except BaseException:
        results.put((index, "error", traceback.format_exc()))
    finally:
        connections.close_all()
