"""Workspace quotas (issue 22): the daily quota across all campaigns of a workspace, counted per day
in the workspace time zone (controlled clock), under 30 parallel claimers, against the reference
Core; the per-campaign recipient quota at upload; the API and the page that set them."""
import io
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from coresim.testing import sim_session, start_core
from extensions import db
from models import Campaign, DailySent, JobError, Recipient, Workspace
from services import dispatch, quotas, recipients, tokens
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


def sending(ws, n, start=1):
    author = make_user(workspace=ws, role="author")
    campaign = make_campaign(ws, author, status="Sending", moderation="approved", sender=make_sender(ws, "ACME"))
    add_recipients(campaign, [f"4917{i:08d}" for i in range(start, start + n)])
    campaign.queued_count = n
    db.session.commit()
    return campaign


def claimed(campaign_id):
    return db.session.scalar(select(func.count(Recipient.id)).where(
        Recipient.campaign_id == campaign_id, Recipient.state == "claimed")) or 0


def set_daily(ws, n):
    quotas.set_quota(ws.slug, daily_messages=n, max_recipients_per_campaign=None)


# --- the daily quota, controlled clock ------------------------------------------------------------

def test_daily_quota_holds_across_two_campaigns_and_resumes_the_next_local_day(app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 30)
    ws = make_workspace(timezone="Pacific/Auckland")  # UTC+13 in November: the local day starts at 11:00 UTC
    a, b = sending(ws, 100), sending(ws, 100, start=1000)
    set_daily(ws, 70)
    evening = datetime(2026, 11, 28, 10, 30, tzinfo=UTC)  # 23:30 on the 28th in Auckland
    got = []
    for _ in range(10):  # alternate the two campaigns until neither gets anything
        for campaign in (a, b):
            got.append(dispatch.claim_batch(campaign.id, now=evening))
    assert claimed(a.id) + claimed(b.id) == 70, "the quota is for the workspace, not per campaign"
    assert claimed(a.id) > 0 and claimed(b.id) > 0
    assert quotas.today(db.session.get(Workspace, ws.id), evening)["left_today"] == 0

    # The campaign page says why it waits, and until when (local midnight).
    campaign = db.session.get(Campaign, a.id)
    notice = dispatch.notice(campaign, now=evening)
    assert notice["kind"] == "quota_reached" and "70 messages" in notice["reason"]
    assert notice["until"] == datetime(2026, 11, 28, 11, 0, tzinfo=UTC)

    # 30 minutes later it is the 29th in Auckland: a new day, a new quota.
    next_day = evening + timedelta(hours=1)
    for _ in range(10):
        for campaign in (a, b):
            dispatch.claim_batch(campaign.id, now=next_day)
    assert claimed(a.id) + claimed(b.id) == 140
    days = dict(db.session.execute(select(DailySent.day, func.sum(DailySent.sent)).join(
        Campaign, Campaign.id == DailySent.campaign_id).where(Campaign.workspace_id == ws.id)
        .group_by(DailySent.day)).all())
    assert {str(d): int(n) for d, n in days.items()} == {"2026-11-28": 70, "2026-11-29": 70}


def test_other_workspaces_and_removing_the_quota(app, monkeypatch):
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 50)
    limited, free = make_workspace(), make_workspace()
    a, other = sending(limited, 60), sending(free, 60)
    set_daily(limited, 10)
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    dispatch.claim_batch(a.id, now=now)
    dispatch.claim_batch(other.id, now=now)
    assert (claimed(a.id), claimed(other.id)) == (10, 50)
    assert dispatch.claim_batch(a.id, now=now) is None
    set_daily(limited, None)
    dispatch.claim_batch(a.id, now=now)
    assert claimed(a.id) == 60


def test_a_quota_of_zero_sends_nothing(app):
    ws = make_workspace()
    a = sending(ws, 5)
    set_daily(ws, 0)
    assert dispatch.claim_batch(a.id) is None and claimed(a.id) == 0


def test_thirty_parallel_claimers_never_exceed_the_daily_quota(app, monkeypatch):
    """30 dispatch jobs at once (threads, each with its own app context and connection) on three
    campaigns of one workspace: the sum claimed is exactly the quota, never more."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite has one writer at a time); run with DATABASE_URL")
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 7)
    ws = make_workspace()
    campaigns = [sending(ws, 200, start=1 + 1000 * i).id for i in range(3)]
    set_daily(ws, 250)
    barrier, errors = threading.Barrier(30), []

    def job(n):
        with app.app_context():
            try:
                barrier.wait()
                for _ in range(40):
                    dispatch.claim_batch(campaigns[n % 3])
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=job, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    db.session.expire_all()
    assert sum(claimed(c) for c in campaigns) == 250
    assert quotas.used_on(ws.id, quotas.local_day(db.session.get(Workspace, ws.id))) == 250


# --- against the reference Core -------------------------------------------------------------------

@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_core(str(tmp_path_factory.mktemp("quota-core")), latency_seconds=0.01, failure_ratio=0.0)
    yield server
    server.stop()


@pytest.fixture
def sim(core, app, monkeypatch):
    session = sim_session(core.certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, f"{core.certs_dir}/{name}")
    monkeypatch.setitem(app.config, "CORE_URL", core.url)
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 40)
    yield session
    session.close()


def test_the_core_receives_no_more_than_the_quota(core, sim, client):
    ws = make_workspace()
    a, b = sending(ws, 100), sending(ws, 100, start=1000)
    set_daily(ws, 90)
    for campaign in (a, b, a, b):
        dispatch.dispatch_campaign(campaign.id, time_budget=5)
    assert sim.get(core.url + "/_sim/stats").json()["accepted"] == 90
    for campaign in (a, b):
        db.session.refresh(campaign)
        assert campaign.status == "Sending"  # waiting for tomorrow, not finished or failed
    assert db.session.get(Campaign, a.id).queued_count + db.session.get(Campaign, b.id).queued_count == 110

    # The author sees why the campaign waits; the overview shows today's use against the quota.
    author = db.session.get(Campaign, a.id).author
    client.login(author.email)
    page = client.get(f"/w/{ws.slug}/campaigns/{a.id}").get_data(as_text=True)
    assert "daily quota is used up" in page and "90 messages" in page
    overview = client.get(f"/w/{ws.slug}/").get_data(as_text=True)
    assert "<strong>90</strong> of 90 messages sent today" in overview and "used up" in overview


# --- max_recipients_per_campaign at upload --------------------------------------------------------

def upload(campaign, body, app, chunk_lines=None, monkeypatch=None):
    if chunk_lines:
        monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", chunk_lines)
    path, size = recipients.spool_stream(io.BytesIO(body), 10 ** 7)
    row = recipients.start_upload(db.session.get(Campaign, campaign.id), spool_path=path, size=size, source="cli")
    return recipients.ingest(row.id)


def test_an_upload_beyond_max_recipients_fails_and_stores_nothing(app, monkeypatch):
    ws = make_workspace()
    quotas.set_quota(ws.slug, daily_messages=None, max_recipients_per_campaign=100)
    campaign = make_campaign(ws, make_user(workspace=ws))
    first = upload(campaign, b"".join(b"4917%08d\n" % i for i in range(60)), app)
    assert first.state == "done" and db.session.get(Campaign, campaign.id).recipients_count == 60
    # 60 more (in chunks of 25: the first chunk fits, the second does not) would make 120.
    second = upload(campaign, b"".join(b"4917%08d\n" % i for i in range(100, 160)), app, 25, monkeypatch)
    assert second.state == "failed" and "max_recipients_per_campaign of 100" in second.error
    campaign = db.session.get(Campaign, campaign.id)
    assert campaign.recipients_count == 60 and campaign.queued_count == 60  # nothing of the second upload
    assert db.session.scalar(select(func.count(Recipient.id)).where(Recipient.upload_id == second.id)) == 0
    errors = list(db.session.scalars(select(JobError.reason).where(JobError.upload_id == second.id)))
    assert len(errors) == 1 and "max_recipients_per_campaign" in errors[0]
    # Duplicates and stop-listed numbers do not count: 40 new + 60 already there = exactly 100.
    third = upload(campaign, b"".join(b"4917%08d\n" % i for i in range(0, 100)), app)
    assert third.state == "done" and db.session.get(Campaign, campaign.id).recipients_count == 100


# --- setting quotas: API and page -----------------------------------------------------------------

def make_token(user, ws):
    return tokens.create_token(user, ws, "quota test")[1]


@pytest.fixture
def root_token():
    root = make_user("root@example.com", superadmin=True)
    return make_token(root, db.session.scalar(select(Workspace).filter_by(slug="master")))


def put(client, token, slug, body):
    return client.put(f"/api/v1/admin/workspaces/{slug}/quota", json=body,
                      headers={"Authorization": f"Bearer {token}"})


def test_api_sets_quotas_and_refuses_bad_input_changing_nothing(client, root_token, audit_events):
    ws = make_workspace("acme")
    ok = put(client, root_token, "acme", {"daily_messages": 1000, "max_recipients_per_campaign": None})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert ok.json == {"workspace": "acme", "daily_messages": 1000, "max_recipients_per_campaign": None,
                       "used_today": 0, "left_today": 1000}
    event = audit_events(action="workspace.quota_changed")[0]
    assert event["before"]["daily_messages"] is None and event["after"]["daily_messages"] == 1000
    for body in ({"daily_messages": -1, "max_recipients_per_campaign": None},
                 {"daily_messages": "5", "max_recipients_per_campaign": None},
                 {"daily_messages": True, "max_recipients_per_campaign": None},
                 {"daily_messages": 1.5, "max_recipients_per_campaign": None},
                 {"daily_messages": 10 ** 30, "max_recipients_per_campaign": None},
                 {"daily_messages": 5},
                 {"daily_messages": 5, "max_recipients_per_campaign": 5, "extra": 1},
                 [], "x"):
        bad = put(client, root_token, "acme", body)
        assert bad.status_code == 400, (body, bad.status_code)
        assert bad.json["error"]["code"] in ("invalid_quota", "invalid_fields", "invalid_json"), bad.json
    missing = put(client, root_token, "nope", {"daily_messages": 1, "max_recipients_per_campaign": 1})
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"
    db.session.expire_all()
    assert db.session.get(Workspace, ws.id).quota_daily_messages == 1000
    assert len(audit_events(action="workspace.quota_changed")) == 1


def test_api_refuses_a_workspace_admins_token(client):
    ws = make_workspace("acme")
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    refused = put(client, make_token(admin, ws), "acme", {"daily_messages": 1, "max_recipients_per_campaign": 1})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert db.session.get(Workspace, ws.id).quota_daily_messages is None


def test_page_sets_quotas_for_super_admins_only(client):
    ws = make_workspace("acme")
    make_user("root@example.com", superadmin=True)
    make_user("admin@example.com", workspace=ws, role="admin")
    client.login("admin@example.com")
    page = client.get("/w/acme/settings").get_data(as_text=True)
    assert "Quotas are set by the installation" in page and "Save quotas" not in page
    assert client.post("/admin/workspaces/acme/quota", data={"daily_messages": "5"}).status_code == 404
    client.post("/logout")
    client.login("root@example.com")
    assert "Save quotas" in client.get("/w/acme/settings").get_data(as_text=True)
    bad = client.post("/admin/workspaces/acme/quota", data={"daily_messages": "-3"}, follow_redirects=True)
    assert "cannot be negative" in bad.get_data(as_text=True)
    bad = client.post("/admin/workspaces/acme/quota", data={"daily_messages": "ten"}, follow_redirects=True)
    assert "must be a whole number" in bad.get_data(as_text=True)
    assert db.session.get(Workspace, ws.id).quota_daily_messages is None
    client.post("/admin/workspaces/acme/quota", data={"daily_messages": "1,000", "max_recipients_per_campaign": ""})
    db.session.expire_all()
    assert db.session.get(Workspace, ws.id).quota_daily_messages == 1000
    assert db.session.get(Workspace, ws.id).quota_max_recipients is None
    assert client.post("/admin/workspaces/nope/quota", data={"daily_messages": "5"}).status_code == 404
