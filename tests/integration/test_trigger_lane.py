"""Issue 18: the Trigger lane. OTP pushes go to their own queue (coalesced), the tick routes Trigger
campaigns through it (and through the bulk workers only while the lane has no live worker), and
push -> Core latency shows on the Live Pulse, /metrics and Diagnostics — against the reference
Core over real mTLS and real Redis. The real-process drills (a long bulk job occupying the bulk
worker, a SIGKILLed lane worker, a Core outage) are in test_dispatch_workers.py."""
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import SimpleWorker, Worker
from sqlalchemy import select

from coresim.testing import sim_session, start_core
from extensions import db, redis_connection
from jobs import get_queue
from jobs.dispatch import dispatch_tick
from models import Campaign, Recipient
from services import diagnostics, tokens, trigger_lane
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_core(str(tmp_path_factory.mktemp("lane-core")), latency_seconds=0.05, failure_ratio=0.0)
    yield server
    server.stop()


@pytest.fixture
def sim(core, app, monkeypatch):
    session = sim_session(core.certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, f"{core.certs_dir}/{name}")
    monkeypatch.setitem(app.config, "CORE_URL", core.url)
    redis = redis_connection()
    redis.delete(diagnostics.CORE_CACHE_KEY)
    for pattern in ("mc:trigger:*", "mc:dispatch:*", "mc:pulse:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)
    redis.delete("rq:queue:dispatch", "rq:queue:trigger")
    yield session
    session.post(core.url + "/_sim/reset").raise_for_status()
    session.close()


@pytest.fixture
def otp(sim):
    ws = make_workspace("otp")
    admin = make_user("admin@otp.test", workspace=ws, role="admin")
    campaign = make_campaign(ws, admin, mode="Trigger", status="Sending", moderation="approved",
                             sender=make_sender(ws), ignore_daily_window=True)
    _, token = tokens.create_token(admin, ws, "otp service")
    return campaign, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def lane_worker():
    """A registered worker on the lane's queue (heartbeat now), as `rq worker … trigger` would be."""
    worker = Worker([get_queue("trigger")], connection=redis_connection())
    worker.register_birth()
    worker.heartbeat()
    yield worker
    worker.register_death()


def push(client, campaign, headers, numbers):
    response = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": numbers},
                           headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def run_lane():
    SimpleWorker([get_queue("trigger")], connection=redis_connection()).work(burst=True)


def queued_jobs(queue):
    return [job.func_name for job in get_queue(queue).get_jobs()]


def test_pushes_coalesce_into_one_lane_job_that_sends_each_number_once(client, sim, core, otp):
    campaign, headers = otp
    for n in range(3):
        assert push(client, campaign, headers, [f"49170000000{n}"])["accepted"] == 1
    assert queued_jobs("trigger") == ["jobs.trigger.dispatch_trigger"]  # one waiting turn claims all three
    assert queued_jobs("dispatch") == []  # never behind bulk work
    run_lane()
    stats = sim.get(core.url + "/_sim/stats").json()
    assert stats["accepted"] == 3 and stats["max_per_destination"] == 1
    assert set(db.session.scalars(select(Recipient.state))) == {"sent"}
    # the turn has started: the next push queues the next turn
    push(client, campaign, headers, ["491700000009"])
    assert queued_jobs("trigger") == ["jobs.trigger.dispatch_trigger"]
    run_lane()
    assert sim.get(core.url + "/_sim/stats").json()["accepted"] == 4


def test_push_to_core_latency_on_the_live_pulse_and_metrics(client, sim, otp):
    campaign, headers = otp
    push(client, campaign, headers, ["491700000001", "491700000002"])
    run_lane()
    client.login("admin@otp.test")
    pulse = client.get("/w/otp/pulse.json").json["trigger_latency"]
    assert pulse["count"] == 2
    assert 0 < pulse["p50_ms"] <= pulse["p95_ms"] < 10_000
    assert "OTP push → Core" in client.get("/w/otp/").get_data(as_text=True)

    text = client.get("/metrics").get_data(as_text=True)
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for family in text_string_to_metric_families(text) for s in family.samples}
    assert found[("mc_trigger_accepted_last_minute", (("workspace", "otp"),))] == 2
    assert found[("mc_trigger_latency_p95_seconds", (("workspace", "otp"),))] == pytest.approx(pulse["p95_ms"] / 1000)
    assert found[("mc_trigger_lane_workers", ())] == 0
    assert found[("mc_scrape_errors", (("part", "trigger"),))] == 0

    # a number accepted without a recorded push time (pushed before an upgrade) is no sample
    assert trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [999_999]) == 0
    # other workspaces see nothing of it
    other = make_workspace("quiet")
    assert trigger_lane.latency_last_minute([other.id]) == {"count": 0, "p50_ms": None, "p95_ms": None}


def test_quantiles_over_the_last_minute_only(sim, otp):
    campaign, _ = otp
    now = 1_000_000.0
    trigger_lane.note_pushed(campaign.id, [1, 2, 3, 4], now - 200)
    trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [1, 2, 3, 4], accepted_at=now - 100)  # too old
    trigger_lane.note_pushed(campaign.id, list(range(10, 30)), now - 1)
    trigger_lane.record_accepted(campaign.workspace_id, campaign.id, list(range(10, 29)), accepted_at=now - 0.9)
    trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [29], accepted_at=now)  # 1,000 ms
    assert trigger_lane.latency_last_minute([campaign.workspace_id], now=now) == {"count": 20, "p50_ms": 100,
                                                                                  "p95_ms": 100}
    trigger_lane.note_pushed(campaign.id, [40], now)
    trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [40], accepted_at=now + 5)  # 5,000 ms
    assert trigger_lane.latency_last_minute([campaign.workspace_id], now=now + 5) == {"count": 21, "p50_ms": 100,
                                                                                      "p95_ms": 1000}
    # a sample is taken once: the push time is forgotten when the number is accepted
    assert trigger_lane.record_accepted(campaign.workspace_id, campaign.id, [40], accepted_at=now + 6) == 0


def test_tick_routes_trigger_campaigns_through_the_lane(sim, otp):
    campaign, _ = otp
    ws = make_workspace("bulk")
    bulk = make_campaign(ws, make_user(workspace=ws), status="Sending", moderation="approved",
                         sender=make_sender(ws), recipients=5)
    for c, n in ((campaign, 2), (bulk, 5)):
        if c is campaign:
            add_recipients(campaign, ["491700000001", "491700000002"])
        c.queued_count = n
    db.session.commit()

    # no live worker serves the lane: the Trigger campaign goes through the bulk workers as well
    dispatch_tick()
    assert queued_jobs("trigger") == ["jobs.trigger.dispatch_trigger"]
    assert sorted(job.args[0] for job in get_queue("dispatch").get_jobs()) == sorted([campaign.id] * 2 + [bulk.id] * 2)


def test_tick_with_a_live_lane_worker_keeps_otps_off_the_bulk_queue(sim, otp, lane_worker):
    campaign, _ = otp
    add_recipients(campaign, ["491700000001"])
    campaign.queued_count = 1
    db.session.commit()
    dispatch_tick()
    dispatch_tick()  # coalesced: still one waiting turn
    assert queued_jobs("trigger") == ["jobs.trigger.dispatch_trigger"]
    assert queued_jobs("dispatch") == []
    run_lane()
    assert db.session.scalar(select(Campaign.sent_count).where(Campaign.id == campaign.id)) == 1


def test_diagnostics_warn_when_the_lane_has_no_live_worker(client, sim, otp):
    make_user("root@example.com", superadmin=True)
    assert diagnostics.workspace_report(otp[0].workspace_id)["trigger_lane"]["ok"] is False
    client.login("admin@otp.test")
    html = client.get("/w/otp/diagnostics").get_data(as_text=True)
    assert "Trigger lane (OTPs)" in html and "No live worker serves the Trigger lane" in html
    assert "worker-trigger" in html
    # a workspace without a Trigger campaign is not bothered with it
    quiet = make_workspace("quiet")
    assert diagnostics.workspace_report(quiet.id)["trigger_lane"] is None

    root = client.application.test_client()
    root.login("root@example.com")
    html = root.get("/admin/diagnostics").get_data(as_text=True)
    assert "No live worker serves the Trigger lane" in html
    queues = {q["queue"]: q for q in diagnostics.queue_status()["queues"]}
    assert "trigger" in queues and "trigger" in diagnostics.worker_status()["uncovered"]


def test_diagnostics_pass_with_a_live_lane_worker(client, sim, otp, lane_worker):
    report = diagnostics.workspace_report(otp[0].workspace_id)["trigger_lane"]
    assert report["ok"] is True
    client.login("admin@otp.test")
    html = client.get("/w/otp/diagnostics").get_data(as_text=True)
    assert "No live worker serves the Trigger lane" not in html and "served" in html
    assert trigger_lane.lane_workers() == 1


def test_paused_trigger_campaign_is_not_accepting_and_queues_nothing(client, sim, otp):
    campaign, headers = otp
    campaign.status = "Paused"
    db.session.commit()
    response = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": ["491700000001"]},
                           headers=headers)
    assert response.status_code == 409 and response.json["error"]["code"] == "not_accepting"
    assert queued_jobs("trigger") == [] and not list(redis_connection().scan_iter("mc:trigger:*"))


def test_a_lane_job_for_a_deleted_campaign_does_nothing(sim, otp):
    from jobs.trigger import dispatch_trigger

    campaign, _ = otp
    assert trigger_lane.schedule(campaign.id)
    db.session.delete(campaign)
    db.session.commit()
    assert dispatch_trigger(campaign.id) == 0
    assert trigger_lane.schedule(campaign.id + 1000)  # its turn was taken: nothing stays pending


def test_a_turn_that_drains_the_queue_claims_once_and_a_full_batch_claims_again(app, sim, otp, monkeypatch):
    """The lane's cost per OTP: a turn whose claim found fewer numbers than it could take stops there
    (an empty second claim would cost a round of locks and statements per push); a full batch is
    followed by another claim, so a long list still drains in one turn."""
    from sqlalchemy import event

    from services import dispatch

    campaign, _ = otp
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 2)
    claims = []

    def count_claims(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO dispatch_batches"):
            claims.append(statement)

    event.listen(db.engine, "before_cursor_execute", count_claims)
    try:
        add_recipients(campaign, ["491700000001"])
        assert dispatch.dispatch_campaign(campaign.id) == 1
        assert len(claims) == 1
        claims.clear()
        add_recipients(campaign, ["491700000002", "491700000003", "491700000004", "491700000005"])
        assert dispatch.dispatch_campaign(campaign.id) == 2
        assert len(claims) == 3   # two full batches, then one claim that finds nothing
    finally:
        event.remove(db.engine, "before_cursor_execute", count_claims)
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).sent_count == 5
