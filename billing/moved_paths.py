"""Dotted paths of queued work from before a move, and what each runs now.

django-q2 stores a task's function as a dotted path, in the broker (tasks queued by
`billing.task_queue.enqueue`) and in `Schedule` rows (jobs), and the worker resolves it with
`pydoc.locate` when it runs the task, possibly after a deploy that moved the function. Work
queued before these moves must still run, with the positional arguments it was queued with.

How they resolve: `pydoc.locate("billing.cards.card_changed")` imports the longest prefix that
is a module (`billing`) and looks the rest up as attributes (`.cards`, then `.card_changed`). So
each module where an old path now ends in a missing attribute (`billing`, `billing.notifications`,
`billing.jobs`) has a module `__getattr__` (PEP 562) that asks `moved()`, which answers only for
the paths in MOVED and otherwise raises the usual AttributeError; a hook runs only for a name
the module does not have, and the entry point is imported only when its task runs.

Schedule rows are rewritten to the new paths by migration billing/0013; an entry may be removed
once no deployment can still hold a task or a row queued with its old path.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec

from django.utils.module_loading import import_string

# old dotted path -> (entry point it runs now, names of the positional arguments it was queued
# with). Tasks were queued with positional arguments before billing.tasks existed.
MOVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "billing.auto_topup.charge_auto_topup": ("billing.tasks.charge_auto_topup", ("topup_id",)),
    "billing.cards.card_changed": ("billing.tasks.card_changed", ("account_id",)),
    "billing.notifications.send_notification": (
        "billing.tasks.send_notification",
        ("notification_id",),
    ),
    "billing.notifications.send_notifications": (
        "billing.tasks.send_notifications",
        ("notification_ids",),
    ),
    "billing.jobs.release_holds": ("usage.jobs.release_holds", ()),
}


@dataclass(frozen=True)
class MovedTask:
    """Runs the entry point an old path moved to, with the old positional arguments named."""

    path: str
    positional: tuple[str, ...]

    def __call__(self, *args, **kwargs) -> str:
        entry_point: Callable[..., str] = import_string(self.path)
        # Entry points ignore unknown keywords; extra positional arguments are dropped likewise.
        named = dict(zip(self.positional, args, strict=False))
        return entry_point(**named, **kwargs)


@dataclass(frozen=True)
class MovedModule:
    """Stands for a module that no longer exists, so that old paths through it resolve."""

    path: str

    def __getattr__(self, name: str):
        return moved(f"{self.path}.{name}")


def moved(path: str) -> MovedTask | MovedModule:
    """Return what the old dotted `path` runs now; raise AttributeError if it is not one."""
    if path in MOVED:
        entry_point, positional = MOVED[path]
        return MovedTask(path=entry_point, positional=positional)
    # A module that is still there (billing.notifications) is imported, not stood in for:
    # `from billing import notifications` asks this hook before it imports the package.
    if any(old.startswith(f"{path}.") for old in MOVED) and find_spec(path) is None:
        return MovedModule(path=path)
    module, _, name = path.rpartition(".")
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
