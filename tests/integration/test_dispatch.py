"""Dispatch against the reference Core over real mutual TLS: batches, exactly-once replays,
message errors, delivery reports, quiet hours, daily limits, pause, and a Core outage."""
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from coresim.testing import faults, stats
from extensions import db
from models import DispatchBatch, MessageError, Recipient, utcnow
from services import dispatch
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def sim(sim, app, monkeypatch):
    """The shared simulator session (tests/conftest.py), with batches of 50."""
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 50)
    return sim


def sending_campaign(recipients=120, window="00:00-24:00", numbers=None, status="Sending", **fields):
    ws = make_workspace(sending_window=window)
    author = make_user(workspace=ws, role="author")
    sender = make_sender(ws, "ACME")
    campaign = make_campaign(ws, author, status=status, moderation="approved", sender=sender, **fields)
    numbers = numbers or [f"4917{n:08d}" for n in range(1, recipients + 1)]
    add_recipients(campaign, numbers)
    campaign.queued_count = len(numbers)
    db.session.commit()
    return campaign


def wait_for_reports(campaign, expected_final, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        dispatch.poll_delivery_reports()
        db.session.refresh(campaign)
        if campaign.delivered_count + campaign.failed_count >= expected_final:
            return
        time.sleep(0.1)
    raise AssertionError(f"reports did not arrive: {campaign.delivered_count=} {campaign.failed_count=}")


def test_campaign_is_sent_delivered_and_done(core, sim):
    campaign = sending_campaign(120)
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert campaign.sent_count == 120 and campaign.queued_count == 0 and campaign.inflight_count == 120
    assert stats(sim, core)["accepted"] == 120
    assert db.session.scalar(select(func.count(DispatchBatch.id))) == 3  # 50 + 50 + 20

    wait_for_reports(campaign, 120)
    assert campaign.delivered_count == 120 and campaign.inflight_count == 0
    assert campaign.status == "Done"
    states = dict(db.session.execute(select(Recipient.state, func.count()).group_by(Recipient.state)).all())
    assert states == {"delivered": 120}


def test_rejected_numbers_become_message_errors_with_the_smpp_code(core, sim):
    numbers = ["491700000001", "999100000002", "491700000003"]
    campaign = sending_campaign(numbers=numbers)
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert campaign.sent_count == 2 and campaign.failed_count == 1
    error = db.session.scalars(select(MessageError)).one()
    assert error.smpp_status == "0x0000000B"
    assert "ESME_RINVDSTADR" in error.reason and error.number_tail == "002"


def test_worker_dying_after_submit_is_replayed_once_with_the_same_key(core, sim):
    """A worker submitted a batch and died before recording the answer: the next worker replays it
    with the same idempotency key and the Core does not send anything twice."""
    campaign = sending_campaign(40)
    batch_id = dispatch.claim_batch(campaign.id)
    batch = db.session.get(DispatchBatch, batch_id)
    recipients = list(db.session.scalars(select(Recipient).where(Recipient.batch_id == batch_id).order_by(Recipient.id)))
    from gateway import get_client

    get_client().submit_batch(batch.idempotency_key, dispatch.build_messages(campaign, recipients))
    # ... the worker is gone; its lease runs out.
    batch.next_attempt_at = utcnow() - timedelta(seconds=1)
    db.session.commit()

    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    core_stats = stats(sim, core)
    assert core_stats["accepted"] == 40 and core_stats["max_per_destination"] == 1
    assert campaign.sent_count == 40 and campaign.queued_count == 0


def test_applying_the_same_answer_twice_changes_nothing(core, sim):
    campaign = sending_campaign(10)
    batch_id = dispatch.claim_batch(campaign.id)
    results = [{"id": str(r.id), "accepted": True, "core_id": f"c{r.id}", "command_status": "0x00000000"}
               for r in db.session.scalars(select(Recipient).where(Recipient.batch_id == batch_id))]
    dispatch.apply_results(batch_id, results)
    dispatch.apply_results(batch_id, results)
    db.session.refresh(campaign)
    assert campaign.sent_count == 10 and campaign.inflight_count == 10


def test_core_down_keeps_the_claim_and_resumes_by_itself(core, sim):
    campaign = sending_campaign(30)
    faults(sim, core, down=True)
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert campaign.sent_count == 0 and campaign.status == "Sending"
    batch = db.session.scalars(select(DispatchBatch)).one()
    assert batch.state == "claimed" and batch.last_error
    faults(sim, core, down=False)
    batch.next_attempt_at = utcnow() - timedelta(seconds=1)  # the back-off has passed
    db.session.commit()
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert campaign.sent_count == 30 and stats(sim, core)["accepted"] == 30


def test_quiet_hours_hold_messages_unless_a_trigger_ignores_the_window(core, sim):
    now = utcnow()
    closed = f"{(now + timedelta(hours=2)):%H}:00-{(now + timedelta(hours=3)):%H}:00"
    if closed.split("-")[1] <= closed.split("-")[0]:
        closed = "01:00-02:00" if now.hour not in (1,) else "03:00-04:00"
    held = sending_campaign(5, window=closed)
    assert dispatch.allowance(held) == 0
    dispatch.dispatch_campaign(held.id)
    assert stats(sim, core)["accepted"] == 0

    otp = sending_campaign(5, window=closed, mode="Trigger", ignore_daily_window=True)
    dispatch.dispatch_campaign(otp.id)
    assert stats(sim, core)["accepted"] == 5


def test_daily_limit_caps_todays_messages(core, sim):
    campaign = sending_campaign(20, daily_limit=7)
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert campaign.sent_count == 7 and campaign.queued_count == 13
    assert dispatch.allowance(campaign) == 0


def test_paused_or_not_started_campaigns_send_nothing(core, sim):
    paused = sending_campaign(5, status="Paused")
    dispatch.dispatch_campaign(paused.id)
    waiting = sending_campaign(5, status="Pending")  # approved, waiting for its start
    dispatch.dispatch_campaign(waiting.id)
    assert stats(sim, core)["accepted"] == 0
    assert dispatch.allowance(paused) == 0 and dispatch.allowance(waiting) == 0


def test_stop_listed_numbers_are_skipped_at_claim_time(core, sim):
    from models import StopListEntry
    from services.numbers import ctn_hash

    campaign = sending_campaign(numbers=["491700000011", "491700000012"])
    db.session.add(StopListEntry(workspace_id=campaign.workspace_id, number="491700000012",
                                 ctn_hash=ctn_hash("491700000012", campaign.workspace_id)))
    db.session.commit()
    dispatch.dispatch_campaign(campaign.id)
    db.session.refresh(campaign)
    assert stats(sim, core)["accepted"] == 1 and campaign.queued_count == 0
    assert db.session.scalar(select(Recipient.state).where(Recipient.number == "491700000012")) == "stop_listed"


def test_due_ontime_campaign_starts_and_a_tick_schedules_it(core, sim):
    ws = make_workspace()
    author = make_user(workspace=ws)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="approved",
                             sender=make_sender(ws), start_at=utcnow() - timedelta(minutes=1))
    assert dispatch.start_due_campaigns() == [campaign.id]
    db.session.refresh(campaign)
    assert campaign.status == "Sending"
