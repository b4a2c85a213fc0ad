"""Dispatch to the SMS Core: allowance, batch claims, exactly-once submission, delivery reports.

Correctness across many workers comes from the database, never from process state:
- a batch is claimed in one transaction (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has a
  single writer) and gets an idempotency key before anything is sent;
- a batch is (re)submitted only by whoever holds its lease (`next_attempt_at`), always with the
  same key, so a worker killed mid-submit leaves a claim that another worker replays and the Core
  answers with its first result instead of sending twice;
- results and delivery reports are applied with conditional UPDATEs (`WHERE state = 'claimed'`,
  `WHERE state = 'sent'`), so applying the same answer twice changes nothing;
- a delivery report is first kept (`pending_reports`, in the transaction that moves the events
  cursor) and applied once its message is `sent` — a report that overtakes the submit answer
  (a replayed batch, a worker that died before recording it) waits instead of being lost.

Under faults (docs/operations.md "Dispatch under faults"), per campaign and shared by every worker
through `dispatch_states`: transient trouble (429, 5xx, Core unreachable, per-message transient
SMPP codes) puts the campaign into exponential back-off with jitter, honouring `Retry-After`;
a message refused transiently is resubmitted after DISPATCH_RESUBMIT_SECONDS × 4^n; a batch-level
4xx is a Job error and DISPATCH_MAX_REFUSALS of them in a row fail the campaign; a run of
DISPATCH_BREAKER_REJECTIONS permanent rejections, or DISPATCH_GIVE_UP_MINUTES of trouble with
nothing accepted, pauses it with a `pause_reason`. No new batch is claimed while the Core is known
down (services/core_outage.py).
"""
import logging
import random
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from extensions import affected_rows, db, dialect_insert
from gateway import CoreBadResponse, CoreError, CoreRejected, CoreThrottled, CoreUnavailable, get_client
from models import (
    Campaign,
    DailySent,
    DispatchBatch,
    DispatchState,
    HourlyStat,
    JobError,
    MessageError,
    PendingReport,
    Recipient,
    SystemState,
    Workspace,
    utcnow,
)
from models.base import UTCDateTime
from models.states import CampaignStatus as S
from models.states import Mode
from models.states import Moderation as M
from services import campaigns as lifecycle
from services import core_outage, pulse, quotas, schedule, segments, smpp_codes, spread, stoplist, trigger_lane
from services.errors import DomainError

log = logging.getLogger("mc.dispatch")

EVENTS_CURSOR = "core.events.cursor"


# --- allowance -----------------------------------------------------------------------------

def local_now(workspace: Workspace, now: datetime | None = None) -> datetime:
    return (now or utcnow()).astimezone(ZoneInfo(workspace.timezone))


def window_open(workspace: Workspace, now: datetime | None = None) -> bool:
    """Is `now` inside the workspace's daily sending window (its time zone)?"""
    if workspace.window_start == "00:00" and workspace.window_end == "24:00":
        return True
    clock = local_now(workspace, now).strftime("%H:%M")
    end = "24:00" if workspace.window_end == "24:00" else workspace.window_end
    return bool(workspace.window_start <= clock < end)


def respects_window(campaign: Campaign) -> bool:
    return not (campaign.mode == Mode.TRIGGER and campaign.ignore_daily_window)


def sent_today(campaign: Campaign, day: date) -> int:
    return db.session.scalar(select(DailySent.sent).where(DailySent.campaign_id == campaign.id,
                                                         DailySent.day == day)) or 0


def allowance(campaign: Campaign, now: datetime | None = None, wanted: int | None = None) -> int:
    """How many messages this campaign may hand to the Core right now (0 = none)."""
    wanted = wanted if wanted is not None else batch_size()
    if campaign.status != S.SENDING or campaign.moderation != M.APPROVED or campaign.archived_at:
        return 0
    if schedule.not_yet(campaign, now):  # OnTime before start_at, Spread before its first day
        return 0
    workspace = campaign.workspace
    if respects_window(campaign) and not window_open(workspace, now):
        return 0
    if campaign.daily_limit:
        left = campaign.daily_limit - sent_today(campaign, local_now(workspace, now).date())
        return max(0, min(wanted, int(left)))
    return wanted


def batch_size() -> int:
    return int(current_app.config["DISPATCH_BATCH_SIZE"])


def lease() -> timedelta:
    """How long a claimer owns a batch before another worker may replay it (it may have died)."""
    return timedelta(seconds=int(current_app.config["DISPATCH_LEASE_SECONDS"]))


# --- claiming ------------------------------------------------------------------------------

def _insert(model: Any) -> postgresql.Insert | sqlite.Insert:
    """INSERT with the dialect's ON CONFLICT support (PostgreSQL or SQLite)."""
    return dialect_insert(model)


def _upsert(model: Any, keys: dict[str, Any], increments: dict[str, int]) -> Any:
    stmt = _insert(model).values(**keys, **increments)
    table = model.__table__
    return stmt.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={name: getattr(table.c, name) + getattr(stmt.excluded, name) for name in increments})


def skip_stop_listed(campaign_id: int) -> int:
    """Numbers put on the stop-list after the build never go out: mark them before claiming. The
    Master workspace's stop-list counts in every workspace (services/stoplist.py)."""
    campaign = db.session.get_one(Campaign, campaign_id)
    n = affected_rows(db.session.execute(text(
        "UPDATE recipients SET state = 'stop_listed' WHERE campaign_id = :c AND state = 'queued' "
        "AND number IN (SELECT number FROM stop_list WHERE workspace_id IN (:w, :master))"),
        {"c": campaign_id, "w": campaign.workspace_id, "master": stoplist.master_id()}))
    if n:
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id)
                           .values(queued_count=Campaign.queued_count - n))
    db.session.commit()
    return n


def _lock_campaign(campaign_id: int | None) -> None:
    """Lock order, on PostgreSQL, for every dispatch transaction that writes: the campaign row first,
    then batches, recipients, daily/hourly counters and the dispatch state — two workers then wait
    for each other instead of deadlocking. (SQLite has one writer at a time.)"""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SELECT id FROM campaigns WHERE id = :c FOR UPDATE"), {"c": campaign_id})


def claim_batch(campaign_id: int, now: datetime | None = None) -> int | None:
    """Claim up to one batch of queued recipients for this campaign; returns the batch id or None."""
    return claim_next(campaign_id, now)[0]


def claim_next(campaign_id: int, now: datetime | None = None) -> tuple[int | None, bool]:
    """claim_batch, and whether the claim drained the queue: it found fewer eligible recipients than
    the allowance let it take, so another claim in the same run would find none (a Trigger push
    committed after it queues its own lane turn)."""
    now = now or utcnow()
    postgres = db.engine.dialect.name == "postgresql"
    lock = " FOR UPDATE" if postgres else ""
    # Serialise claims per campaign so the daily limit cannot be overshot by parallel workers.
    row = db.session.execute(text(f"SELECT id FROM campaigns WHERE id = :c{lock}"), {"c": campaign_id}).first()
    campaign = db.session.get_one(Campaign, campaign_id, populate_existing=True)   # as stored now, one query
    size = allowance(campaign, now) if row else 0
    size = quotas.cap_claim(campaign, size, now)  # the workspace's daily quota (locks the workspace row)
    if size <= 0:
        db.session.rollback()
        return None, False
    key = uuid.uuid4().hex
    batch = DispatchBatch(campaign_id=campaign_id, idempotency_key=key, size=0, state="claimed",
                          created_at=now, next_attempt_at=now + lease())
    db.session.add(batch)
    db.session.flush()
    spread_sql = ""
    params = {"c": campaign_id, "b": batch.id, "n": size}
    if campaign.mode == Mode.SPREAD:
        spread_sql = " AND (spread_day IS NULL OR spread_day = :today)"  # only today's share (issue 17)
        params["today"] = local_now(campaign.workspace, now).date()
    skip = " FOR UPDATE SKIP LOCKED" if postgres else ""
    # A message the Core refused transiently waits for its own resubmission time (retry_at).
    params["now"] = now
    claimed = affected_rows(db.session.execute(text(
        f"UPDATE recipients SET state = 'claimed', batch_id = :b WHERE id IN ("
        f"SELECT id FROM recipients WHERE campaign_id = :c AND state = 'queued'{spread_sql} "
        f"AND (retry_at IS NULL OR retry_at <= :now) "
        f"ORDER BY id LIMIT :n{skip})").bindparams(bindparam("now", type_=UTCDateTime())), params))
    if not claimed:
        db.session.rollback()
        return None, True
    batch.size = claimed
    db.session.execute(_upsert(DailySent, {"campaign_id": campaign_id,
                                           "day": local_now(campaign.workspace, now).date()}, {"sent": claimed}))
    db.session.commit()
    return int(batch.id), claimed < size


def take_lease(batch_id: int, now: datetime | None = None) -> bool:
    """Become the one worker (re)submitting this batch until the lease runs out. While leased a
    batch has no last_error: one that has is waiting out a back-off (see release_after_outage)."""
    now = now or utcnow()
    got = affected_rows(db.session.execute(update(DispatchBatch).where(
        DispatchBatch.id == batch_id, DispatchBatch.state == "claimed", DispatchBatch.next_attempt_at <= now)
        .values(next_attempt_at=now + lease(), attempts=DispatchBatch.attempts + 1, last_error=None)))
    db.session.commit()
    return bool(got)


def due_batches(campaign_id: int, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    return list(db.session.scalars(select(DispatchBatch.id).where(
        DispatchBatch.campaign_id == campaign_id, DispatchBatch.state == "claimed",
        DispatchBatch.next_attempt_at <= now).order_by(DispatchBatch.id)))


# --- submitting ----------------------------------------------------------------------------

def build_messages(campaign: Campaign, recipients: Iterable[Recipient]) -> list[dict[str, Any]]:
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


def submit_batch(batch_id: int) -> str:
    """Submit (or replay) a claimed batch and apply the Core's answer.
    Returns 'submitted', 'backoff' (some messages refused transiently), 'retry' or 'refused'."""
    batch = db.session.get_one(DispatchBatch, batch_id)
    campaign = db.session.get_one(Campaign, batch.campaign_id)
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
    key = batch.idempotency_key
    db.session.rollback()  # hold no transaction open while talking to the Core
    try:
        answer = get_client().submit_batch(key, messages)
    except CoreThrottled as exc:
        return _retry_later(batch_id, exc, "http_429", f"The Core throttles batches (HTTP 429): {exc.message}",
                            retry_after=exc.retry_after)
    except CoreUnavailable as exc:
        core_outage.mark_down(exc)
        return _retry_later(batch_id, exc, "core_down", f"The Core is unavailable: {exc.message}")
    except CoreRejected as exc:
        return refuse_batch(batch_id, exc)
    except CoreBadResponse as exc:
        return _retry_later(batch_id, exc, "bad_response", f"The Core's answer was unusable: {exc.message}")
    core_answered()
    return apply_results(batch_id, answer["results"])


def _retry_later(batch_id: int, exc: CoreError, code: str, reason: str, retry_after: float | None = None) -> str:
    """Transient trouble with the whole batch: keep the claim (same idempotency key) and back off."""
    now = utcnow()
    db.session.rollback()
    campaign_id = db.session.scalar(select(DispatchBatch.campaign_id).where(DispatchBatch.id == batch_id))
    _lock_campaign(campaign_id)
    state = _locked_state(campaign_id, now)
    delay = _back_off(state, code, reason, now, retry_after)
    give_up = _given_up(state, now)
    db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id, DispatchBatch.state == "claimed")
                       .values(next_attempt_at=now + timedelta(seconds=delay), last_error=str(exc)[:300]))
    db.session.commit()
    if code != "core_down":  # an outage is logged once, by services/core_outage.py
        log.warning("batch %s: %s; retry in %.1f s with the same idempotency key", batch_id, reason[:200], delay)
    if give_up:
        system_pause(campaign_id, give_up)
    return "retry"


def refuse_batch(batch_id: int, exc: CoreError) -> str:
    """A batch-level 4xx: resending the same request will not help. The batch is dropped (its
    recipients go back to the queue — the Core sent none of them), a Job error says why, and after
    DISPATCH_MAX_REFUSALS refusals in a row the campaign is Failed with its failure_reason."""
    now = utcnow()
    db.session.rollback()
    batch = db.session.get_one(DispatchBatch, batch_id)
    _lock_campaign(batch.campaign_id)
    refused = affected_rows(db.session.execute(update(DispatchBatch).where(
        DispatchBatch.id == batch_id, DispatchBatch.state == "claimed")
        .values(state="refused", last_error=str(exc)[:300])))
    if not refused:
        db.session.rollback()
        return "refused"
    campaign = db.session.get_one(Campaign, batch.campaign_id)
    released = affected_rows(db.session.execute(text(
        "UPDATE recipients SET state = 'queued', batch_id = NULL "
        "WHERE campaign_id = :c AND batch_id = :b AND state = 'claimed'"), {"c": campaign.id, "b": batch_id}))
    if released:
        db.session.execute(_upsert(DailySent, {"campaign_id": campaign.id,
                                               "day": local_now(campaign.workspace, now).date()}, {"sent": -released}))
    what = f"HTTP {exc.status} {exc.code or ''}: {exc.message}".replace("  ", " ")
    db.session.add(JobError(campaign_id=campaign.id, created_at=now, reason=(
        f"The Core refused batch #{batch_id} ({released} messages, nothing sent): {what} "
        f"(request id {exc.request_id or '-'})")[:200]))
    state = _locked_state(campaign.id, now)
    state.refusals += 1
    refusals = state.refusals
    _back_off(state, f"http_{exc.status}", f"The Core refused a batch: {what}", now)
    db.session.commit()
    log.error("[core-refused] campaign %s batch %s: %s (request_id=%s); refusal %s in a row (limit %s)",
              campaign.id, batch_id, what[:200], exc.request_id, refusals, current_app.config["DISPATCH_MAX_REFUSALS"])
    if refusals >= int(current_app.config["DISPATCH_MAX_REFUSALS"]):
        reason = f"The Core refused {refusals} batches in a row: {what} (request id {exc.request_id or '-'})"
        try:
            lifecycle.apply(campaign, "fail", values={"failure_reason": reason[:300]}, note=reason[:300])
            log.error("[dispatch-failed] campaign %s: %s", campaign.id, reason)
        except DomainError:
            db.session.rollback()  # paused, cancelled or failed meanwhile
    return "refused"


# --- back-off, breaker and give-up (per campaign, shared by every worker) ----------------------

def _locked_state(campaign_id: int | None, now: datetime) -> DispatchState:
    """The campaign's DispatchState, created on first use and locked for this transaction."""
    db.session.execute(_insert(DispatchState).values(
        campaign_id=campaign_id, backoff_step=0, refusals=0, rejection_streak=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=["campaign_id"]))
    query = select(DispatchState).where(DispatchState.campaign_id == campaign_id)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update()
    return db.session.scalars(query.execution_options(populate_existing=True)).one()


def backoff_delay(step: int, retry_after: float | None = None) -> float:
    """Exponential back-off with "equal jitter": half of base·2^step fixed, half random; capped at
    DISPATCH_BACKOFF_MAX_SECONDS; never shorter than the Core's Retry-After."""
    config = current_app.config
    ceiling: float = min(float(config["DISPATCH_BACKOFF_MAX_SECONDS"]),
                  float(config["DISPATCH_BACKOFF_BASE_SECONDS"]) * 2 ** min(step, 30))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    return max(delay, float(retry_after or 0))


def _back_off(state: DispatchState, code: str, reason: str, now: datetime, retry_after: float | None = None) -> float:
    delay = backoff_delay(state.backoff_step, retry_after)
    state.backoff_step = min(state.backoff_step + 1, 30)
    state.backoff_until = now + timedelta(seconds=delay)
    state.trouble_since = state.trouble_since or now
    state.trouble_code, state.trouble = code[:40], reason[:300]
    return delay


def _given_up(state: DispatchState, now: datetime) -> str | None:
    """The pause reason when transient trouble has lasted DISPATCH_GIVE_UP_MINUTES, else None."""
    minutes = float(current_app.config["DISPATCH_GIVE_UP_MINUTES"])
    if state.trouble_since is None or now - state.trouble_since < timedelta(minutes=minutes):
        return None
    return (f"{state.trouble} — nothing accepted for {minutes:g} minutes "
            f"(since {state.trouble_since:%Y-%m-%d %H:%M} UTC)")[:300]


def _recovered(state: DispatchState) -> None:
    state.backoff_step, state.backoff_until = 0, None
    state.trouble_since = state.trouble_code = state.trouble = None


def system_pause(campaign_id: int | None, reason: str) -> bool:
    """The system pauses a Sending campaign with a reason the operator reads; Resume continues."""
    campaign = db.session.get_one(Campaign, campaign_id, populate_existing=True)   # as stored now, one query
    if campaign.status != S.SENDING:
        return False
    try:
        lifecycle.apply(campaign, "system_pause", values={"pause_reason": reason[:300]}, note=reason[:300])
    except DomainError:
        db.session.rollback()  # paused, cancelled or finished meanwhile
        return False
    now = utcnow()
    state = _locked_state(campaign_id, now)
    _recovered(state)  # Resume starts with a fresh back-off, breaker and give-up clock
    state.refusals, state.rejection_streak, state.rejection_code, state.paused_at = 0, 0, None, now
    db.session.commit()
    log.warning("[dispatch-paused] campaign %s paused by the system: %s", campaign_id, reason)
    return True


def core_answered(now: datetime | None = None) -> bool:
    """A Core call succeeded: end a recorded outage, and release the campaigns that were only
    waiting for the Core (their back-off, and the claims waiting to be replayed) at once."""
    if not core_outage.mark_up(now):
        return False
    now = now or utcnow()
    waiting = sorted(db.session.scalars(select(DispatchState.campaign_id).where(
        DispatchState.trouble_code == "core_down")))
    db.session.rollback()
    for campaign_id in waiting:  # campaign row first, as every dispatch transaction
        _lock_campaign(campaign_id)
        db.session.execute(update(DispatchState).where(DispatchState.campaign_id == campaign_id,
                                                       DispatchState.trouble_code == "core_down")
                           .values(backoff_step=0, backoff_until=None, trouble_since=None, trouble_code=None,
                                   trouble=None))
        db.session.execute(update(DispatchBatch).where(
            DispatchBatch.campaign_id == campaign_id, DispatchBatch.state == "claimed",
            DispatchBatch.last_error.isnot(None), DispatchBatch.next_attempt_at > now)
            .values(next_attempt_at=now))
        db.session.commit()
    return True


def held_back(campaign_id: int, now: datetime | None = None) -> bool:
    """No new claims for this campaign now: it is backing off, or the Core is known down."""
    now = now or utcnow()
    until = db.session.scalar(select(DispatchState.backoff_until).where(DispatchState.campaign_id == campaign_id))
    return bool(until and until > now) or core_outage.current() is not None


def notice(campaign: Campaign, now: datetime | None = None) -> dict[str, Any] | None:
    """What the campaign page's banner says about dispatch trouble, or None:
    {"kind": "system_paused" | "core_down" | "backing_off" | "failed", "since", "reason", "until"}."""
    now = now or utcnow()
    state = db.session.get(DispatchState, campaign.id)
    if campaign.status == S.FAILED and campaign.failure_reason:
        return {"kind": "failed", "since": campaign.finished_at, "reason": campaign.failure_reason, "until": None}
    if campaign.status == S.PAUSED and campaign.pause_reason:
        return {"kind": "system_paused", "since": state.paused_at if state else None,
                "reason": campaign.pause_reason, "until": None}
    if campaign.status != S.SENDING:
        return None
    outage = core_outage.current()
    if outage:
        return {"kind": "core_down", "since": outage["since"], "reason": outage["reason"], "until": None}
    quota = quotas.notice(campaign, now) if campaign.queued_count > 0 else None
    if quota:
        return quota
    if state and state.trouble_since and state.backoff_until:
        return {"kind": "backing_off", "since": state.trouble_since, "reason": state.trouble,
                "until": state.backoff_until if state.backoff_until > now else None}
    return None


def apply_results(batch_id: int, results: list[dict[str, Any]]) -> str:
    """Apply per-message accept/reject once (a replayed answer finds the batch already submitted).
    Returns 'submitted', or 'backoff' when some messages were refused transiently."""
    now = utcnow()
    _lock_campaign(db.session.scalar(select(DispatchBatch.campaign_id).where(DispatchBatch.id == batch_id)))
    done = affected_rows(db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id,
                                                          DispatchBatch.state == "claimed")
                              .values(state="submitted", submitted_at=now)))
    if not done:
        db.session.rollback()
        return "submitted"
    batch = db.session.get_one(DispatchBatch, batch_id)
    campaign = db.session.get_one(Campaign, batch.campaign_id)
    accepted: list[dict[str, Any]] = []
    rejected: list[tuple[int, Any]] = []
    retry: list[tuple[int, Any]] = []
    for result in results:
        rid = int(result["id"])
        if result["accepted"]:
            accepted.append({"rid": rid, "core": result.get("core_id"), "b": batch_id})
        elif smpp_codes.is_transient(result.get("command_status")):
            retry.append((rid, result.get("command_status")))
        else:
            rejected.append((rid, result.get("command_status") or "unknown"))
    if accepted:
        db.session.execute(text("UPDATE recipients SET state = 'sent', core_message_id = :core, submitted_at = :t, "
                                "retry_at = NULL WHERE id = :rid AND batch_id = :b AND state = 'claimed'")
                           .bindparams(bindparam("t", type_=UTCDateTime())),
                           [dict(a, t=now) for a in accepted])
    if rejected:
        numbers: dict[int, str] = dict(db.session.execute(select(Recipient.id, Recipient.number).where(
            Recipient.id.in_([r for r, _ in rejected]))).all())
        db.session.execute(text("UPDATE recipients SET state = 'failed', smpp_status = :s WHERE id = :rid "
                                "AND batch_id = :b AND state = 'claimed'"),
                           [{"rid": r, "s": code, "b": batch_id} for r, code in rejected])
        db.session.add_all([MessageError(campaign_id=campaign.id, recipient_id=r, number_tail=numbers.get(r, "")[-3:],
                                         smpp_status=code, reason=_meaning(code), created_at=now)
                            for r, code in rejected])
    if retry:
        _requeue_transient(campaign, batch_id, retry, now)
    n_ok, n_bad = len(accepted), len(rejected)
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
        queued_count=Campaign.queued_count - n_ok - n_bad, sent_count=Campaign.sent_count + n_ok,
        inflight_count=Campaign.inflight_count + n_ok, failed_count=Campaign.failed_count + n_bad))
    _count_hour(campaign, now, sent=n_ok, failed=n_bad)
    breaker, give_up = _judge_answer(campaign.id, results, n_ok, retry, now)
    otp = campaign.mode == Mode.TRIGGER
    db.session.commit()
    pulse.record(campaign.workspace_id, sent=n_ok, failed=n_bad)
    if otp and accepted:  # push -> accepted by the Core, for the Live Pulse and /metrics
        trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [a["rid"] for a in accepted], now.timestamp())
    if accepted:
        apply_pending_reports([a["rid"] for a in accepted])  # reports that overtook this answer
    pause_reason = breaker or give_up
    if pause_reason:
        system_pause(campaign.id, pause_reason)
    return "backoff" if retry else "submitted"


def _requeue_transient(campaign: Campaign, batch_id: int, retry: list[tuple[int, Any]], now: datetime) -> None:
    """Messages refused transiently go back to the queue, each not before its own resubmission
    time (DISPATCH_RESUBMIT_SECONDS × 4^attempts, capped): bounded submissions per recipient."""
    base = float(current_app.config["DISPATCH_RESUBMIT_SECONDS"])
    cap = max(base, float(current_app.config["DISPATCH_BACKOFF_MAX_SECONDS"]))
    attempts: dict[int, int] = dict(db.session.execute(select(Recipient.id, Recipient.attempts).where(
        Recipient.id.in_([r for r, _ in retry]))).all())
    table = Recipient.__table__
    db.session.execute(
        update(table).where(table.c.id == bindparam("rid"), table.c.batch_id == batch_id,
                            table.c.state == "claimed")
        .values(state="queued", batch_id=None, attempts=bindparam("n"), retry_at=bindparam("at")),
        [{"rid": r, "n": (attempts.get(r) or 0) + 1,
          "at": now + timedelta(seconds=min(cap, base * 4 ** min(attempts.get(r) or 0, 10)))} for r, _ in retry])
    db.session.execute(_upsert(DailySent, {"campaign_id": campaign.id,
                                           "day": local_now(campaign.workspace, now).date()}, {"sent": -len(retry)}))


def _judge_answer(campaign_id: int, results: list[dict[str, Any]], n_ok: int, retry: list[tuple[int, Any]],
                  now: datetime) -> tuple[str | None, str | None]:
    """Update the campaign's breaker and back-off from one batch answer (in this transaction).
    Returns (breaker pause reason or None, give-up pause reason or None)."""
    state = _locked_state(campaign_id, now)
    streak, code = state.rejection_streak, state.rejection_code
    for result in results:  # in the Core's order: a run of permanent rejections, nothing accepted in between
        status = result.get("command_status") or "unknown"
        if result["accepted"]:
            streak, code = 0, None
        elif not smpp_codes.is_transient(status):
            streak += 1
            code = status if code in (None, status) else "mixed"
    state.rejection_streak, state.rejection_code = streak, code
    state.refusals = 0  # the Core took the batch itself
    if n_ok:
        _recovered(state)
    give_up = None
    if retry:
        codes = sorted({c for _, c in retry})
        words = ", ".join(smpp_codes.in_words(c) for c in codes)
        _back_off(state, codes[0], f"The Core refuses messages transiently ({words}): "
                  f"{len(retry)} of the last batch's {len(results)} wait to be resubmitted", now)
        give_up = _given_up(state, now)
    elif not n_ok:
        state.backoff_step, state.backoff_until = 0, None
    breaker = None
    if streak >= int(current_app.config["DISPATCH_BREAKER_REJECTIONS"]):
        if code == "mixed":
            breaker = f"Permanent rejections with several SMPP codes for the last {streak} messages"
        else:
            described = smpp_codes.describe(code)
            breaker = f"{smpp_codes.in_words(code)} for the last {streak} messages ({described.meaning})"
    return breaker, give_up


def _meaning(code: object) -> str:
    status = smpp_codes.describe(code)
    return f"{status.name}: {status.meaning}"[:200]


def _count_hour(campaign: Campaign, when: datetime, sent: int = 0, delivered: int = 0, failed: int = 0) -> None:
    if not (sent or delivered or failed):
        return
    hour = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    db.session.execute(_upsert(HourlyStat, {"campaign_id": campaign.id, "hour": hour,
                                            "workspace_id": campaign.workspace_id},
                               {"sent": sent, "delivered": delivered, "failed": failed}))


# --- one campaign's turn ----------------------------------------------------------------------

def dispatch_campaign(campaign_id: int, time_budget: float | None = None, now: datetime | None = None) -> int:
    """Replay due claims, then claim and submit batches while the allowance lasts (bounded in time).
    `now` (UTC) is the clock the allowance is judged by (tests pass theirs; default: the clock)."""
    budget = time_budget if time_budget is not None else float(current_app.config["DISPATCH_TIME_BUDGET"])
    deadline = utcnow() + timedelta(seconds=budget)
    skip_stop_listed(campaign_id)
    submitted = 0
    for batch_id in due_batches(campaign_id):
        if take_lease(batch_id) and submit_batch(batch_id) != "submitted":
            return submitted  # the Core is struggling: leave the rest for the next tick
    while utcnow() < deadline and not held_back(campaign_id):
        claimed, drained = claim_next(campaign_id, now)
        if claimed is None:
            break
        outcome = submit_batch(claimed)
        if outcome != "submitted":
            break  # back-off, outage or refusal: the campaign's state says when to try again
        submitted += 1
        if drained:
            break  # nothing eligible was left behind this batch: a further claim would find nothing
    finish_if_complete(campaign_id)
    return submitted


def finish_if_complete(campaign_id: int) -> bool:
    campaign = db.session.get_one(Campaign, campaign_id, populate_existing=True)   # as stored now, one query
    if campaign.status != S.SENDING or campaign.mode == Mode.TRIGGER:
        return False
    open_batches = db.session.scalar(select(func.count(DispatchBatch.id)).where(
        DispatchBatch.campaign_id == campaign_id, DispatchBatch.state == "claimed"))
    if campaign.queued_count <= 0 and campaign.inflight_count <= 0 and not open_batches:
        # Recipients whose Spread day passed unsent were expired: the campaign did not deliver all.
        lifecycle.apply(campaign, "expire" if campaign.expired_count else "finish")
        return True
    return False


# --- the periodic tick ---------------------------------------------------------------------

def start_due_campaigns(now: datetime | None = None) -> list[int]:
    """OnTime at start_at, Spread on its first day: approved campaigns waiting in Pending with auto-start
    or a Start pressed early (start_requested_at)
    (services/schedule.py decides; one whose start window has passed is left to expire_overdue)."""
    now = now or utcnow()
    started = []
    waiting = db.session.scalars(select(Campaign).where(
        Campaign.status == S.PENDING, Campaign.moderation == M.APPROVED,
        Campaign.auto_start.is_(True) | Campaign.start_requested_at.isnot(None),
        Campaign.archived_at.is_(None), Campaign.mode.in_((Mode.ON_TIME, Mode.SPREAD))))
    for campaign in list(waiting):
        if not schedule.not_yet(campaign, now) and not schedule.window_over(campaign, now):
            try:
                lifecycle.apply(campaign, "start", now=now)
                started.append(campaign.id)
            except DomainError:
                db.session.rollback()  # someone else started/cancelled it first
    return started


def expire_overdue(now: datetime | None = None) -> list[int]:
    """Expire what missed its time (issue 17): a submitted OnTime or Spread campaign still Pending
    after its start window (services/schedule.py); the unsent recipients of a Spread's past days
    (each recipient has exactly one day: counted in expired_count); a Sending/Paused Spread whose
    window has ended is then Expired."""
    now = now or utcnow()
    expired = []
    for campaign in list(db.session.scalars(select(Campaign).where(
            Campaign.status == S.PENDING, Campaign.submitted_at.isnot(None), Campaign.archived_at.is_(None),
            Campaign.mode.in_((Mode.ON_TIME, Mode.SPREAD))))):
        if schedule.window_over(campaign, now) and _expire(campaign, now):
            expired.append(campaign.id)
    for campaign in list(db.session.scalars(select(Campaign).where(
            Campaign.status.in_((S.SENDING, S.PAUSED)), Campaign.mode == Mode.SPREAD,
            Campaign.spread_last_day.isnot(None)))):
        _lock_campaign(campaign.id)
        spread.expire_past_days(campaign.id, schedule.today(campaign.workspace, now))
        db.session.commit()
        db.session.refresh(campaign)
        if schedule.spread_over(campaign, now) and (campaign.expired_count or campaign.queued_count) \
                and _expire(campaign, now):
            expired.append(campaign.id)
    return expired


def _expire(campaign: Campaign, now: datetime) -> bool:
    try:
        lifecycle.apply(campaign, "expire", now=now)
    except DomainError:
        db.session.rollback()  # started, cancelled or expired by someone else first
        return False
    return True


def campaigns_with_work(now: datetime | None = None) -> list[int]:
    """Sending campaigns with something to hand to the Core now: claims due for a replay, or queued
    recipients — unless the campaign is backing off or the Core is known down."""
    now = now or utcnow()
    due = select(DispatchBatch.campaign_id).where(DispatchBatch.state == "claimed",
                                                  DispatchBatch.next_attempt_at <= now)
    work = Campaign.id.in_(due)
    if core_outage.current() is None:
        waiting = select(DispatchState.campaign_id).where(DispatchState.backoff_until > now)
        work = work | ((Campaign.queued_count > 0) & Campaign.id.not_in(waiting))
    return list(db.session.scalars(select(Campaign.id).where(
        Campaign.status == S.SENDING, Campaign.archived_at.is_(None), work)))


def finish_completed() -> list[int]:
    """Sending campaigns whose every recipient is final are Done (Trigger campaigns end by hand)."""
    ids = db.session.scalars(select(Campaign.id).where(
        Campaign.status == S.SENDING, Campaign.mode != Mode.TRIGGER, Campaign.queued_count <= 0,
        Campaign.inflight_count <= 0))
    return [cid for cid in list(ids) if finish_if_complete(cid)]


# --- delivery reports ----------------------------------------------------------------------

FINAL = {"DELIVRD": "delivered", "UNDELIV": "failed", "EXPIRED": "failed", "REJECTD": "failed"}


def poll_delivery_reports(limit: int = 1000, max_pages: int = 20) -> int:
    """Read Core events from the persisted cursor, keep them, and apply every kept report whose
    message is `sent`; returns the number applied. A Core outage is recorded (one `[core-down]`
    line), not raised: the next poll simply tries again."""
    client = get_client()
    for _ in range(max_pages):
        state = db.session.get(SystemState, EVENTS_CURSOR)
        cursor = state.value if state else None
        db.session.rollback()
        try:
            page = client.events(cursor=cursor, limit=limit)
        except CoreUnavailable as exc:
            core_outage.mark_down(exc)
            break
        except CoreThrottled as exc:
            log.info("delivery reports: the Core throttles the events feed (retry after %.0f s)", exc.retry_after)
            break
        core_answered()
        events = page.get("events") or []
        if not events:
            break
        keep_events(events, page.get("next_cursor"), cursor)
        if len(events) < limit:
            break
    applied = apply_pending_reports()
    drop_stale_reports()
    return applied


def keep_events(events: list[dict[str, Any]], next_cursor: str | None, expected_cursor: str | None) -> int:
    """Store one page of final reports and move the cursor in the same transaction (idempotent:
    a page another poller stored already changes nothing). Returns how many reports were kept."""
    now = utcnow()
    moved = affected_rows(db.session.execute(update(SystemState).where(
        SystemState.key == EVENTS_CURSOR, SystemState.value == (expected_cursor or ""))
        .values(value=next_cursor or "", updated_at=now)))
    if not moved:
        if db.session.get(SystemState, EVENTS_CURSOR) is not None:
            db.session.rollback()
            return 0  # another poller stored this page
        db.session.add(SystemState(key=EVENTS_CURSOR, value=next_cursor or "", updated_at=now))
        db.session.flush()
    rows: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.get("status") in FINAL and str(event.get("id", "")).isdigit():
            rows.setdefault(int(event["id"]), {
                "recipient_id": int(event["id"]), "core_id": str(event.get("core_id") or "")[:64] or None,
                "status": event["status"], "error_code": str(event.get("error_code") or "")[:10] or None,
                "done_at": _parse_time(event.get("done_at")) or now, "received_at": now})
    if rows:
        db.session.execute(_insert(PendingReport).on_conflict_do_nothing(index_elements=["recipient_id"]),
                           list(rows.values()))
    db.session.commit()
    return len(rows)


def apply_events(events: list[dict[str, Any]], next_cursor: str | None, expected_cursor: str | None) -> int:
    """Keep one page of events and apply what can be applied now; returns the number applied."""
    keep_events(events, next_cursor, expected_cursor)
    return apply_pending_reports([int(e["id"]) for e in events if str(e.get("id", "")).isdigit()])


_APPLY_REPORTS = text(
    "UPDATE recipients SET state = CASE WHEN p.status = 'DELIVRD' THEN 'delivered' ELSE 'failed' END, "
    "delivered_at = p.done_at, "
    "smpp_status = CASE WHEN p.status = 'DELIVRD' THEN recipients.smpp_status ELSE p.status END "
    "FROM pending_reports p WHERE p.recipient_id = recipients.id AND recipients.state = 'sent' "
    "AND recipients.id IN :ids "
    "RETURNING recipients.id, recipients.campaign_id, recipients.number, recipients.state"
).bindparams(bindparam("ids", expanding=True))


def apply_pending_reports(recipient_ids: Iterable[int] | None = None, chunk: int = 5000) -> int:
    """Apply kept reports whose message is `sent` (all of them, or those of `recipient_ids`).
    Exactly once: the conditional UPDATE (`state = 'sent'`) returns only the rows it changed — a
    concurrent applier waits for the row lock and then finds the row final — and the counters
    move by what it returned, in the same transaction that deletes the applied reports."""
    applied = 0
    ids = list(recipient_ids) if recipient_ids is not None else None
    while True:
        query = select(PendingReport.recipient_id, PendingReport.status, PendingReport.error_code).join(
            Recipient, Recipient.id == PendingReport.recipient_id).where(Recipient.state == "sent")
        if ids is not None:
            if not ids:
                break
            query = query.where(PendingReport.recipient_id.in_(ids[:chunk]))
            ids = ids[chunk:]
        pending = {rid: (status, code) for rid, status, code in db.session.execute(query.limit(chunk))}
        if not pending:
            db.session.rollback()
            if ids:
                continue
            break
        applied += _apply_reports(pending)
        if ids is None and len(pending) < chunk:
            break
    return applied


def _apply_reports(pending: dict[int, tuple[str, str | None]]) -> int:
    now = utcnow()
    if db.engine.dialect.name == "postgresql":  # rows locked in id order: concurrent appliers queue, never deadlock
        db.session.execute(text("SELECT id FROM recipients WHERE id IN :ids AND state = 'sent' ORDER BY id FOR UPDATE")
                           .bindparams(bindparam("ids", expanding=True)), {"ids": list(pending)})
    changed = db.session.execute(_APPLY_REPORTS, {"ids": list(pending)}).all()
    db.session.execute(delete(PendingReport).where(PendingReport.recipient_id.in_(list(pending))))
    per_campaign: dict[int, dict[str, int]] = {}
    errors: list[MessageError] = []
    for rid, campaign_id, number, state in changed:
        stats = per_campaign.setdefault(campaign_id, {"delivered": 0, "failed": 0})
        stats[state] += 1
        if state == "failed":
            status, code = pending[rid]
            errors.append(MessageError(campaign_id=campaign_id, recipient_id=rid, number_tail=(number or "")[-3:],
                                       smpp_status=status, created_at=now,
                                       reason=f"{_meaning(status)} (error code {code or '-'})"[:200]))
    db.session.add_all(errors)
    for campaign_id, stats in sorted(per_campaign.items()):  # one lock order for concurrent appliers
        done = stats["delivered"] + stats["failed"]
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            delivered_count=Campaign.delivered_count + stats["delivered"],
            failed_count=Campaign.failed_count + stats["failed"],
            inflight_count=Campaign.inflight_count - done))
        _count_hour(db.session.get_one(Campaign, campaign_id), now, delivered=stats["delivered"],
                    failed=stats["failed"])
    db.session.commit()
    for campaign_id, stats in per_campaign.items():
        pulse.record(db.session.get_one(Campaign, campaign_id).workspace_id, delivered=stats["delivered"],
                     failed=stats["failed"])
        finish_if_complete(campaign_id)
    return len(changed)


REPORTS_KEPT = timedelta(days=7)  # as long as the Core keeps an idempotency key: no replay can come later


def drop_stale_reports(now: datetime | None = None) -> int:
    """Drop kept reports that can never apply: a repeated report (at-least-once feed) of a message
    already final, one of a recipient that no longer exists (campaign deleted), or one older than
    REPORTS_KEPT (its batch was never replayed: the campaign was cancelled with the claim open)."""
    now = now or utcnow()
    stale = select(PendingReport.recipient_id).outerjoin(Recipient, Recipient.id == PendingReport.recipient_id).where(
        Recipient.id.is_(None) | Recipient.state.in_(("delivered", "failed", "stop_listed"))
        | (PendingReport.received_at < now - REPORTS_KEPT))
    dropped = affected_rows(db.session.execute(delete(PendingReport).where(PendingReport.recipient_id.in_(stale))))
    db.session.commit()
    return dropped


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
