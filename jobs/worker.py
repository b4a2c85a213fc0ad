"""The RQ worker classes Message Center runs: `rq worker -w jobs.worker.AppWorker …` (bulk queues)
and `rq worker -w jobs.worker.TriggerWorker trigger` (the Trigger lane), and the one place outside
the entry points that builds the Flask app (`worker_app`).

It builds the app once in the worker process, before any job runs, so every forked work
horse starts with it ready instead of paying for `create_app()` per job (about a second — far
too slow for a dispatch tick every two seconds). Building the app opens no connection, so
nothing is shared across the fork; each horse opens its own.
"""
from rq.worker import SimpleWorker, Worker

from app import create_app
from services.metrics import create_fold_lock, fold_dead_process, multiprocess_dir

_app = None


def worker_app():
    """The worker process's app, built on first use (or the one a benchmark installed)."""
    global _app
    if _app is None:
        _app = create_app()
    return _app


def use_app(app):
    """Run jobs outside an app context with this app (benchmarks that build their own)."""
    global _app
    _app = app


class AppWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        worker_app()
        self._last_horse = 0
        if multiprocess_dir():
            create_fold_lock()

    def fork_work_horse(self, job, queue):
        super().fork_work_horse(job, queue)
        self._last_horse = self._horse_pid

    def execute_job(self, job, queue):
        try:
            return super().execute_job(job, queue)
        finally:
            # Each job runs in a new work-horse process, which leaves its metric files behind
            # (multiprocess mode): fold them into this worker's archive so /metrics keeps the values
            # and the directory does not grow by two files per job.
            if self._last_horse and multiprocess_dir():
                fold_dead_process(self._last_horse)
            self._last_horse = 0


class TriggerWorker(SimpleWorker):
    """The Trigger lane's worker (services/trigger_lane.py): runs each job in its own process, without
    a fork, so the database pool and the keep-alive TLS session to the Core stay warm between OTPs
    (a forked horse pays a fork, a new database connection and a TLS handshake for every push).
    Safe because lane jobs are short (TRIGGER_TIME_BUDGET) and never run bulk work; a job that dies
    with this process is recovered like any other (recover_stalled_work, the claim's lease)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        worker_app()
