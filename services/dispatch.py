"""Dispatch to the SMS Core: allowance, batch claims, exactly-once submission, delivery reports.

Correctness across many workers comes from the database, never from process state:
- a batch is claimed in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has a
  single writer) and gets an idempotency key before anything is sent;
- a batch is (re)submitted only by whoever holds its lease (`next_attempt_at`), always with the
  same key, so a worker killed mid-submit leaves a claim that another worker replays and the Core
  answers with its first result instead of sending twice;
- results and delivery reports are applied with conditional UPDATEs (`WHERE state = 'claimed'`,
  `WHERE state = 'sent'`), so applying the same answer twice changes nothing.
"""
import logging
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select, text, update

from extensions import db
from gateway import CoreError, CoreThrottled, get_client
from models import Campaign, DailySent, DispatchBatch, HourlyStat, MessageError, Recipient, SystemState, utcnow
from services import campaigns as lifecycle
from services import pulse, segments, smpp_codes

log = logging.getLogger("mc.dispatch")

TRANSIENT_CODES = {"0x00000058", "0x00000014"}  # throttled, message queue full: resubmit later
BACKOFF = (2, 5, 15, 30, 60, 120)  # seconds; capped exponential-ish back-off for transient failures
EVENTS_CURSOR = "core.events.cursor"


# --- allowance -----------------------------------------------------------------------------

def local_now(workspace, now=None):
    return (now or utcnow()).astimezone(ZoneInfo(workspace.timezone))


def window_open(workspace, now=None):
    """Is `now` inside the workspace's daily sending window (its time zone)?"""
    if workspace.window_start == "00:00" and workspace.window_end == "24:00":
        return True
    clock = local_now(workspace, now).strftime("%H:%M")
    end = "24:00" if workspace.window_end == "24:00" else workspace.window_end
    return workspace.window_start <= clock < end


def respects_window(campaign):
    return not (campaign.mode == "Trigger" and campaign.ignore_daily_window)


def sent_today(campaign, day):
    return db.session.scalar(select(DailySent.sent).where(DailySent.campaign_id == campaign.id,
                                                         DailySent.day == day)) or 0


def allowance(campaign, now=None, wanted=None):
    """How many messages this campaign may hand to the Core right now (0 = none)."""
    wanted = wanted if wanted is not None else batch_size()
    if campaign.status != "Sending" or campaign.moderation != "approved" or campaign.archived_at:
        return 0
    workspace = campaign.workspace
    if respects_window(campaign) and not window_open(workspace, now):
        return 0
    if campaign.daily_limit:
        left = campaign.daily_limit - sent_today(campaign, local_now(workspace, now).date())
        return max(0, min(wanted, left))
    return wanted


def batch_size():
    return int(current_app.config.get("DISPATCH_BATCH_SIZE", 500))


def lease():
    """How long a claimer owns a batch before another worker may replay it (it may have died)."""
    return timedelta(seconds=int(current_app.config.get("DISPATCH_LEASE_SECONDS", 60)))


# --- claiming ------------------------------------------------------------------------------

def _upsert(model, keys, increments):
    dialect = db.engine.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(model).values(**keys, **increments)
    table = model.__table__
    return stmt.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={name: getattr(table.c, name) + getattr(stmt.excluded, name) for name in increments})


def skip_stop_listed(campaign_id):
    """Numbers put on the stop-list after the build never go out: mark them before claiming."""
    campaign = db.session.get(Campaign, campaign_id)
    n = db.session.execute(text(
        "UPDATE recipients SET state = 'stop_listed' WHERE campaign_id = :c AND state = 'queued' "
        "AND number IN (SELECT number FROM stop_list WHERE workspace_id = :w)"),
        {"c": campaign_id, "w": campaign.workspace_id}).rowcount
    if n:
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id)
                           .values(queued_count=Campaign.queued_count - n))
    db.session.commit()
    return n


def claim_batch(campaign_id, now=None):
    """Claim up to one batch of queued recipients for this campaign; returns the batch id or None."""
    now = now or utcnow()
    postgres = db.engine.dialect.name == "postgresql"
    lock = " FOR UPDATE" if postgres else ""
    # Serialise claims per campaign so the daily limit cannot be overshot by parallel workers.
    row = db.session.execute(text(f"SELECT id FROM campaigns WHERE id = :c{lock}"), {"c": campaign_id}).first()
    campaign = db.session.get(Campaign, campaign_id)
    db.session.refresh(campaign)
    size = allowance(campaign, now) if row else 0
    if size <= 0:
        db.session.rollback()
        return None
    key = uuid.uuid4().hex
    batch = DispatchBatch(campaign_id=campaign_id, idempotency_key=key, size=0, state="claimed",
                          created_at=now, next_attempt_at=now + lease())
    db.session.add(batch)
    db.session.flush()
    spread = ""
    params = {"c": campaign_id, "b": batch.id, "n": size}
    if campaign.mode == "Spread":
        spread = " AND (spread_day IS NULL OR spread_day <= :today)"
        params["today"] = local_now(campaign.workspace, now).date()
    skip = " FOR UPDATE SKIP LOCKED" if postgres else ""
    claimed = db.session.execute(text(
        f"UPDATE recipients SET state = 'claimed', batch_id = :b WHERE id IN ("
        f"SELECT id FROM recipients WHERE campaign_id = :c AND state = 'queued'{spread} "
        f"ORDER BY id LIMIT :n{skip})"), params).rowcount
    if not claimed:
        db.session.rollback()
        return None
    batch.size = claimed
    db.session.execute(_upsert(DailySent, {"campaign_id": campaign_id,
                                           "day": local_now(campaign.workspace, now).date()}, {"sent": claimed}))
    db.session.commit()
    return batch.id


def take_lease(batch_id, now=None):
    """Become the one worker (re)submitting this batch until the lease runs out."""
    now = now or utcnow()
    got = db.session.execute(update(DispatchBatch).where(
        DispatchBatch.id == batch_id, DispatchBatch.state == "claimed", DispatchBatch.next_attempt_at <= now)
        .values(next_attempt_at=now + lease(), attempts=DispatchBatch.attempts + 1)).rowcount
    db.session.commit()
    return bool(got)


def due_batches(campaign_id, now=None):
    now = now or utcnow()
    return list(db.session.scalars(select(DispatchBatch.id).where(
        DispatchBatch.campaign_id == campaign_id, DispatchBatch.state == "claimed",
        DispatchBatch.next_attempt_at <= now).order_by(DispatchBatch.id)))


# --- submitting ----------------------------------------------------------------------------

def build_messages(campaign, recipients):
    revision = campaign.sender_revision
    saddr = campaign.saddr or (revision.saddr if revision else "")
    ston = campaign.ston if campaign.ston is not None else (revision.ton if revision else 5)
    snpi = campaign.snpi if campaign.snpi is not None else (revision.npi if revision else 0)
    dton = campaign.dton if campaign.dton is not None else 1
    dnpi = campaign.dnpi if campaign.dnpi is not None else 1
    coding = segments.data_coding(campaign.message_text)
    return [{"id": str(r.id), "destination": r.number, "saddr": saddr, "ston": ston, "snpi": snpi,
             "dton": dton, "dnpi": dnpi, "text": campaign.message_text, "data_coding": coding}
            for r in recipients]


def submit_batch(batch_id):
    """Submit (or replay) a claimed batch and apply the Core's answer. Returns 'submitted' or 'retry'."""
    batch = db.session.get(DispatchBatch, batch_id)
    campaign = db.session.get(Campaign, batch.campaign_id)
    # (campaign_id, state) is indexed; the few claimed rows of a campaign are then filtered by batch.
    recipients = list(db.session.scalars(select(Recipient).where(
        Recipient.campaign_id == batch.campaign_id, Recipient.state == "claimed",
        Recipient.batch_id == batch_id).order_by(Recipient.id)))
    if not recipients:
        db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id)
                           .values(state="submitted", submitted_at=utcnow()))
        db.session.commit()
        return "submitted"
    messages = build_messages(campaign, recipients)
    db.session.rollback()  # hold no transaction open while talking to the Core
    try:
        answer = get_client().submit_batch(batch.idempotency_key, messages)
    except CoreThrottled as exc:
        return _retry_later(batch_id, exc, max(exc.retry_after or 1, 1))
    except CoreError as exc:
        if not exc.retryable:
            log.error("batch %s refused by the Core: %s", batch_id, exc)
        return _retry_later(batch_id, exc)
    return apply_results(batch_id, answer["results"])


def _retry_later(batch_id, exc, delay=None):
    batch = db.session.get(DispatchBatch, batch_id)
    delay = delay or BACKOFF[min(batch.attempts, len(BACKOFF)) - 1 if batch.attempts else 0]
    db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id, DispatchBatch.state == "claimed")
                       .values(next_attempt_at=utcnow() + timedelta(seconds=delay), last_error=str(exc)[:300]))
    db.session.commit()
    log.warning("batch %s: Core unavailable (%s); retry in %s s with the same idempotency key", batch_id, exc, delay)
    return "retry"


def apply_results(batch_id, results):
    """Apply per-message accept/reject once (a replayed answer finds the batch already submitted)."""
    now = utcnow()
    done = db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id,
                                                          DispatchBatch.state == "claimed")
                              .values(state="submitted", submitted_at=now)).rowcount
    if not done:
        db.session.rollback()
        return "submitted"
    batch = db.session.get(DispatchBatch, batch_id)
    campaign = db.session.get(Campaign, batch.campaign_id)
    accepted, rejected, retry = [], [], []
    for result in results:
        rid = int(result["id"])
        if result["accepted"]:
            accepted.append({"rid": rid, "core": result.get("core_id"), "b": batch_id})
        elif result.get("command_status") in TRANSIENT_CODES:
            retry.append(rid)
        else:
            rejected.append((rid, result.get("command_status") or "unknown"))
    if accepted:
        db.session.execute(text("UPDATE recipients SET state = 'sent', core_message_id = :core, submitted_at = :t "
                                "WHERE id = :rid AND batch_id = :b AND state = 'claimed'"),
                           [dict(a, t=now) for a in accepted])
    if rejected:
        numbers = dict(db.session.execute(select(Recipient.id, Recipient.number).where(
            Recipient.id.in_([r for r, _ in rejected]))).all())
        db.session.execute(text("UPDATE recipients SET state = 'failed', smpp_status = :s WHERE id = :rid "
                                "AND batch_id = :b AND state = 'claimed'"),
                           [{"rid": r, "s": code, "b": batch_id} for r, code in rejected])
        db.session.add_all([MessageError(campaign_id=campaign.id, recipient_id=r, number_tail=numbers.get(r, "")[-3:],
                                         smpp_status=code, reason=_meaning(code), created_at=now)
                            for r, code in rejected])
    if retry:
        db.session.execute(text("UPDATE recipients SET state = 'queued', batch_id = NULL WHERE id = :rid "
                                "AND batch_id = :b AND state = 'claimed'"), [{"rid": r, "b": batch_id} for r in retry])
        db.session.execute(_upsert(DailySent, {"campaign_id": campaign.id,
                                               "day": local_now(campaign.workspace, now).date()}, {"sent": -len(retry)}))
    n_ok, n_bad = len(accepted), len(rejected)
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
        queued_count=Campaign.queued_count - n_ok - n_bad, sent_count=Campaign.sent_count + n_ok,
        inflight_count=Campaign.inflight_count + n_ok, failed_count=Campaign.failed_count + n_bad))
    _count_hour(campaign, now, sent=n_ok, failed=n_bad)
    db.session.commit()
    pulse.record(campaign.workspace_id, sent=n_ok, failed=n_bad)
    return "submitted"


def _meaning(code):
    status = smpp_codes.describe(code)
    return f"{status.name}: {status.meaning}"[:200]


def _count_hour(campaign, when, sent=0, delivered=0, failed=0):
    if not (sent or delivered or failed):
        return
    hour = when.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    db.session.execute(_upsert(HourlyStat, {"campaign_id": campaign.id, "hour": hour,
                                            "workspace_id": campaign.workspace_id},
                               {"sent": sent, "delivered": delivered, "failed": failed}))


# --- one campaign's turn ----------------------------------------------------------------------

def dispatch_campaign(campaign_id, time_budget=None):
    """Replay due claims, then claim and submit batches while the allowance lasts (bounded in time)."""
    budget = time_budget if time_budget is not None else float(current_app.config.get("DISPATCH_TIME_BUDGET", 20))
    deadline = utcnow() + timedelta(seconds=budget)
    skip_stop_listed(campaign_id)
    submitted = 0
    for batch_id in due_batches(campaign_id):
        if take_lease(batch_id) and submit_batch(batch_id) == "retry":
            return submitted  # the Core is struggling: leave the rest for the next tick
    while utcnow() < deadline:
        batch_id = claim_batch(campaign_id)
        if batch_id is None:
            break
        if submit_batch(batch_id) == "retry":
            break
        submitted += 1
    finish_if_complete(campaign_id)
    return submitted


def finish_if_complete(campaign_id):
    campaign = db.session.get(Campaign, campaign_id)
    db.session.refresh(campaign)
    if campaign.status != "Sending" or campaign.mode == "Trigger":
        return False
    open_batches = db.session.scalar(select(func.count(DispatchBatch.id)).where(
        DispatchBatch.campaign_id == campaign_id, DispatchBatch.state == "claimed"))
    if campaign.queued_count <= 0 and campaign.inflight_count <= 0 and not open_batches:
        lifecycle.apply(campaign, "finish")
        return True
    return False


# --- the periodic tick ---------------------------------------------------------------------

def start_due_campaigns(now=None):
    """OnTime at start_at, Spread on its first day: approved, auto-start campaigns waiting in Pending."""
    now = now or utcnow()
    started = []
    waiting = db.session.scalars(select(Campaign).where(
        Campaign.status == "Pending", Campaign.moderation == "approved", Campaign.auto_start.is_(True),
        Campaign.archived_at.is_(None), Campaign.mode.in_(("OnTime", "Spread"))))
    for campaign in list(waiting):
        due = (campaign.mode == "OnTime" and campaign.start_at and campaign.start_at <= now) or (
            campaign.mode == "Spread" and campaign.spread_first_day
            and campaign.spread_first_day <= local_now(campaign.workspace, now).date())
        if due:
            try:
                lifecycle.apply(campaign, "start")
                started.append(campaign.id)
            except lifecycle.DomainError:
                db.session.rollback()  # someone else started/cancelled it first
    return started


def expire_overdue(now=None):
    """Spread campaigns whose window has ended with recipients left are Expired."""
    now = now or utcnow()
    expired = []
    for campaign in list(db.session.scalars(select(Campaign).where(
            Campaign.status.in_(("Sending", "Paused")), Campaign.mode == "Spread",
            Campaign.spread_last_day.isnot(None)))):
        if campaign.spread_last_day < local_now(campaign.workspace, now).date() and campaign.queued_count > 0:
            try:
                lifecycle.apply(campaign, "expire")
                expired.append(campaign.id)
            except lifecycle.DomainError:
                db.session.rollback()
    return expired


def campaigns_with_work():
    """Sending campaigns with something to hand to the Core (queued recipients or open claims)."""
    claimed = select(DispatchBatch.campaign_id).where(DispatchBatch.state == "claimed")
    return list(db.session.scalars(select(Campaign.id).where(
        Campaign.status == "Sending", Campaign.archived_at.is_(None),
        (Campaign.queued_count > 0) | Campaign.id.in_(claimed))))


def finish_completed():
    """Sending campaigns whose every recipient is final are Done (Trigger campaigns end by hand)."""
    ids = db.session.scalars(select(Campaign.id).where(
        Campaign.status == "Sending", Campaign.mode != "Trigger", Campaign.queued_count <= 0,
        Campaign.inflight_count <= 0))
    return [cid for cid in list(ids) if finish_if_complete(cid)]


# --- delivery reports ----------------------------------------------------------------------

FINAL = {"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "failed", "REJECTD": "failed"}


def poll_delivery_reports(limit=1000, max_pages=20):
    """Read Core events from the persisted cursor and apply them; returns the number applied."""
    client = get_client()
    applied = 0
    for _ in range(max_pages):
        state = db.session.get(SystemState, EVENTS_CURSOR)
        cursor = state.value if state else None
        db.session.rollback()
        page = client.events(cursor=cursor, limit=limit)
        events = page.get("events") or []
        if not events:
            break
        applied += apply_events(events, page.get("next_cursor"), cursor)
        if len(events) < limit:
            break
    return applied


def apply_events(events, next_cursor, expected_cursor):
    """Apply one page of events and move the cursor in the same transaction (idempotent)."""
    now = utcnow()
    moved = db.session.execute(update(SystemState).where(
        SystemState.key == EVENTS_CURSOR, SystemState.value == (expected_cursor or ""))
        .values(value=next_cursor or "", updated_at=now)).rowcount
    if not moved:
        if db.session.get(SystemState, EVENTS_CURSOR) is not None:
            db.session.rollback()
            return 0  # another poller applied this page
        db.session.add(SystemState(key=EVENTS_CURSOR, value=next_cursor or "", updated_at=now))
        db.session.flush()
    by_id = {}
    for event in events:
        if event.get("status") in FINAL and str(event.get("id", "")).isdigit():
            by_id[int(event["id"])] = event
    if not by_id:
        db.session.commit()
        return 0
    rows = db.session.execute(select(Recipient.id, Recipient.campaign_id, Recipient.number).where(
        Recipient.id.in_(list(by_id)), Recipient.state == "sent")).all()
    per_campaign = {}
    delivered, failed, errors = [], [], []
    for rid, campaign_id, number in rows:
        event = by_id[rid]
        outcome = FINAL[event["status"]]
        stats = per_campaign.setdefault(campaign_id, {"delivered": 0, "failed": 0})
        stats[outcome] += 1
        done_at = _parse_time(event.get("done_at")) or now
        if outcome == "delivered":
            delivered.append({"rid": rid, "t": done_at})
        else:
            failed.append({"rid": rid, "t": done_at, "s": event["status"]})
            errors.append(MessageError(campaign_id=campaign_id, recipient_id=rid, number_tail=number[-3:],
                                       smpp_status=event["status"], created_at=now,
                                       reason=f"{_meaning(event['status'])} (error code {event.get('error_code') or '-'})"[:200]))
    if delivered:
        db.session.execute(text("UPDATE recipients SET state = 'delivered', delivered_at = :t "
                                "WHERE id = :rid AND state = 'sent'"), delivered)
    if failed:
        db.session.execute(text("UPDATE recipients SET state = 'failed', delivered_at = :t, smpp_status = :s "
                                "WHERE id = :rid AND state = 'sent'"), failed)
    db.session.add_all(errors)
    for campaign_id, stats in per_campaign.items():
        done = stats["delivered"] + stats["failed"]
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            delivered_count=Campaign.delivered_count + stats["delivered"],
            failed_count=Campaign.failed_count + stats["failed"],
            inflight_count=Campaign.inflight_count - done))
        _count_hour(db.session.get(Campaign, campaign_id), now, delivered=stats["delivered"], failed=stats["failed"])
    db.session.commit()
    for campaign_id, stats in per_campaign.items():
        pulse.record(db.session.get(Campaign, campaign_id).workspace_id, delivered=stats["delivered"],
                     failed=stats["failed"])
        finish_if_complete(campaign_id)
    return len(rows)


def _parse_time(value):
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
