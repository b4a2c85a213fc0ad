"""Dispatch under faults, in-process against the reference Core over real mutual TLS (issue 15):
reports that overtake the submit answer, back-off on transient codes and 429, batch-level refusals,
the circuit breaker, giving up, and a Core outage that is logged once. The same faults with real
`rq worker` processes are in test_dispatch_faults_workers.py."""
import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from coresim.testing import faults, stats
from extensions import db
from gateway import get_client
from models import Campaign, DispatchBatch, DispatchState, JobError, MessageError, PendingReport, Recipient, utcnow
from services import campaigns as lifecycle
from services import core_outage, dispatch, smpp_codes
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def sim(sim, app, monkeypatch):
    """The shared simulator session (tests/conftest.py), with batches of 50."""
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 50)
    return sim


def sending_campaign(n, prefix="4917"):
    ws = make_workspace()
    author = make_user(workspace=ws, role="author")
    campaign = make_campaign(ws, author, status="Sending", moderation="approved", sender=make_sender(ws, "ACME"))
    add_recipients(campaign, [f"{prefix}{i:08d}" for i in range(1, n + 1)])
    campaign.queued_count = n
    db.session.commit()
    return campaign


def fresh(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def wait_for_core_events(sim, core, n, timeout=10):
    deadline = time.time() + timeout
    while stats(sim, core)["events"] < n:
        assert time.time() < deadline, "the Core produced no reports"
        time.sleep(0.05)


def assert_counters_add_up(campaign):
    states = dict(db.session.execute(select(Recipient.state, func.count()).where(
        Recipient.campaign_id == campaign.id).group_by(Recipient.state)).all())
    assert campaign.delivered_count == states.get("delivered", 0)
    assert campaign.failed_count == states.get("failed", 0)
    assert campaign.inflight_count == states.get("sent", 0)
    assert campaign.queued_count == states.get("queued", 0) + states.get("claimed", 0)
    failed_after_sending = db.session.scalar(select(func.count()).where(
        Recipient.campaign_id == campaign.id, Recipient.state == "failed", Recipient.core_message_id.isnot(None)))
    assert campaign.sent_count == states.get("delivered", 0) + states.get("sent", 0) + failed_after_sending


def expire_backoff(campaign_id):
    db.session.execute(update(DispatchState).where(DispatchState.campaign_id == campaign_id)
                       .values(backoff_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()


# --- 1. delivery reports are never lost -----------------------------------------------------

def test_reports_arriving_before_the_submit_answer_is_recorded_are_kept_and_applied_once(core, sim):
    campaign = sending_campaign(40)
    batch_id = dispatch.claim_batch(campaign.id)
    batch = db.session.get(DispatchBatch, batch_id)
    recipients = list(db.session.scalars(select(Recipient).where(Recipient.batch_id == batch_id)
                                         .order_by(Recipient.id)))
    answer = get_client().submit_batch(batch.idempotency_key, dispatch.build_messages(campaign, recipients))
    wait_for_core_events(sim, core, 40)
    dispatch.poll_delivery_reports()  # the rows are still `claimed`: the old poller dropped these
    assert db.session.scalar(select(func.count()).select_from(PendingReport)) == 40
    assert fresh(campaign.id).delivered_count == 0

    dispatch.apply_results(batch_id, answer["results"])
    campaign = fresh(campaign.id)
    assert campaign.status == "Done" and campaign.delivered_count == 40 and campaign.inflight_count == 0
    assert db.session.scalar(select(func.count()).select_from(PendingReport)) == 0
    dispatch.poll_delivery_reports()
    dispatch.apply_results(batch_id, answer["results"])
    campaign = fresh(campaign.id)
    assert campaign.delivered_count == 40 and campaign.sent_count == 40
    assert_counters_add_up(campaign)


def test_a_batch_replayed_after_its_lease_expired_gets_every_report(core, sim):
    """The worker submitted, the Core reported, the worker died before recording: the replay after
    the lease records the answer and the kept reports finish the campaign."""
    campaign = sending_campaign(60)
    batch_id = dispatch.claim_batch(campaign.id)
    batch = db.session.get(DispatchBatch, batch_id)
    recipients = list(db.session.scalars(select(Recipient).where(Recipient.batch_id == batch_id)
                                         .order_by(Recipient.id)))
    get_client().submit_batch(batch.idempotency_key, dispatch.build_messages(campaign, recipients))
    wait_for_core_events(sim, core, 50)
    dispatch.poll_delivery_reports()
    batch.next_attempt_at = utcnow() - timedelta(seconds=1)  # the dead worker's lease ran out
    db.session.commit()

    dispatch.dispatch_campaign(campaign.id)
    wait_for_core_events(sim, core, 60)
    deadline = time.time() + 10
    while fresh(campaign.id).status != "Done" and time.time() < deadline:
        dispatch.poll_delivery_reports()
        time.sleep(0.05)
    campaign = fresh(campaign.id)
    core_stats = stats(sim, core)
    assert campaign.status == "Done" and campaign.delivered_count == 60
    assert core_stats["accepted"] == 60 and core_stats["max_per_destination"] == 1 and core_stats["replays"] == 1
    assert_counters_add_up(campaign)


def test_eight_parallel_appliers_apply_each_report_exactly_once(core, sim, app):
    campaign = sending_campaign(200)
    batch_ids = [dispatch.claim_batch(campaign.id) for _ in range(4)]
    answers = {}
    for batch_id in batch_ids:
        batch = db.session.get(DispatchBatch, batch_id)
        rows = list(db.session.scalars(select(Recipient).where(Recipient.batch_id == batch_id).order_by(Recipient.id)))
        answers[batch_id] = get_client().submit_batch(batch.idempotency_key, dispatch.build_messages(campaign, rows))
    wait_for_core_events(sim, core, 200)
    dispatch.poll_delivery_reports()
    for batch_id in batch_ids:  # recorded now; the kept reports are applied by whoever gets there
        db.session.execute(update(Recipient).where(Recipient.batch_id == batch_id).values(state="sent"))
        db.session.execute(update(DispatchBatch).where(DispatchBatch.id == batch_id).values(state="submitted"))
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
        queued_count=0, sent_count=200, inflight_count=200))
    db.session.commit()
    errors, barrier = [], threading.Barrier(8)

    def applier():
        with app.app_context():
            try:
                barrier.wait()
                dispatch.apply_pending_reports()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=applier) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    campaign = fresh(campaign.id)
    assert campaign.delivered_count == 200 and campaign.inflight_count == 0 and campaign.status == "Done"
    assert_counters_add_up(campaign)


def test_a_repeated_report_of_a_final_message_is_dropped_not_counted(core, sim):
    campaign = sending_campaign(5)
    dispatch.dispatch_campaign(campaign.id)
    wait_for_core_events(sim, core, 5)
    dispatch.poll_delivery_reports()
    assert fresh(campaign.id).delivered_count == 5
    rid = db.session.scalar(select(Recipient.id).where(Recipient.campaign_id == campaign.id).limit(1))
    dispatch.apply_events([{"id": str(rid), "status": "UNDELIV", "error_code": "001", "done_at": None},
                           {"id": "not-ours", "status": "DELIVRD"}, {"id": str(rid + 10**9), "status": "DELIVRD"}],
                          "999", dispatch.db.session.get(dispatch.SystemState, dispatch.EVENTS_CURSOR).value)
    dispatch.drop_stale_reports()
    campaign = fresh(campaign.id)
    assert campaign.delivered_count == 5 and campaign.failed_count == 0
    assert db.session.scalar(select(func.count()).select_from(PendingReport)) == 0
    # a report whose message stays claimed (campaign cancelled with the claim open) goes after 7 days
    other = db.session.scalar(select(Recipient.id).where(Recipient.campaign_id == campaign.id, Recipient.id != rid)
                              .limit(1))
    db.session.add(PendingReport(recipient_id=other, status="DELIVRD", done_at=utcnow(),
                                 received_at=utcnow() - timedelta(days=6)))
    db.session.execute(update(Recipient).where(Recipient.id == other).values(state="claimed"))
    db.session.commit()
    assert dispatch.drop_stale_reports() == 0
    assert dispatch.drop_stale_reports(now=utcnow() + timedelta(days=2)) == 1


# --- 2. back-off ------------------------------------------------------------------------------

def test_smpp_codes_are_classified_transient_or_permanent():
    for code in ("0x00000058", "0x00000014", "0x00000008", "0x58", "88", "ESME_RTHROTTLED"):
        assert smpp_codes.is_transient(code), code
    for code in ("0x00000045", "0x0000000B", "0x000000FF", "0x00000400", "0x12345678", "", None, "garbage"):
        assert not smpp_codes.is_transient(code), code
    assert smpp_codes.in_words("0x00000045") == "ESME_RSUBMITFAIL"


def test_per_message_throttling_backs_off_instead_of_claiming_everything(core, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BACKOFF_BASE_SECONDS", 30)
    campaign = sending_campaign(500)
    faults(sim, core, reject_code="0x00000058")
    dispatch.dispatch_campaign(campaign.id)
    dispatch.dispatch_campaign(campaign.id)  # a second worker / the next tick: still backing off
    core_stats = stats(sim, core)
    assert core_stats["batches"] == 1 and core_stats["submitted"] == 50  # old code: all 500, again and again
    state = db.session.get(DispatchState, campaign.id)
    assert state.backoff_until > utcnow() + timedelta(seconds=14) and state.trouble_code == "0x00000058"
    assert "ESME_RTHROTTLED" in state.trouble
    assert dispatch.campaigns_with_work() == []
    waiting = db.session.scalars(select(Recipient).where(Recipient.attempts == 1)).all()
    assert len(waiting) == 50 and all(r.state == "queued" and r.retry_at > utcnow() for r in waiting)
    notice = dispatch.notice(fresh(campaign.id))
    assert notice["kind"] == "backing_off" and "ESME_RTHROTTLED" in notice["reason"]

    faults(sim, core, reject_code=None)
    expire_backoff(campaign.id)
    dispatch.dispatch_campaign(campaign.id)  # fresh recipients go first; the refused 50 wait for retry_at
    campaign = fresh(campaign.id)
    assert campaign.sent_count == 450 and campaign.queued_count == 50
    assert dispatch.notice(campaign) is None and db.session.get(DispatchState, campaign.id).backoff_step == 0
    db.session.execute(update(Recipient).values(retry_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    dispatch.dispatch_campaign(campaign.id)
    assert fresh(campaign.id).sent_count == 500 and stats(sim, core)["max_submissions_per_destination"] == 2


def test_backoff_is_exponential_with_jitter_capped_and_honours_retry_after(app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BACKOFF_BASE_SECONDS", 2)
    monkeypatch.setitem(app.config, "DISPATCH_BACKOFF_MAX_SECONDS", 60)
    for step, ceiling in ((0, 2), (1, 4), (3, 16), (10, 60), (500, 60)):
        delays = {round(dispatch.backoff_delay(step), 6) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1, (step, delays)
    assert dispatch.backoff_delay(0, retry_after=120) == 120


def test_http_429_backs_off_for_at_least_retry_after(core, sim):
    campaign = sending_campaign(20)
    faults(sim, core, throttle=7)
    assert dispatch.dispatch_campaign(campaign.id) == 0
    state = db.session.get(DispatchState, campaign.id)
    assert state.backoff_until >= utcnow() + timedelta(seconds=6) and state.trouble_code == "http_429"
    batch = db.session.scalars(select(DispatchBatch)).one()
    assert batch.state == "claimed" and batch.next_attempt_at >= utcnow() + timedelta(seconds=6)
    assert stats(sim, core)["accepted"] == 0


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_batch_level_4xx_is_a_job_error_and_fails_the_campaign_after_max_refusals(core, sim, status):
    campaign = sending_campaign(120)
    faults(sim, core, refuse_status=status)
    for attempt in range(3):
        assert fresh(campaign.id).status == "Sending"
        dispatch.dispatch_campaign(campaign.id)
        expire_backoff(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.status == "Failed"
    assert f"HTTP {status}" in campaign.failure_reason and "3 batches in a row" in campaign.failure_reason
    errors = db.session.scalars(select(JobError).where(JobError.campaign_id == campaign.id)).all()
    assert len(errors) == 3
    assert all(f"HTTP {status}" in e.reason and "request id" in e.reason and "simulated" in e.reason for e in errors)
    assert stats(sim, core)["refused_batches"] == 3 and stats(sim, core)["accepted"] == 0
    assert campaign.queued_count == 120 and db.session.scalar(select(func.count()).where(
        Recipient.state == "claimed")) == 0  # nothing left claimed, nothing counted as sent
    assert dispatch.notice(campaign)["kind"] == "failed"


def test_a_refusal_between_good_batches_does_not_fail_the_campaign(core, sim):
    campaign = sending_campaign(100)
    faults(sim, core, refuse_status=400)
    dispatch.dispatch_campaign(campaign.id)
    dispatch.dispatch_campaign(campaign.id)  # backing off: not a second refusal
    faults(sim, core, refuse_status=None)
    expire_backoff(campaign.id)
    dispatch.dispatch_campaign(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.status in ("Sending", "Done") and campaign.sent_count == 100
    assert db.session.get(DispatchState, campaign.id).refusals == 0
    assert db.session.scalar(select(func.count()).select_from(JobError)) == 1


# --- 3. circuit breaker and giving up ------------------------------------------------------

def test_blanket_rejection_trips_the_breaker_with_the_code_in_words_and_resume_continues(core, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BREAKER_REJECTIONS", 100)
    campaign = sending_campaign(400)
    faults(sim, core, reject_code="0x00000045")
    dispatch.dispatch_campaign(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.status == "Paused"  # the old code used up every recipient and ended Done
    assert campaign.pause_reason.startswith("ESME_RSUBMITFAIL for the last 100 messages")
    assert campaign.failed_count == 100 and stats(sim, core)["submitted"] == 100
    notice = dispatch.notice(campaign)
    assert notice["kind"] == "system_paused" and notice["since"] is not None
    assert db.session.scalar(select(func.count()).select_from(MessageError)) == 100

    faults(sim, core, reject_code=None)
    owner = campaign.author
    lifecycle.perform(campaign.workspace, campaign.id, "resume", owner.membership_in(campaign.workspace_id), owner)
    assert fresh(campaign.id).pause_reason is None
    dispatch.dispatch_campaign(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.sent_count == 300 and campaign.queued_count == 0


def test_scattered_rejections_do_not_trip_the_breaker(core, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BREAKER_REJECTIONS", 20)
    campaign = sending_campaign(300)
    faults(sim, core, reject_code="0x0000000B", reject_ratio=0.5)
    dispatch.dispatch_campaign(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.status == "Sending" and campaign.queued_count == 0
    assert 0 < campaign.failed_count < 300 and campaign.failed_count + campaign.sent_count == 300


def test_transient_trouble_lasting_the_give_up_time_pauses_with_a_reason(core, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_GIVE_UP_MINUTES", 0.01)  # 0.6 s
    campaign = sending_campaign(30)
    faults(sim, core, reject_code="0x00000014")
    dispatch.dispatch_campaign(campaign.id)
    assert fresh(campaign.id).status == "Sending"
    time.sleep(0.7)
    expire_backoff(campaign.id)
    db.session.execute(update(Recipient).values(retry_at=None))
    db.session.commit()
    dispatch.dispatch_campaign(campaign.id)
    campaign = fresh(campaign.id)
    assert campaign.status == "Paused"
    assert "ESME_RMSGQFUL" in campaign.pause_reason and "nothing accepted for 0.01 minutes" in campaign.pause_reason


# --- 4. Core outage: logged once, no claims -------------------------------------------------

def test_core_outage_logs_one_down_and_one_up_line_and_claims_nothing(core, sim, caplog):
    campaign = sending_campaign(30)
    faults(sim, core, down=True)
    caplog.set_level(logging.INFO)
    for _ in range(5):
        dispatch.poll_delivery_reports()  # no traceback, no exception per poll
    assert core_outage.current() is not None
    assert dispatch.campaigns_with_work() == []
    assert dispatch.dispatch_campaign(campaign.id) == 0
    assert db.session.scalar(select(func.count()).select_from(DispatchBatch)) == 0  # no batch claimed
    notice = dispatch.notice(fresh(campaign.id))
    assert notice["kind"] == "core_down" and "503" in notice["reason"]
    faults(sim, core, down=False)
    for _ in range(3):
        dispatch.poll_delivery_reports()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("[core-down]" in line for line in lines) == 1
    assert sum("[core-up]" in line for line in lines) == 1
    assert not any(r.exc_info for r in caplog.records)
    assert core_outage.current() is None and dispatch.campaigns_with_work() == [campaign.id]


def test_an_outage_is_recorded_once_by_thirty_parallel_processes(app):
    results, barrier = [], threading.Barrier(30)

    def report():
        with app.app_context():
            barrier.wait()
            results.append(core_outage.mark_down("connection refused"))
            db.session.remove()

    threads = [threading.Thread(target=report) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1 and len(results) == 30
    ended, barrier = [], threading.Barrier(30)

    def recover():
        with app.app_context():
            barrier.wait()
            ended.append(core_outage.mark_up())
            db.session.remove()

    threads = [threading.Thread(target=recover) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ended.count(True) == 1


# --- 7. the reference Core's fault switches ------------------------------------------------

@pytest.mark.parametrize("bad", [{"refuse_status": 200}, {"refuse_status": "abc"}, {"reject_ratio": 2},
                                 {"reject_ratio": "x"}, {"reject_code": "nonsense"}, {"nope": 1}])
def test_coresim_refuses_bad_fault_switches_with_a_400(core, sim, bad):
    response = sim.post(core.url + "/_sim/faults", json=bad)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    assert stats(sim, core)["faults"]["refuse_status"] is None


def test_coresim_refuse_status_answers_every_batch_with_its_error_body(core, sim):
    faults(sim, core, refuse_status=503)
    response = sim.post(core.url + "/v1/batches", headers={"Idempotency-Key": "k1"}, json={"messages": []})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json() == {"error": {"code": "unavailable", "message": "batch refused with HTTP 503 (simulated)"}}
    faults(sim, core, refuse_status=422)
    response = sim.post(core.url + "/v1/batches", headers={"Idempotency-Key": "k1"}, json={"messages": []})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unprocessable"
    assert sim.get(core.url + "/v1/health").status_code == 200  # only batches are refused


# --- 4. what the operator sees: banner and campaign JSON -------------------------------------

def _page(client, campaign):
    return client.get(f"/w/{campaign.workspace.slug}/campaigns/{campaign.id}").get_data(as_text=True)


def test_campaign_page_banner_and_json_show_system_pause_backoff_outage_and_failure(core, sim, app, client,
                                                                                    monkeypatch):
    from services import tokens

    monkeypatch.setitem(app.config, "DISPATCH_BREAKER_REJECTIONS", 50)
    campaign = sending_campaign(300)
    owner = campaign.author
    client.login(owner.email)
    headers = {"Authorization": f"Bearer {tokens.create_token(owner, campaign.workspace, 'faults')[1]}"}
    assert "dispatch-notice" not in _page(client, campaign)
    assert client.get(f"/api/v1/campaigns/{campaign.id}", headers=headers).get_json()["pause_reason"] is None

    faults(sim, core, down=True)  # blocked by a Core outage
    dispatch.poll_delivery_reports()
    html = _page(client, campaign)
    assert "Blocked by an SMS Core outage since" in html and "simulated" in html
    faults(sim, core, down=False)
    dispatch.poll_delivery_reports()

    faults(sim, core, reject_code="0x00000058")  # backing off
    dispatch.dispatch_campaign(campaign.id)
    html = _page(client, campaign)
    assert "Backing off since" in html and "ESME_RTHROTTLED" in html and "Next attempt at" in html

    faults(sim, core, reject_code="0x00000045")  # the breaker pauses it
    expire_backoff(campaign.id)
    dispatch.dispatch_campaign(campaign.id)
    html = _page(client, campaign)
    assert "Paused by the system since" in html and "ESME_RSUBMITFAIL for the last 50 messages" in html
    body = client.get(f"/api/v1/campaigns/{campaign.id}", headers=headers).get_json()
    assert body["status"] == "Paused" and body["pause_reason"].startswith("ESME_RSUBMITFAIL for the last 50")
    assert body["failure_reason"] is None
    listed = client.get("/api/v1/campaigns", headers=headers).get_json()["campaigns"][0]
    assert listed["pause_reason"] == body["pause_reason"]

    faults(sim, core, reject_code=None, refuse_status=403)  # Resume, then refusals fail it
    assert client.post(f"/api/v1/campaigns/{campaign.id}/resume", headers=headers).status_code == 200
    for _ in range(3):
        expire_backoff(campaign.id)
        dispatch.dispatch_campaign(campaign.id)
    body = client.get(f"/api/v1/campaigns/{campaign.id}", headers=headers).get_json()
    assert body["status"] == "Failed" and "HTTP 403" in body["failure_reason"] and body["pause_reason"] is None
    html = _page(client, campaign)
    banner = html.split("dispatch-notice")[1][:2000]
    assert "Failed" in banner and "3 batches in a row" in banner and "<script>" not in banner


def test_when_the_core_answers_again_campaigns_waiting_for_it_resume_at_once(core, sim, app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BACKOFF_BASE_SECONDS", 60)
    campaign = sending_campaign(120)
    faults(sim, core, down=True)
    dispatch.dispatch_campaign(campaign.id)  # the first claim fails: a back-off of 30-60 s
    state = db.session.get(DispatchState, campaign.id)
    assert state.trouble_code == "core_down" and state.backoff_until > utcnow() + timedelta(seconds=25)
    faults(sim, core, down=False)
    dispatch.poll_delivery_reports()  # the poll sees the Core answer again
    assert core_outage.current() is None
    assert dispatch.campaigns_with_work() == [campaign.id]
    dispatch.dispatch_campaign(campaign.id)
    assert fresh(campaign.id).sent_count == 120 and stats(sim, core)["max_per_destination"] == 1
