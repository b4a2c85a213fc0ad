"""RQ jobs: small functions taking ids, idempotent, resumable.

Job functions are wrapped with `@app_job` so they run inside an application context whether
they execute in an `rq worker` process (jobs/worker.py builds the app once, the only module here
that does) or in a test's SimpleWorker (which already has one). Queueing lives one layer down in
services/queues.py (`enqueue_job`, queue names, the job names), re-exported here for callers in
this layer and tests.
"""
import functools
import time

from flask import has_app_context
from rq import get_current_job

from jobs.worker import worker_app
from services.metrics import observe_job
from services.queues import QUEUES, enqueue_job, get_queue  # noqa: F401 (the jobs API, re-exported)


def app_job(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if has_app_context():
            return _timed(fn, args, kwargs)
        with worker_app().app_context():
            return _timed(fn, args, kwargs)

    return wrapper


def _timed(fn, args, kwargs):
    """Run a job and record its duration (mc_job_duration_seconds), failed or not."""
    started = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        job = get_current_job()
        observe_job(fn.__name__, job.origin if job else "inline", time.perf_counter() - started)


def report_progress(progress):
    """Publish a running job's progress in `job.meta['progress']` (no-op outside an RQ job)."""
    job = get_current_job()
    if job is not None:
        job.meta["progress"] = progress
        job.save_meta()
