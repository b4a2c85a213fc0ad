"""The Trigger lane: OTP pushes are dispatched by a worker that never runs bulk work.

A Trigger push enqueues `jobs.trigger.dispatch_trigger(campaign_id)` on the `trigger` queue, served
only by `rq worker -w jobs.worker.TriggerWorker trigger` (Procfile `worker-trigger`, systemd
`mc-worker-trigger.service`): a non-forking worker that keeps its database pool and its TLS
session to the Core warm, so an OTP never waits for a bulk ingest, export or dispatch job, nor for
a fork and a fresh connection. The job runs the same `services.dispatch.dispatch_campaign`
(same claims, leases and idempotency keys) with a short time budget (TRIGGER_TIME_BUDGET).

Coalescing: at most one lane job per campaign waits in the queue. A push sets
`mc:trigger:pending:<campaign>` (`SET NX`) after its commit and enqueues only when it set it; the
job deletes the key *before* it claims, so a push committed after that delete enqueues the next
job, and one committed before it is claimed by this one. The periodic tick routes Trigger
campaigns with work (replays after a crash, the Core back after an outage) through the lane as
well — and, when no live worker serves the lane, also through the bulk `dispatch` queue, so OTPs
are late (Diagnostics warns) but never stuck.

Latency (Live Pulse, `/metrics`): the push time of every accepted number is kept in Redis
(`mc:trigger:pushed:<campaign>`, recipient id → epoch seconds) and turned into a push → accepted
by the Core sample when dispatch applies the Core's answer; samples live in a sorted set per
workspace for two minutes, and p50/p95 are read over the last 60 seconds.
"""
import logging
import math
import time
from datetime import UTC, datetime

from flask import current_app
from redis.exceptions import RedisError
from rq import Worker
from sqlalchemy import select

from extensions import db, redis_connection
from models import Campaign, Workspace
from models.states import Mode
from services.queues import TRIGGER_QUEUE, JobNames, enqueue_job, get_queue, schedule_campaign

log = logging.getLogger("mc.trigger_lane")

PENDING_TTL = 60        # seconds: a lost lane job (Redis flushed, worker killed at start) blocks no longer
PUSHED_TTL = 24 * 3600  # push times of numbers not yet accepted (a paused campaign, a long outage)
SAMPLES_KEPT = 120      # seconds of latency samples kept per workspace (read: the last 60)
SAMPLES_MAX = 20_000    # cap per workspace, newest kept (a burst never grows a key without bound)


def _pending_key(campaign_id):
    return f"mc:trigger:pending:{campaign_id}"


def _pushed_key(campaign_id):
    return f"mc:trigger:pushed:{campaign_id}"


def _samples_key(workspace_id):
    return f"mc:trigger:latency:{workspace_id}"


def job_timeout():
    """RQ timeout of a lane job: its time budget plus one submit with the client's connect retries."""
    config = current_app.config
    return int(config["TRIGGER_TIME_BUDGET"] + 3 * config["CORE_CONNECT_TIMEOUT"] + config["CORE_READ_TIMEOUT"] + 10)


# --- scheduling ----------------------------------------------------------------------------------

def schedule(campaign_id):
    """Make sure a lane job for this campaign is waiting (coalesced). True when one was enqueued.
    Call only after the transaction that stored the numbers has committed."""
    redis = redis_connection()
    if not redis.set(_pending_key(campaign_id), "1", nx=True, ex=PENDING_TTL):
        return False  # a waiting job will claim these numbers: it deletes the key before claiming
    try:
        enqueue_job(JobNames.DISPATCH_TRIGGER, campaign_id, queue=TRIGGER_QUEUE, timeout=job_timeout(), retries=0)
    except BaseException:
        redis.delete(_pending_key(campaign_id))  # nothing waits: let the next push or tick try again
        raise
    return True


def take_turn(campaign_id):
    """A lane job starts: pushes committed from now on enqueue the next job."""
    redis_connection().delete(_pending_key(campaign_id))


release = take_turn  # recover_stalled_work: a lane job died with its worker


def campaign_exists(campaign_id):
    """A lane job may outlive its campaign (deleted meanwhile): then it has nothing to do."""
    found = db.session.get(Campaign, campaign_id) is not None
    db.session.rollback()
    return found


def lane_workers(now=None):
    """Live workers listening to the lane's queue (fresh heartbeat)."""
    now = now or datetime.now(UTC)
    alive = 0
    for worker in Worker.all(queue=get_queue(TRIGGER_QUEUE)):
        beat = worker.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if beat is not None and (now - beat).total_seconds() <= (worker.worker_ttl or 420) + 60:
            alive += 1
    return alive


def trigger_campaigns(campaign_ids):
    """Which of these campaigns are Trigger campaigns (dispatched through the lane)."""
    if not campaign_ids:
        return set()
    found = set(db.session.scalars(select(Campaign.id).where(Campaign.id.in_(list(campaign_ids)),
                                                             Campaign.mode == Mode.TRIGGER)))
    db.session.rollback()
    return found


def schedule_work(campaign_ids):
    """The tick's routing: bulk campaigns into their dispatch slots, Trigger campaigns into the lane
    (and into the bulk slots too while no live worker serves the lane). Returns jobs enqueued."""
    otp = trigger_campaigns(campaign_ids)
    lane_up = bool(otp) and lane_workers() > 0
    scheduled = 0
    for campaign_id in campaign_ids:
        if campaign_id in otp:
            scheduled += schedule(campaign_id)
            if lane_up:
                continue
            log.warning("[trigger-lane-down] campaign %s goes through the bulk workers: no live worker serves "
                        "the %r queue", campaign_id, TRIGGER_QUEUE)
        scheduled += schedule_campaign(campaign_id)
    return scheduled


# --- latency: push -> accepted by the Core -------------------------------------------------------

def note_pushed(campaign_id, recipient_ids, pushed_at):
    """Remember when these numbers were pushed (epoch seconds), for the latency samples."""
    if not recipient_ids:
        return
    key = _pushed_key(campaign_id)
    pipe = redis_connection().pipeline()
    pipe.hset(key, mapping={str(rid): f"{pushed_at:.6f}" for rid in recipient_ids})
    pipe.expire(key, PUSHED_TTL)
    pipe.execute()


def record_accepted(workspace_id: int, campaign_id: int, recipient_ids: list[int],
                    accepted_at: float | None = None) -> int:
    """The Core accepted these pushed numbers: one latency sample each (ms), kept per workspace.
    A metric must never fail a dispatch whose results are committed: Redis errors are logged."""
    if not recipient_ids:
        return 0
    now = accepted_at if accepted_at is not None else time.time()
    fields = [str(rid) for rid in recipient_ids]
    try:
        redis = redis_connection()
        pushed = redis.hmget(_pushed_key(campaign_id), fields)
        samples = {f"{rid}:{max(0.0, (now - float(at)) * 1000):.1f}": now
                   for rid, at in zip(fields, pushed, strict=True) if at is not None}
        pipe = redis.pipeline()
        pipe.hdel(_pushed_key(campaign_id), *fields)
        if samples:
            key = _samples_key(workspace_id)
            pipe.zadd(key, samples)
            pipe.zremrangebyscore(key, "-inf", now - SAMPLES_KEPT)
            pipe.zremrangebyrank(key, 0, -SAMPLES_MAX - 1)
            pipe.expire(key, SAMPLES_KEPT * 2)
        pipe.execute()
    except RedisError as exc:  # the results are committed; only this sample is lost
        log.warning("trigger latency not recorded for campaign %s: %s", campaign_id, exc)
        return 0
    return len(samples)


def _quantile(sorted_values, q):
    """Nearest-rank quantile (None for no values)."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _summary(values):
    values = sorted(values)
    p50, p95 = _quantile(values, 0.50), _quantile(values, 0.95)
    return {"count": len(values), "p50_ms": round(p50) if p50 is not None else None,
            "p95_ms": round(p95) if p95 is not None else None}


def _samples(workspace_ids, now):
    pipe = redis_connection().pipeline()
    for workspace_id in workspace_ids:
        pipe.zrangebyscore(_samples_key(workspace_id), now - 60, "+inf")
    out = {}
    for workspace_id, members in zip(workspace_ids, pipe.execute(), strict=True):
        out[workspace_id] = [float((m.decode() if isinstance(m, bytes) else m).rsplit(":", 1)[1]) for m in members]
    return out


def latency_last_minute(workspace_ids, now=None):
    """Push -> Core latency over the last 60 s across these workspaces: {count, p50_ms, p95_ms}."""
    now = now if now is not None else time.time()
    samples = _samples(list(workspace_ids), now) if workspace_ids else {}
    return _summary([v for values in samples.values() for v in values])


def latency_by_workspace(now=None):
    """{workspace slug: {count, p50_ms, p95_ms}} for the workspaces with samples in the last minute."""
    now = now if now is not None else time.time()
    workspaces: dict[int, str] = {wid: slug for wid, slug in db.session.execute(select(Workspace.id, Workspace.slug))}
    db.session.rollback()
    samples = _samples(list(workspaces), now) if workspaces else {}
    return {workspaces[wid]: _summary(values) for wid, values in samples.items() if values}


def lane_status():
    """Diagnostics: {"ok", "workers", "reason"} — a warning when no live worker serves the lane."""
    try:
        workers = lane_workers()
    except RedisError as exc:
        return {"ok": False, "workers": 0, "reason": f"the queue broker does not answer ({exc})"[:300]}
    if workers:
        return {"ok": True, "workers": workers, "reason": f"{workers} live worker(s) on the {TRIGGER_QUEUE!r} queue"}
    return {"ok": False, "workers": 0,
            "reason": "No live worker serves the Trigger lane: OTP pushes wait for the bulk workers (behind "
                      "ingests, exports and bulk dispatch) until `worker-trigger` runs again."}
