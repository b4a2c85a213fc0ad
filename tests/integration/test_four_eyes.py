"""Four-eyes covers everyone who shaped an item, not only its author: whoever created, edited (any
wizard step), uploaded recipients to, submitted, restored or took over a campaign — or proposed or
submitted a sender revision — can neither approve nor reject it, on the page, the detail page and
the API; the queue offers them no button. Each test is a way around the old author-only check."""
import html
import re
import threading

import pytest
from rq import Queue, SimpleWorker

from extensions import db, redis_connection
from models import Campaign, SenderRevision
from models.contributors import CampaignContributor
from services import accounts, senders, tokens
from services import campaigns as lifecycle
from services.errors import Conflict
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("author@acme.test", workspace=ws, role="author")
    make_user("admin@acme.test", workspace=ws, role="admin")
    make_user("mod@acme.test", workspace=ws, role="moderator")
    make_user("flagged@acme.test", workspace=ws, role="author", is_moderator=True)
    return ws


@pytest.fixture
def sender(acme):
    return make_sender(acme, "ACME", label="Acme")


@pytest.fixture
def as_user(app):
    """as_user(email) -> a client of its own, signed in."""
    def make(email):
        client = app.test_client()
        assert client.login(email).status_code == 302, f"sign-in of {email} failed"
        return client
    return make


def user(email):
    return accounts.find_user(email)


def bearer(email, ws):
    return {"Authorization": f"Bearer {tokens.create_token(user(email), ws, 'test')[1]}"}


def page(response):
    return html.unescape(response.get_data(as_text=True))


def stored(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def contributions(campaign_id):
    db.session.expire_all()
    rows = db.session.execute(db.select(CampaignContributor).filter_by(campaign_id=campaign_id)).scalars()
    return {r.user.email: r.action for r in rows}


def authors_draft(client, sender):
    """The author builds a draft through the wizard (steps 1-3); recipients come from the factory."""
    response = client.post("/w/acme/campaigns/new", data={"mode": "OnDemand"})
    campaign_id = int(response.headers["Location"].split("/campaigns/")[1].split("/")[0])
    response = client.post(f"/w/acme/campaigns/{campaign_id}/wizard/2", data={
        "name": "Spring sale", "sender_revision_id": str(sender.id), "text": "Spring sale: 20% off.",
        "daily_limit": "", "auto_start": "y"})
    assert response.status_code == 302, page(response)
    response = client.post(f"/w/acme/campaigns/{campaign_id}/wizard/3", data={"saddr": "", "ston": "", "snpi": "",
                                                                               "dton": "", "dnpi": ""})
    assert response.status_code == 302, page(response)
    add_recipients(stored(campaign_id), ["491701234567", "491701234568"])
    return campaign_id


def assert_refused_everywhere(as_user, acme, campaign_id, email, did):
    """The person gets no button and a clear refusal on the queue, the detail page and the API."""
    client = as_user(email)
    queue = page(client.get("/w/acme/moderation?tab=campaigns"))
    assert f'data-id="{campaign_id}"' in queue
    assert f"/moderation/campaigns/{campaign_id}/approve" not in queue
    assert "You shaped this — four-eyes: another moderator decides." in queue
    row = client.get("/w/acme/moderation/queue.json?tab=campaigns").get_json()["rows"][str(campaign_id)]
    assert "/approve" not in row and "another moderator decides" in row
    detail = page(client.get(f"/w/acme/campaigns/{campaign_id}"))
    assert f"/campaigns/{campaign_id}/approve" not in detail and f"/campaigns/{campaign_id}/reject" not in detail

    message = f"Four-eyes rule: you {did} this campaign, so you can neither approve nor reject it"
    for url, data in ((f"/w/acme/moderation/campaigns/{campaign_id}/approve", {}),
                      (f"/w/acme/moderation/campaigns/{campaign_id}/reject", {"note": "Not like this."}),
                      (f"/w/acme/campaigns/{campaign_id}/approve", {}),
                      (f"/w/acme/campaigns/{campaign_id}/reject", {"note": "Not like this."})):
        body = page(client.post(url, data=data, follow_redirects=True))
        assert message in body, (url, body[-3000:])
    api = bearer(email, acme)
    for decision, body in (("approve", None), ("reject", {"note": "Not like this."})):
        response = client.post(f"/api/v1/moderation/campaign/{campaign_id}/{decision}", headers=api, json=body)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == "four_eyes"
        assert message in response.get_json()["error"]["message"]
    campaign = stored(campaign_id)
    assert (campaign.status, campaign.moderation, campaign.moderated_by_id) == ("Pending", "awaiting", None)
    assert campaign.approval_fingerprint is None


def test_an_admin_who_rewrote_anothers_draft_and_submitted_it_cannot_approve_it(as_user, acme, sender,
                                                                                 audit_events):
    """The issue's case exactly: the admin edits the author's draft in the wizard, submits, approves."""
    campaign_id = authors_draft(as_user("author@acme.test"), sender)
    admin = as_user("admin@acme.test")
    response = admin.post(f"/w/acme/campaigns/{campaign_id}/wizard/2", data={
        "name": "Spring sale", "sender_revision_id": str(sender.id), "text": "Click http://evil.example now",
        "daily_limit": "", "auto_start": "y"})
    assert response.status_code == 302, page(response)
    body = page(admin.post(f"/w/acme/campaigns/{campaign_id}/submit", follow_redirects=True))
    assert "Submitted to moderation" in body
    assert stored(campaign_id).message_text == "Click http://evil.example now"
    assert contributions(campaign_id) == {"author@acme.test": "created", "admin@acme.test": "edited"}

    assert_refused_everywhere(as_user, acme, campaign_id, "admin@acme.test", "edited")

    # Someone who did not touch it decides; the approval names its fingerprint.
    body = page(as_user("mod@acme.test").post(f"/w/acme/moderation/campaigns/{campaign_id}/approve",
                                              follow_redirects=True))
    assert "Approved campaign “Spring sale”" in body
    campaign = stored(campaign_id)
    assert campaign.moderation == "approved" and len(campaign.approval_fingerprint) == 64
    [event] = audit_events(action="campaigns.approve")
    assert event["after"]["fingerprint"] == campaign.approval_fingerprint


def test_an_admin_who_submitted_anothers_draft_through_the_api_cannot_approve_it(as_user, acme, sender):
    campaign_id = authors_draft(as_user("author@acme.test"), sender)
    client = as_user("mod@acme.test")
    response = client.post(f"/api/v1/campaigns/{campaign_id}/submit", headers=bearer("admin@acme.test", acme))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert contributions(campaign_id)["admin@acme.test"] == "submitted"
    assert_refused_everywhere(as_user, acme, campaign_id, "admin@acme.test", "submitted")


def run_uploads():
    queue = Queue("uploads", connection=redis_connection())
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    db.session.expire_all()


@pytest.mark.parametrize("path", ["browser", "api"])
def test_an_uploader_who_is_a_moderator_cannot_decide(as_user, acme, sender, path):
    """The admin (a moderator by role) uploads the list to the author's draft; the author submits."""
    Queue("uploads", connection=redis_connection()).empty()
    author = as_user("author@acme.test")
    campaign_id = authors_draft(author, sender)
    admin = as_user("admin@acme.test")
    body = b"number\n491709999001\n491709999002\n"
    if path == "browser":
        response = admin.post(f"/w/acme/campaigns/{campaign_id}/recipients", data=body,
                              headers={"X-Filename": "list.csv", "Accept": "application/json",
                                       "X-CSRFToken": admin.csrf_token}, content_type="text/csv")
    else:
        response = admin.put(f"/api/v1/campaigns/{campaign_id}/recipients", data=body,
                             headers={**bearer("admin@acme.test", acme), "X-Filename": "list.csv"},
                             content_type="text/csv")
    assert response.status_code in (200, 202), response.get_data(as_text=True)
    run_uploads()
    assert stored(campaign_id).recipients_count == 4
    assert contributions(campaign_id)["admin@acme.test"] == "uploaded"
    body = page(author.post(f"/w/acme/campaigns/{campaign_id}/submit", follow_redirects=True))
    assert "Submitted to moderation" in body
    assert_refused_everywhere(as_user, acme, campaign_id, "admin@acme.test", "uploaded recipients to")


def test_whoever_restored_a_campaign_cannot_decide_it(as_user, acme, sender):
    author = user("author@acme.test")
    campaign = make_campaign(acme, author, sender=sender, recipients=2, archived=True)
    admin = as_user("admin@acme.test")
    body = page(admin.post(f"/w/acme/campaigns/{campaign.id}/restore", follow_redirects=True))
    assert "Restored" in body
    assert contributions(campaign.id)["admin@acme.test"] == "restored"
    as_user("author@acme.test").post(f"/w/acme/campaigns/{campaign.id}/submit")
    assert_refused_everywhere(as_user, acme, campaign.id, "admin@acme.test", "restored")


def test_the_new_owner_of_a_restored_campaign_cannot_decide_it(as_user, acme, sender):
    gone = make_user("gone@acme.test", workspace=acme, role="author")
    campaign = make_campaign(acme, gone, sender=sender, recipients=2, archived=True)
    flagged = user("flagged@acme.test")
    admin = user("admin@acme.test")
    lifecycle.restore_with_owner(acme, campaign.id, flagged.id, admin.membership_in(acme.id), admin)
    assert contributions(campaign.id) == {"gone@acme.test": "created", "admin@acme.test": "restored",
                                          "flagged@acme.test": "owner"}
    lifecycle.perform(acme, campaign.id, "submit", flagged.membership_in(acme.id), flagged)
    with pytest.raises(Exception, match="Four-eyes rule: you own this campaign"):
        lifecycle.approve(acme, campaign.id, flagged.membership_in(acme.id), flagged)


def test_a_clone_cannot_be_approved_by_whoever_shaped_its_source(as_user, acme, sender):
    """The flagged author wrote the source; an admin clones and submits it: the text is still theirs."""
    source = make_campaign(acme, user("flagged@acme.test"), sender=sender, status="Done", moderation="approved")
    admin = user("admin@acme.test")
    copy = lifecycle.perform(acme, source.id, "clone", admin.membership_in(acme.id), admin)
    add_recipients(copy, ["491701234567"])
    lifecycle.perform(acme, copy.id, "submit", admin.membership_in(acme.id), admin)
    assert contributions(copy.id) == {"admin@acme.test": "created", "flagged@acme.test": "cloned_from"}
    assert_refused_everywhere(as_user, acme, copy.id, "flagged@acme.test",
                              "shaped the campaign this one was cloned from")


def test_a_moderator_who_only_looked_may_still_decide(as_user, acme, sender):
    """Viewing the draft, the queue and the detail page shapes nothing."""
    campaign_id = authors_draft(as_user("author@acme.test"), sender)
    mod = as_user("mod@acme.test")
    mod.get(f"/w/acme/campaigns/{campaign_id}")
    as_user("author@acme.test").post(f"/w/acme/campaigns/{campaign_id}/submit")
    queue = page(mod.get("/w/acme/moderation?tab=campaigns"))
    assert f"/moderation/campaigns/{campaign_id}/approve" in queue
    response = mod.post(f"/api/v1/moderation/campaign/{campaign_id}/approve", headers=bearer("mod@acme.test", acme))
    assert response.status_code == 200 and response.get_json()["moderation"] == "approved"


def test_with_four_eyes_off_the_workspace_setting_is_honoured(as_user, acme, sender):
    acme.four_eyes = False
    db.session.commit()
    campaign_id = authors_draft(as_user("author@acme.test"), sender)
    admin = as_user("admin@acme.test")
    admin.post(f"/w/acme/campaigns/{campaign_id}/wizard/2", data={
        "name": "Spring sale", "sender_revision_id": str(sender.id), "text": "Changed by the admin",
        "daily_limit": "", "auto_start": "y"})
    admin.post(f"/w/acme/campaigns/{campaign_id}/submit")
    body = page(admin.post(f"/w/acme/moderation/campaigns/{campaign_id}/approve", follow_redirects=True))
    assert "Approved campaign" in body and stored(campaign_id).moderation == "approved"


def test_a_revision_submitted_by_an_admin_cannot_be_approved_by_that_admin(as_user, acme):
    author, admin = user("author@acme.test"), user("admin@acme.test")
    draft = senders.propose(acme, author.membership_in(acme.id), author, label="Brand", saddr="BRAND", draft=True)
    senders.submit_draft(acme, draft.id, admin.membership_in(acme.id), admin)
    client = as_user("admin@acme.test")
    queue = page(client.get("/w/acme/moderation?tab=senders"))
    assert f"/sender-revisions/{draft.id}/approve" not in queue
    body = page(client.post(f"/w/acme/moderation/sender-revisions/{draft.id}/approve", follow_redirects=True))
    assert "Four-eyes rule: you submitted this sender revision" in body
    response = client.post(f"/api/v1/moderation/sender_revision/{draft.id}/approve",
                           headers=bearer("admin@acme.test", acme))
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "four_eyes")
    db.session.expire_all()
    assert db.session.get(SenderRevision, draft.id).state == "pending"
    response = client.post(f"/api/v1/moderation/sender_revision/{draft.id}/approve",
                           headers=bearer("mod@acme.test", acme))
    assert response.status_code == 200


def test_a_contribution_is_recorded_with_the_change_or_not_at_all(as_user, acme, sender):
    """A wizard save that is refused (the campaign is no longer a draft) records nobody."""
    campaign = make_campaign(acme, user("author@acme.test"), sender=sender, status="Pending", recipients=1)
    response = as_user("admin@acme.test").post(f"/w/acme/campaigns/{campaign.id}/wizard/2", data={
        "name": "x", "sender_revision_id": str(sender.id), "text": "Changed", "daily_limit": ""},
        follow_redirects=True)
    assert "only drafts (status New) can be edited" in page(response)
    assert "admin@acme.test" not in contributions(campaign.id)
    assert stored(campaign.id).message_text == "Hello from ACME"
    queue = page(as_user("admin@acme.test").get("/w/acme/moderation?tab=campaigns"))
    assert f"/moderation/campaigns/{campaign.id}/approve" in queue


def test_many_moderators_racing_make_one_approval_with_one_fingerprint(app, acme, sender, audit_events):
    campaign = make_campaign(acme, user("author@acme.test"), sender=sender, status="Pending", recipients=3)
    mods = [make_user(f"m{i}@acme.test", workspace=acme, role="moderator") for i in range(6)]
    results, barrier = [], threading.Barrier(len(mods))

    def decide(user_id):
        with app.app_context():
            from models import User, Workspace

            who, workspace = db.session.get(User, user_id), db.session.get(Workspace, acme.id)
            barrier.wait()
            try:
                lifecycle.approve(workspace, campaign.id, who.membership_in(workspace.id), who)
                results.append("ok")
            except Conflict as exc:
                results.append(exc.code)
            except Exception as exc:  # noqa: BLE001 - a locked SQLite database counts as "did not win"
                results.append(type(exc).__name__)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=decide, args=(m.id,)) for m in mods]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("ok") == 1, results
    approvals = audit_events(action="campaigns.approve")
    assert len(approvals) == 1
    assert approvals[0]["after"]["fingerprint"] == stored(campaign.id).approval_fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", approvals[0]["after"]["fingerprint"])
