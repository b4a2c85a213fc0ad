"""An approval binds what was approved: the fingerprint taken on approval (services/approval.py)
is checked by every dispatch job run; a campaign changed behind the product's back — the text, the
SMPP fields, the sender, the limits, the recipients, edited straight in the database — is refused
with a Job error and Failed, and nothing of it reaches the Core (coresim over real mutual TLS, real
RQ workers on real Redis). Also: what the moderation row shows, and that the product itself offers
no way to change an approved campaign."""
import hashlib
import html
import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import text

from coresim.testing import stats
from extensions import db, redis_connection
from models import Campaign, Upload, utcnow
from models.campaigns import JobError
from services import accounts, approval, tokens
from services import campaigns as lifecycle
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

LIST = b"number\n491700000001\n491700000002\n491700000003\nnot a number\n491700000003\n"


CORE_LATENCY_SECONDS = 0.01  # the shared `core` fixture (tests/conftest.py)


@pytest.fixture
def sim(sim):
    """The shared simulator session (tests/conftest.py), with no job or dispatch slot left in Redis."""
    for name in ("uploads", "dispatch"):
        Queue(name, connection=redis_connection()).empty()
    for key in redis_connection().scan_iter("mc:dispatch:*"):
        redis_connection().delete(key)
    return sim


def accepted_by_core(sim, core):
    return stats(sim, core)["accepted"]


@pytest.fixture
def acme():
    ws = make_workspace("acme", timezone="Europe/Berlin", sending_window="00:00-24:00")
    make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod@acme.test", workspace=ws, role="moderator")
    return ws


def user(email):
    return accounts.find_user(email)


def bearer(email, ws):
    return {"Authorization": f"Bearer {tokens.create_token(user(email), ws, 'test')[1]}"}


def run(queue_name):
    queue = Queue(queue_name, connection=redis_connection())
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    db.session.expire_all()


def dispatch_now(campaign_id):
    """What the tick does for a Sending campaign: enqueue its dispatch job(s); a real worker runs them."""
    from jobs.dispatch import schedule_campaign

    for key in redis_connection().scan_iter(f"mc:dispatch:{campaign_id}:*"):
        redis_connection().delete(key)
    schedule_campaign(campaign_id)
    run("dispatch")


def stored(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def approved_campaign(app, acme, approve_via="web", mode="OnDemand"):
    """The real path: the author uploads a list (browser raw body, ingest on a worker) and submits;
    a moderator approves on the page or through the API. OnDemand starts Sending at once."""
    author = user("author@acme.test")
    campaign = make_campaign(acme, author, mode=mode, sender=make_sender(acme, "ACME"), status="New")
    client = app.test_client()
    client.login("author@acme.test")
    if mode != "Trigger":
        response = client.post(f"/w/acme/campaigns/{campaign.id}/recipients", data=LIST,
                               headers={"X-Filename": "list.csv", "Accept": "application/json",
                                        "X-CSRFToken": client.csrf_token}, content_type="text/csv")
        assert response.status_code in (200, 202), response.get_data(as_text=True)
        run("uploads")
    assert "Submitted" in html.unescape(client.post(f"/w/acme/campaigns/{campaign.id}/submit",
                                                    follow_redirects=True).get_data(as_text=True))
    moderator = app.test_client()
    if approve_via == "web":
        moderator.login("mod@acme.test")
        moderator.post(f"/w/acme/moderation/campaigns/{campaign.id}/approve")
    else:
        response = moderator.post(f"/api/v1/moderation/campaign/{campaign.id}/approve",
                                  headers=bearer("mod@acme.test", acme))
        assert response.status_code == 200, response.get_data(as_text=True)
    campaign = stored(campaign.id)
    assert (campaign.status, campaign.moderation) == ("Sending", "approved")
    return campaign


def test_the_fingerprint_is_the_sha256_of_what_was_approved_and_dispatch_sends_it(app, acme, sim, core,
                                                                                   audit_events):
    campaign = approved_campaign(app, acme)
    basis = json.loads(campaign.approval_basis)
    assert campaign.approval_fingerprint == hashlib.sha256(campaign.approval_basis.encode()).hexdigest()
    [upload] = db.session.execute(db.select(Upload).filter_by(campaign_id=campaign.id)).scalars()
    assert upload.sha256 == hashlib.sha256(LIST).hexdigest()        # computed while it was ingested
    assert basis["recipients"] == {"count": 3, "uploads": [
        {"id": upload.id, "sha256": upload.sha256, "bytes": len(LIST), "lines": 6, "accepted": 3,
         "duplicates": 1, "rejected": 1, "stop_listed": 0}]}
    assert basis["text"] == "Hello from ACME" and basis["smpp"] == {"saddr": "ACME", "ston": 5, "snpi": 0,
                                                                     "dton": 1, "dnpi": 1}
    [event] = audit_events(action="campaigns.approve")
    assert event["after"]["fingerprint"] == campaign.approval_fingerprint
    client = app.test_client()
    client.login("author@acme.test")
    assert campaign.approval_fingerprint in client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)

    dispatch_now(campaign.id)
    assert accepted_by_core(sim, core) == 3
    assert stored(campaign.id).sent_count == 3


def _other_revision(campaign):
    return make_sender(campaign.workspace, "OTHER").id


TAMPERING = {
    # name: (SQL run after approval, part named in the job error)
    "text": ("UPDATE campaigns SET message_text = 'You won! Claim at http://evil.example' WHERE id = :c", "text"),
    "saddr": ("UPDATE campaigns SET saddr = 'BANK' WHERE id = :c", "smpp.saddr"),
    "ston": ("UPDATE campaigns SET ston = 1 WHERE id = :c", "smpp.ston"),
    "dton": ("UPDATE campaigns SET dton = 5 WHERE id = :c", "smpp.dton"),
    "dnpi": ("UPDATE campaigns SET dnpi = 9 WHERE id = :c", "smpp.dnpi"),
    "daily_limit": ("UPDATE campaigns SET daily_limit = 99999999 WHERE id = :c", "daily_limit"),
    "window flag": ("UPDATE campaigns SET ignore_daily_window = true WHERE id = :c", "window.ignore_daily_window"),
    "recipient inserted": ("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                           "VALUES (:c, '491799999999', 'x', 'queued')", "recipients.rows"),
    "recipient count": ("UPDATE campaigns SET recipients_count = recipients_count + 1, "
                        "queued_count = queued_count + 1 WHERE id = :c", "recipients.count"),
    "upload digest": ("UPDATE uploads SET sha256 = 'aaaaaaaa' WHERE campaign_id = :c", "recipients.uploads"),
    "fingerprint erased": ("UPDATE campaigns SET approval_fingerprint = NULL WHERE id = :c",
                           "no fingerprint was stored at approval"),
}


@pytest.mark.parametrize("what", list(TAMPERING))
def test_a_campaign_changed_in_the_database_after_approval_is_refused_at_dispatch(app, acme, sim, core, what,
                                                                                   audit_events):
    campaign = approved_campaign(app, acme)
    sql, part = TAMPERING[what]
    db.session.execute(text(sql), {"c": campaign.id})
    db.session.commit()

    dispatch_now(campaign.id)

    assert accepted_by_core(sim, core) == 0                     # nothing reached the Core
    campaign = stored(campaign.id)
    assert campaign.status == "Failed" and campaign.sent_count == 0
    [error] = db.session.execute(db.select(JobError).filter_by(campaign_id=campaign.id, upload_id=None)).scalars()
    assert error.reason.startswith("Dispatch refused: changed after approval (") and part in error.reason
    assert "nothing was sent" in error.reason
    assert campaign.failure_reason == error.reason               # the page's banner and the JSON say why
    [event] = audit_events(action="campaigns.fingerprint_mismatch")
    assert any(part in changed for changed in event["after"]["changed"])
    assert audit_events(action="campaigns.fail")

    dispatch_now(campaign.id)                                   # a second run (or a racing job) adds nothing
    assert len(db.session.execute(db.select(JobError).filter_by(campaign_id=campaign.id, upload_id=None))
               .scalars().all()) == 1
    assert accepted_by_core(sim, core) == 0


def test_a_campaign_approved_through_the_api_is_bound_the_same_way(app, acme, sim, core):
    campaign = approved_campaign(app, acme, approve_via="api")
    assert len(campaign.approval_fingerprint) == 64
    db.session.execute(text("UPDATE campaigns SET sender_revision_id = :r, saddr = 'OTHER' WHERE id = :c"),
                       {"c": campaign.id, "r": _other_revision(campaign)})
    db.session.commit()
    dispatch_now(campaign.id)
    assert accepted_by_core(sim, core) == 0
    reason = db.session.execute(db.select(JobError.reason).filter_by(campaign_id=campaign.id, upload_id=None)).scalar()
    assert "sender_revision_id" in reason and "smpp.saddr" in reason
    response = app.test_client().get(f"/api/v1/campaigns/{campaign.id}", headers=bearer("author@acme.test", acme))
    assert response.get_json()["status"] == "Failed"
    assert response.get_json()["failure_reason"].startswith("Dispatch refused: changed after approval")


def test_the_product_offers_no_way_to_change_an_approved_campaign(app, acme, sim, core):
    """Wizard, browser upload, API upload: each refused with a clear message; the fingerprint holds."""
    campaign = approved_campaign(app, acme)
    author = app.test_client()
    author.login("author@acme.test")
    response = author.post(f"/w/acme/campaigns/{campaign.id}/wizard/2", data={
        "name": "x", "sender_revision_id": str(campaign.sender_revision_id), "text": "Changed", "daily_limit": ""},
        follow_redirects=True)
    assert "only drafts (status New) can be edited" in html.unescape(response.get_data(as_text=True))
    response = author.post(f"/w/acme/campaigns/{campaign.id}/recipients", data=b"491711111111\n",
                           headers={"X-Filename": "more.csv", "Accept": "application/json",
                                    "X-CSRFToken": author.csrf_token}, content_type="text/csv")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_a_draft"
    response = author.put(f"/api/v1/campaigns/{campaign.id}/recipients", data=b"491711111111\n",
                          headers={**bearer("author@acme.test", acme), "X-Filename": "more.csv"},
                          content_type="text/csv")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_a_draft"
    approval.check(stored(campaign.id))                          # still exactly what was approved
    dispatch_now(campaign.id)
    assert accepted_by_core(sim, core) == 3


def test_trigger_numbers_pushed_after_the_start_are_not_part_of_the_fingerprint(app, acme, sim, core):
    campaign = approved_campaign(app, acme, mode="Trigger")
    assert json.loads(campaign.approval_basis)["recipients"] is None
    api = app.test_client()
    headers = bearer("author@acme.test", acme)
    response = api.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": ["491700000011",
                                                                                        "491700000012"]},
                        headers=headers)
    assert response.get_json()["accepted"] == 2
    run("trigger")                                               # pushes go out through the Trigger lane
    assert accepted_by_core(sim, core) == 2                      # new numbers go out: still what was approved

    db.session.execute(text("UPDATE campaigns SET message_text = 'Your code is 0000, send it to us' "
                            "WHERE id = :c"), {"c": campaign.id})
    db.session.commit()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": ["491700000013"]},
                        headers=headers)
    assert response.get_json()["accepted"] == 1
    run("trigger")
    assert accepted_by_core(sim, core) == 2                      # the tampered text was never sent
    assert stored(campaign.id).status == "Failed"
    response = api.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": ["491700000014"]},
                        headers=headers)
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_accepting"


def test_a_campaign_approved_before_fingerprints_is_bound_at_its_first_dispatch(app, acme, sim, core, audit_events):
    campaign = make_campaign(acme, user("author@acme.test"), sender=make_sender(acme), status="Sending",
                             moderation="approved", recipients=4, queued_count=4)
    db.session.execute(text("UPDATE campaigns SET approval_fingerprint = :m, approval_basis = NULL WHERE id = :c"),
                       {"m": approval.LEGACY, "c": campaign.id})   # what migration 0009 marks
    db.session.commit()
    dispatch_now(campaign.id)
    assert accepted_by_core(sim, core) == 4
    campaign = stored(campaign.id)
    assert len(campaign.approval_fingerprint) == 64 and campaign.approval_fingerprint != approval.LEGACY
    assert audit_events(action="campaigns.fingerprint_recorded")
    approval.check(campaign)


def _spread(campaign):
    campaign.mode = "Spread"


MUTATIONS = {
    "text": lambda c: setattr(c, "message_text", c.message_text + "!"),
    "sender_revision_id": lambda c: setattr(c, "sender_revision_id", c.sender_revision_id + 1000),
    "saddr": lambda c: setattr(c, "saddr", "OTHER"), "ston": lambda c: setattr(c, "ston", 1),
    "snpi": lambda c: setattr(c, "snpi", 1), "dton": lambda c: setattr(c, "dton", 2),
    "dnpi": lambda c: setattr(c, "dnpi", 3), "mode": _spread,
    "auto_start": lambda c: setattr(c, "auto_start", False),
    "start_at": lambda c: setattr(c, "start_at", c.start_at + timedelta(minutes=1)),
    "daily_limit": lambda c: setattr(c, "daily_limit", 10),
    "ignore_daily_window": lambda c: setattr(c, "ignore_daily_window", True),
    "recipients_count": lambda c: setattr(c, "recipients_count", c.recipients_count + 1),
}


@pytest.mark.parametrize("field", list(MUTATIONS))
def test_every_part_of_the_basis_changes_the_fingerprint(acme, field):
    campaign = make_campaign(acme, user("author@acme.test"), mode="OnTime", sender=make_sender(acme),
                             status="Pending", recipients=2, daily_limit=500, start_at=utcnow() + timedelta(days=2))
    before = approval.digest(approval.basis(campaign))
    assert before == approval.digest(approval.basis(campaign))   # canonical: the same campaign, the same digest
    with db.session.no_autoflush:
        MUTATIONS[field](campaign)
        assert approval.digest(approval.basis(campaign)) != before
    db.session.rollback()


def test_the_moderation_row_shows_what_the_moderator_decides_on(app, acme):
    revision = make_sender(acme, "ACME")
    campaign = make_campaign(acme, user("author@acme.test"), mode="OnTime", sender=revision, status="Pending",
                             recipients=3, saddr="ACMEPROMO", daily_limit=5000, message_text="Привет, скидка 20%",
                             start_at=utcnow().replace(hour=7, minute=30, second=0, microsecond=0) + timedelta(days=1))
    acme.window_start, acme.window_end = "08:00", "20:00"
    db.session.commit()
    moderator = app.test_client()
    moderator.login("mod@acme.test")
    body = html.unescape(moderator.get("/w/acme/moderation?tab=campaigns").get_data(as_text=True))
    assert "<code>ACMEPROMO</code>" in body
    assert "override of revision #1: <code>ACME</code>" in body
    assert "UCS-2 · 1 part · 18 characters" in body
    assert "Window: 08:00-20:00" in body and "Daily limit: 5,000" in body
    local = campaign.start_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"at {local.strftime('%Y-%m-%d %H:%M')} (Europe/Berlin)" in body
    [item] = moderator.get("/api/v1/moderation?kind=campaign", headers=bearer("mod@acme.test", acme)).get_json()["items"]
    assert (item["saddr"], item["saddr_overridden"], item["revision_saddr"]) == ("ACMEPROMO", True, "ACME")
    assert (item["encoding"], item["segments"], item["daily_limit"], item["recipients_count"]) == ("UCS-2", 1, 5000, 3)
    assert item["sending_window"] == "08:00-20:00" and item["start_at"] == campaign.start_at.isoformat(
        timespec="seconds").replace("+00:00", "Z")


SEEN_RE = r'action="/w/acme/moderation/campaigns/{id}/approve"[^>]*>\s*<input[^>]*csrf_token[^>]*>\s*<input type="hidden" name="seen" value="([^"]+)"'


def test_a_moderator_approves_only_the_submission_they_saw(app, acme):
    """Between drawing the row and the click, another moderator rejects and the author resubmits a
    changed text: the old row's Approve is refused; the fresh row's works and binds the new text."""
    import re

    campaign = make_campaign(acme, user("author@acme.test"), sender=make_sender(acme), status="Pending", recipients=2)
    make_user("mod2@acme.test", workspace=acme, role="moderator")
    mod1 = app.test_client()
    mod1.login("mod@acme.test")
    old_row = mod1.get("/w/acme/moderation?tab=campaigns").get_data(as_text=True)
    seen = re.search(SEEN_RE.format(id=campaign.id), old_row).group(1)

    mod2 = user("mod2@acme.test")
    lifecycle.reject(acme, campaign.id, mod2.membership_in(acme.id), mod2, "Say who you are.")
    author = app.test_client()
    author.login("author@acme.test")
    response = author.post(f"/w/acme/campaigns/{campaign.id}/wizard/2", data={
        "name": "Changed", "sender_revision_id": str(campaign.sender_revision_id),
        "text": "Totally different text", "daily_limit": "", "auto_start": "y"})
    assert response.status_code == 302, response.get_data(as_text=True)
    author.post(f"/w/acme/campaigns/{campaign.id}/submit")
    assert (stored(campaign.id).status, stored(campaign.id).moderation) == ("Pending", "awaiting")

    body = html.unescape(mod1.post(f"/w/acme/moderation/campaigns/{campaign.id}/approve", data={"seen": seen},
                                   follow_redirects=True).get_data(as_text=True))
    assert "was changed and submitted again since you looked at it" in body
    assert stored(campaign.id).moderation == "awaiting"

    fresh_seen = re.search(SEEN_RE.format(id=campaign.id),
                           mod1.get("/w/acme/moderation?tab=campaigns").get_data(as_text=True)).group(1)
    assert fresh_seen != seen
    body = html.unescape(mod1.post(f"/w/acme/moderation/campaigns/{campaign.id}/approve", data={"seen": fresh_seen},
                                   follow_redirects=True).get_data(as_text=True))
    assert "Approved campaign “Changed”" in body
    assert json.loads(stored(campaign.id).approval_basis)["text"] == "Totally different text"


def test_an_approval_decided_on_an_earlier_submission_loses_at_the_update(acme):
    """The service-level guard: the in-memory campaign is the earlier submission; meanwhile it was
    rejected and resubmitted (same status and moderation, a new submitted_at) — the UPDATE refuses."""
    from services.errors import Conflict

    campaign = make_campaign(acme, user("author@acme.test"), sender=make_sender(acme), status="Pending", recipients=2)
    stale = db.session.get(Campaign, campaign.id)
    db.session.execute(text("UPDATE campaigns SET submitted_at = :t, message_text = 'resubmitted' WHERE id = :c"),
                       {"t": utcnow() + timedelta(seconds=5), "c": campaign.id})
    mod = user("mod@acme.test")
    with db.session.no_autoflush, pytest.raises(Conflict, match="changed meanwhile"):
        lifecycle.apply(stale, "approve", actor=mod)
    assert stored(campaign.id).moderation == "awaiting"
