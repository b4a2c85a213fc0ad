"""The Trigger lane's job: one Trigger campaign's turn on the `trigger` queue (services/trigger_lane.py).

Run by `rq worker -w jobs.worker.TriggerWorker trigger`, which serves no other queue. Same gate and
same dispatch as a bulk job (jobs/dispatch.py), with the lane's short time budget; safe to run
twice or to die half-way, as every dispatch job.
"""
from flask import current_app

from jobs import app_job
from services import approval, dispatch, trigger_lane


@app_job
def dispatch_trigger(campaign_id):
    trigger_lane.take_turn(campaign_id)  # before claiming: a push committed from now on queues the next turn
    if not trigger_lane.campaign_exists(campaign_id):  # deleted since the push: nothing to send
        return 0
    if not approval.verify_for_dispatch(campaign_id):  # changed since approval: Failed, nothing sent
        return 0
    return dispatch.dispatch_campaign(campaign_id, time_budget=float(current_app.config["TRIGGER_TIME_BUDGET"]))
