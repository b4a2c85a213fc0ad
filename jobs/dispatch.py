"""Dispatch jobs: the periodic tick, one campaign's turn, and the delivery-report poll.

The tick only decides *what* has work and enqueues `dispatch_campaign(id)`; a Redis slot lock
(`SET NX EX`) keeps at most DISPATCH_PARALLEL jobs per campaign queued or running. Trigger
campaigns go through the Trigger lane instead (services/trigger_lane.py, jobs/trigger.py). Jobs are
safe to run twice or to die half-way: the database is the source of truth (services/dispatch.py).
The tick skips campaigns that are backing off, and claims nothing new while the Core is known down.
"""
import logging

from jobs import app_job
from services import approval, dispatch, trigger_lane
from services.queues import release_slot, schedule_campaign  # noqa: F401 (schedule_campaign: bench/dispatch.py imports it here)

log = logging.getLogger("mc.jobs.dispatch")


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
    scheduled = trigger_lane.schedule_work(dispatch.campaigns_with_work())
    if started or expired or finished:
        log.info("tick: started %s, expired %s, finished %s", started, expired, finished)
    return {"started": started, "expired": expired, "finished": finished, "scheduled": scheduled}


@app_job
def poll_delivery_reports():
    return dispatch.poll_delivery_reports()
