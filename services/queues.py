"""The one door to RQ: queue names, `enqueue_job`, and the dispatch slots.

Services queue work **by name** (a dotted path such as "jobs.uploads.ingest_upload"; RQ accepts
strings for functions and callbacks), so the code that queues never imports the code that runs
and the layers stay `jobs → services` (checked by `.importlinter`). This module imports no other
service. Enqueue only after the transaction the job reads has committed.
"""
from collections.abc import Callable
from typing import Any

from flask import current_app
from rq import Callback, Queue, Retry
from rq.job import Job

from extensions import redis_connection

QUEUES = ("uploads", "dispatch", "exports", "default", "trigger")
# `trigger` is the Trigger lane's own queue (services/trigger_lane.py): served only by
# `rq worker -w jobs.worker.TriggerWorker trigger`, never by the bulk workers.
TRIGGER_QUEUE = "trigger"


class JobNames:
    """Every job a service queues, named once (the functions live in jobs/)."""
    INGEST_UPLOAD = "jobs.uploads.ingest_upload"
    ON_INGEST_FAILURE = "jobs.uploads.on_ingest_failure"
    PLAN_SPREAD = "jobs.uploads.plan_spread"
    BUILD_EXPORT = "jobs.exports.build_export"
    ON_EXPORT_FAILURE = "jobs.exports.on_export_failure"
    DISPATCH_CAMPAIGN = "jobs.dispatch.dispatch_campaign"
    BUILD_EVIDENCE_PACK = "jobs.evidence.build_evidence_pack"
    ON_EVIDENCE_FAILURE = "jobs.evidence.on_evidence_failure"
    DISPATCH_TRIGGER = "jobs.trigger.dispatch_trigger"


def get_queue(name="default"):
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}")
    return Queue(name, connection=redis_connection())


def enqueue_job(func: str | Callable[..., Any], *args: Any, queue: str = "default", timeout: int = 600,
                retries: int = 3, job_id: str | None = None, on_failure: str | None = None, **kwargs: Any) -> Job:
    """Enqueue `func` (a JobNames dotted path; tests may pass the function) after the caller's
    transaction has committed. `on_failure` is a dotted path too, run when no retry is left."""
    if on_failure is not None:
        kwargs["on_failure"] = Callback(on_failure)
    return get_queue(queue).enqueue(func, *args, job_timeout=timeout, job_id=job_id,
                                    retry=Retry(max=retries, interval=[10, 30, 60]) if retries else None,
                                    **kwargs)


# Dispatch slots: a Redis lock (`SET NX EX`) per campaign and slot keeps at most DISPATCH_PARALLEL
# dispatch jobs per campaign queued or running.

def slot_ttl():
    """Seconds after which the slot of a killed job frees itself: no dispatch job can still be
    running by then (its time budget, plus one submit with the client's connect retries)."""
    config = current_app.config
    return int(config["DISPATCH_TIME_BUDGET"] + 3 * config["CORE_CONNECT_TIMEOUT"] + config["CORE_READ_TIMEOUT"] + 10)


def slot_key(campaign_id, slot):
    return f"mc:dispatch:{campaign_id}:{slot}"


def release_slot(campaign_id, slot):
    """Free a dispatch slot at once (its job finished, or died with its worker)."""
    redis_connection().delete(slot_key(campaign_id, slot))


def schedule_campaign(campaign_id):
    """Enqueue dispatch jobs for a campaign into its free slots; returns how many were enqueued."""
    redis = redis_connection()
    enqueued = 0
    for slot in range(int(current_app.config["DISPATCH_PARALLEL"])):
        if redis.set(slot_key(campaign_id, slot), "1", nx=True, ex=slot_ttl()):
            enqueue_job(JobNames.DISPATCH_CAMPAIGN, campaign_id, slot, queue="dispatch", timeout=300, retries=0)
            enqueued += 1
    return enqueued
