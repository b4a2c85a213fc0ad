"""RQ jobs: small functions taking ids, idempotent, resumable. `enqueue_job` is the one door to RQ.

Job functions are wrapped with `@app_job` so they run inside an application context whether
they execute in an `rq worker` process (which builds the app once) or in a test's SimpleWorker
(which already has one).
"""
import functools
import time

from flask import current_app, has_app_context
from rq import Queue, Retry

from extensions import redis_connection

QUEUES = ("uploads", "dispatch", "exports", "default")
_worker_app = None


def app_job(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        global _worker_app
        if has_app_context():
            return _timed(fn, args, kwargs)
        if _worker_app is None:
            from app import create_app

            _worker_app = create_app()
        with _worker_app.app_context():
            return _timed(fn, args, kwargs)

    return wrapper


def _timed(fn, args, kwargs):
    """Run a job and record its duration (mc_job_duration_seconds), failed or not."""
    from rq import get_current_job

    from services.metrics import observe_job

    started = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        job = get_current_job()
        observe_job(fn.__name__, job.origin if job else "inline", time.perf_counter() - started)


def report_progress(progress):
    """Publish a running job's progress in `job.meta['progress']` (no-op outside an RQ job)."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.meta["progress"] = progress
        job.save_meta()


def get_queue(name="default"):
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=redis_connection())


def enqueue_job(func, *args, queue="default", timeout=600, retries=3, job_id=None, **kwargs):
    """Enqueue after the caller's transaction has committed (jobs read committed rows only)."""
    return get_queue(queue).enqueue(func, *args, job_timeout=timeout, job_id=job_id,
                                    retry=Retry(max=retries, interval=[10, 30, 60]) if retries else None,
                                    **kwargs)
