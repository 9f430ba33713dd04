"""gunicorn settings for Meterline's web processes: `gunicorn -c config/gunicorn_conf.py ...`.

Only what the metrics need: with PROMETHEUS_MULTIPROC_DIR set, each worker writes its request
figures to files in that folder and `/metrics` sums them; a worker that exits is marked dead so
its live gauges stop counting (prometheus_client's multiprocess mode).
"""

import os


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
