"""Dispatch jobs: the periodic tick, one campaign's turn, and the delivery-report poll.

The tick only decides *what* has work and enqueues `dispatch_campaign(id)`; a Redis slot lock
(`SET NX EX`) keeps at most DISPATCH_PARALLEL jobs per campaign queued or running. Jobs are
safe to run twice or to die half-way: the database is the source of truth (services/dispatch.py).
The tick skips campaigns that are backing off, and claims nothing new while the Core is known down.
"""
import logging

from flask import current_app

from extensions import redis_connection
from jobs import app_job, enqueue_job
from services import approval, dispatch

log = logging.getLogger("mc.jobs.dispatch")


def slot_ttl():
    """Seconds after which the slot of a killed job frees itself: no dispatch job can still be
    running by then (its time budget, plus one submit with the client's connect retries)."""
    config = current_app.config
    return int(config["DISPATCH_TIME_BUDGET"] + 3 * config["CORE_CONNECT_TIMEOUT"] + config["CORE_READ_TIMEOUT"] + 10)


def _slot_key(campaign_id, slot):
    return f"mc:dispatch:{campaign_id}:{slot}"


def release_slot(campaign_id, slot):
    """Free a dispatch slot at once (its job finished, or died with its worker)."""
    redis_connection().delete(_slot_key(campaign_id, slot))


def schedule_campaign(campaign_id):
    """Enqueue dispatch jobs for a campaign into its free slots; returns how many were enqueued."""
    redis = redis_connection()
    enqueued = 0
    for slot in range(int(current_app.config["DISPATCH_PARALLEL"])):
        if redis.set(_slot_key(campaign_id, slot), "1", nx=True, ex=slot_ttl()):
            enqueue_job(dispatch_campaign, campaign_id, slot, queue="dispatch", timeout=300, retries=0)
            enqueued += 1
    return enqueued


@app_job
def dispatch_campaign(campaign_id, slot=0):
    try:
        if not approval.verify_for_dispatch(campaign_id):  # changed since approval: Failed, nothing sent
            return 0
        return dispatch.dispatch_campaign(campaign_id)
    finally:
        release_slot(campaign_id, slot)


@app_job
def dispatch_tick():
    started = dispatch.start_due_campaigns()
    expired = dispatch.expire_overdue()
    finished = dispatch.finish_completed()
    scheduled = sum(schedule_campaign(cid) for cid in dispatch.campaigns_with_work())
    if started or expired or finished:
        log.info("tick: started %s, expired %s, finished %s", started, expired, finished)
    return {"started": started, "expired": expired, "finished": finished, "scheduled": scheduled}


@app_job
def poll_delivery_reports():
    return dispatch.poll_delivery_reports()
