"""Periodic housekeeping: stalled-work recovery, audit fallback flush and audit retention.

`recover_stalled_work` is why a SIGKILLed worker (or a crashed host) stalls an ingest or a dispatch
for about a minute instead of the ten minutes RQ's own worker maintenance would take: it hands
jobs whose worker stopped heart-beating to RQ's abandoned-job handling at once.
"""
import logging
import time

from flask import current_app
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import as_text, parse_composite_key
from rq.worker import Worker

import audit
from extensions import redis_connection
from jobs import QUEUES, app_job, get_queue
from jobs.dispatch import release_slot
from services import settings, trigger_lane
from services.queues import JobNames

log = logging.getLogger("mc.jobs.maintenance")


@app_job
def flush_audit_fallback():
    """Move events buffered in the fallback file back into the audit store (no duplicates: UUIDs)."""
    moved = audit.get_store().flush_fallback()
    if moved:
        log.info("audit fallback: %s events flushed back to the store", moved)
    return moved


@app_job
def purge_audit():
    """Delete audit events older than the retention (MongoDB does this itself with its TTL index).
    The retention is the run-time setting (services/settings.py), read when the job runs."""
    store = audit.get_store()
    store.use_retention(settings.value("AUDIT_RETENTION_DAYS"))
    return store.purge_expired()


def _execution_is_dead(connection, composite_key, now, stalled_after):
    """Is the worker running this execution gone? A busy `rq worker` refreshes the execution's
    heartbeat every job-monitoring interval (30 s by default); a missing execution, a missing
    worker or a heartbeat older than `stalled_after` seconds means it died with the job."""
    job_id, execution_id = parse_composite_key(composite_key)
    execution = Execution(id=execution_id, job_id=job_id, connection=connection)
    try:
        execution.refresh()
    except ValueError:  # the execution's hash expired with its last heartbeat
        return True
    if execution.worker_name and not connection.exists(Worker.redis_worker_namespace_prefix + execution.worker_name):
        return True
    return now - execution.last_heartbeat.timestamp() > stalled_after


@app_job
def recover_stalled_work():
    """Periodic (rq cron): jobs whose worker died are retried now (or failed when no retry is left).

    For every queue, the running jobs (RQ's StartedJobRegistry) whose worker stopped heart-beating
    for STALLED_JOB_SECONDS are marked expired and RQ's own abandoned-job handling runs
    (`StartedJobRegistry.cleanup`): failure callback, then a retry through the job's `Retry`
    (an ingest resumes from its committed offset) or the FailedJobRegistry. A dispatch job's
    campaign slot is released so the next tick schedules the campaign again (its claimed batch
    is replayed with the same idempotency key). Returns {queue: [job ids handed over]}."""
    stalled_after = current_app.config["STALLED_JOB_SECONDS"]
    connection = redis_connection()
    recovered = {}
    for name in QUEUES:
        registry = get_queue(name).started_job_registry
        now = time.time()
        running = [(as_text(key), score) for key, score in connection.zrange(registry.key, 0, -1, withscores=True)]
        dead = [key for key, score in running
                if score > now and _execution_is_dead(connection, key, now, stalled_after)]
        if dead:
            # Expire them now (xx: never re-add an entry a finishing worker has just removed).
            connection.zadd(registry.key, {key: 0 for key in dead}, xx=True)
        expired = [parse_composite_key(as_text(key))[0] for key in connection.zrangebyscore(registry.key, 0, now)]
        if not expired:
            continue
        abandoned = []
        for job_id in expired:
            try:
                job = Job.fetch(job_id, connection=connection)
            except NoSuchJobError:
                continue
            if job.get_status(refresh=False) == JobStatus.STARTED:  # what cleanup treats as abandoned
                abandoned.append(job)
        registry.cleanup(timestamp=now)  # RQ's abandoned-job handling: callback, retry or failed
        for job in abandoned:
            try:
                job.refresh()
            except NoSuchJobError:  # finished and expired meanwhile: nothing left to recover
                continue
            status = job.get_status(refresh=False)
            log.warning("[stalled-job] %s (%s) on queue %s lost its worker; now %s", job.id, job.func_name, name,
                        getattr(status, "value", status))
            if job.func_name == "jobs.dispatch.dispatch_campaign":
                campaign_id, slot = (list(job.args) + [0])[:2]
                release_slot(campaign_id, slot)
            elif job.func_name == JobNames.DISPATCH_TRIGGER and job.args:
                trigger_lane.release(job.args[0])  # the next push or tick queues the campaign's turn again
        if abandoned:
            recovered[name] = [job.id for job in abandoned]
    return recovered
