"""The moderation queue: tabs and counts, the polling endpoint, approving and rejecting sender
revisions and campaigns from the page and the API, four-eyes, who may moderate, the super admin."""
import html
import re

import pytest
from argon2 import PasswordHasher

from extensions import db
from models import Campaign, SenderRevision, utcnow
from services import senders, tokens
from tests.factories import make_user, make_workspace
from tests.integration.test_senders import Browser


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    from services import passwords

    monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


@pytest.fixture
def browser(app):
    """browser(email=None) -> a client of its own (own cookies), signed in when an e-mail is given."""
    def make(email=None):
        client = Browser(app, app.response_class, use_cookies=True)
        if email:
            assert client.login(email).status_code == 302, f"sign-in of {email} failed"
        return client
    return make


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    for email, role, flag in (("author@acme.test", "author", False), ("mod@acme.test", "moderator", False),
                              ("mod2@acme.test", "moderator", False), ("admin@acme.test", "admin", False),
                              ("flagged@acme.test", "author", True)):
        make_user(email, workspace=ws, role=role, is_moderator=flag)
    return ws


def user(email):
    from services import accounts

    return accounts.find_user(email)


def page(response):
    return html.unescape(response.get_data(as_text=True))


def propose(ws, email, label="Acme", saddr="ACME"):
    u = user(email)
    return senders.propose(ws, u.membership_in(ws.id), u, label=label, saddr=saddr, comment="please")


def approved_revision(ws, label="Brand", saddr="BRAND"):
    revision = propose(ws, "admin@acme.test", label=label, saddr=saddr)
    mod = user("mod@acme.test")
    return senders.approve(ws, revision.id, mod.membership_in(ws.id), mod)


def pending_campaign(ws, author_email="author@acme.test", name="Spring sale", revision=None, **values):
    revision = revision or approved_revision(ws)
    fields = {"status": "Pending", "moderation": "awaiting", "mode": "OnDemand", "auto_start": True,
              "submitted_at": utcnow(), "recipients_count": 1234,
              "message_text": "Spring sale: 20% off everything until Sunday.", **values}
    campaign = Campaign(workspace_id=ws.id, author_id=user(author_email).id, name=name,
                        sender_revision_id=revision.id, **fields)
    db.session.add(campaign)
    db.session.commit()
    return campaign


def fresh(model, id_):
    db.session.expire_all()
    return db.session.get(model, id_)


def count_badge(body, kind):
    match = re.search(rf'data-count="{kind}">(\d+)<', body)
    return int(match.group(1)) if match else None


# --- the page ----------------------------------------------------------------------------------------

def test_the_queue_has_two_tabs_with_counts_and_lists_sender_revisions(browser, acme):
    revision = propose(acme, "author@acme.test")
    pending_campaign(acme)
    body = page(browser("mod@acme.test").get("/w/acme/moderation?tab=senders"))

    assert "Campaigns" in body and "Sender revisions" in body
    assert count_badge(body, "campaign") == 1 and count_badge(body, "sender_revision") == 1
    assert f'data-id="{revision.id}"' in body
    assert "<code>ACME</code>" in body and "new sender name" in body and "author@acme.test" in body
    assert "please" in body  # the proposer's comment
    assert f'action="/w/acme/moderation/sender-revisions/{revision.id}/approve"' in body
    assert 'name="note"' in body and "required" in body
    # Locally served script, no inline script (the CSP forbids it anyway).
    assert '<script src="/static/js/moderation.js" defer></script>' in body
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body)
    assert "data-poll-url=\"/w/acme/moderation/queue.json?tab=senders\"" in body


def test_the_moderation_script_is_served(browser):
    response = browser().get("/static/js/moderation.js")
    assert response.status_code == 200
    script = response.get_data(as_text=True)
    assert "data-poll-url" in script and "known=" in script and "data-count" in script


def test_a_revision_of_an_existing_name_shows_what_it_replaces(browser, acme):
    current = approved_revision(acme, label="Acme", saddr="ACME")
    author = user("author@acme.test")
    senders.propose_revision(acme, current.sender_id, author.membership_in(acme.id), author, saddr="ACMEPAY")
    body = page(browser("mod@acme.test").get("/w/acme/moderation?tab=senders"))
    assert "<code>ACMEPAY</code>" in body and "replaces <code>ACME</code>" in body and "revision #2" in body


def test_an_empty_queue_says_so(browser, acme):
    body = page(browser("mod@acme.test").get("/w/acme/moderation"))
    assert "Nothing is waiting in campaigns." in body
    assert count_badge(body, "campaign") == 0


def test_who_may_see_the_queue_follows_the_permission_table(browser, acme):
    assert browser("author@acme.test").get("/w/acme/moderation").status_code == 403
    assert browser("author@acme.test").get("/w/acme/moderation/queue.json").status_code == 403
    for email in ("flagged@acme.test", "mod@acme.test", "admin@acme.test"):
        assert browser(email).get("/w/acme/moderation").status_code == 200, email
    other = make_workspace("globex")
    make_user("admin@globex.test", workspace=other, role="admin")
    assert browser("admin@globex.test").get("/w/acme/moderation").status_code == 404


def test_approving_a_revision_from_the_page(browser, acme, audit_events):
    revision = propose(acme, "author@acme.test")
    mod = browser("mod@acme.test")
    response = mod.post(f"/w/acme/moderation/sender-revisions/{revision.id}/approve")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/w/acme/moderation?tab=senders")

    body = page(mod.get(response.headers["Location"]))
    assert "Approved revision #1 of “Acme”: ACME is now its current SADDR for new campaigns." in body
    assert f'data-id="{revision.id}"' not in body and count_badge(body, "sender_revision") == 0
    stored = fresh(SenderRevision, revision.id)
    assert (stored.state, stored.decided_by_id) == ("approved", user("mod@acme.test").id)
    event = audit_events(action="senders.revision_approved")[0]
    assert event["actor_email"] == "mod@acme.test" and event["actor_role"] == "moderator"
    assert (event["before"]["state"], event["after"]["state"]) == ("pending", "approved")
    assert [r.id for r in senders.approved_revisions_for_wizard(acme)] == [revision.id]


def test_a_late_second_approval_says_who_decided_and_changes_nothing(browser, acme):
    revision = propose(acme, "author@acme.test")
    first, second = browser("mod@acme.test"), browser("mod2@acme.test")
    assert first.post(f"/w/acme/moderation/sender-revisions/{revision.id}/approve").status_code == 302
    response = second.post(f"/w/acme/moderation/sender-revisions/{revision.id}/reject", data={"note": "no"},
                           follow_redirects=True)
    body = page(response)
    assert "Revision #1 was already approved by mod@acme.test at " in body
    stored = fresh(SenderRevision, revision.id)
    assert (stored.state, stored.decided_by_id, stored.decision_note) == ("approved", user("mod@acme.test").id, None)


def test_rejecting_needs_a_note_and_the_author_reads_it(browser, acme, audit_events):
    revision = propose(acme, "author@acme.test")
    mod = browser("mod@acme.test")
    body = page(mod.post(f"/w/acme/moderation/sender-revisions/{revision.id}/reject", data={"note": "  "},
                         follow_redirects=True))
    assert "Write a note saying why the sender revision is rejected; the author will see it." in body
    assert fresh(SenderRevision, revision.id).state == "pending"

    body = page(mod.post(f"/w/acme/moderation/sender-revisions/{revision.id}/reject",
                         data={"note": "ACME belongs to another client."}, follow_redirects=True))
    assert "Rejected revision #1 of “Acme” (ACME); the author sees your note" in body
    assert fresh(SenderRevision, revision.id).state == "rejected"
    assert audit_events(action="senders.revision_rejected")[0]["note"] == "ACME belongs to another client."

    author_view = page(browser("author@acme.test").get(f"/w/acme/senders/{revision.sender_id}"))
    assert "ACME belongs to another client." in author_view and "was rejected" in author_view


def test_four_eyes_hides_the_buttons_for_ones_own_item_and_refuses_the_post(browser, acme):
    own = propose(acme, "mod@acme.test")
    mod = browser("mod@acme.test")
    body = page(mod.get("/w/acme/moderation?tab=senders"))
    assert f'data-id="{own.id}"' in body
    assert "You shaped this — four-eyes: another moderator decides." in body
    assert f"/sender-revisions/{own.id}/approve" not in body

    body = page(mod.post(f"/w/acme/moderation/sender-revisions/{own.id}/approve", follow_redirects=True))
    assert "Four-eyes rule: you proposed this sender revision, so you can neither approve nor reject it" in body
    assert fresh(SenderRevision, own.id).state == "pending"
    # Another moderator sees the buttons.
    other = page(browser("mod2@acme.test").get("/w/acme/moderation?tab=senders"))
    assert f"/sender-revisions/{own.id}/approve" in other


def test_with_four_eyes_off_a_moderator_may_approve_their_own_revision(browser, acme):
    acme.four_eyes = False
    db.session.commit()
    own = propose(acme, "mod@acme.test")
    mod = browser("mod@acme.test")
    assert f"/sender-revisions/{own.id}/approve" in page(mod.get("/w/acme/moderation?tab=senders"))
    mod.post(f"/w/acme/moderation/sender-revisions/{own.id}/approve")
    assert fresh(SenderRevision, own.id).state == "approved"


def test_a_flagged_author_moderates_and_a_plain_author_is_refused(browser, acme):
    revision = propose(acme, "mod@acme.test")
    assert browser("author@acme.test").post(f"/w/acme/moderation/sender-revisions/{revision.id}/approve") \
        .status_code == 403
    assert fresh(SenderRevision, revision.id).state == "pending"
    browser("flagged@acme.test").post(f"/w/acme/moderation/sender-revisions/{revision.id}/approve")
    assert fresh(SenderRevision, revision.id).state == "approved"


def test_the_superadmin_moderates_a_workspace_they_are_not_a_member_of(browser, acme):
    make_user("root@example.com", superadmin=True)
    revision = propose(acme, "author@acme.test")
    root = browser("root@example.com")
    assert f'data-id="{revision.id}"' in page(root.get("/w/acme/moderation?tab=senders"))
    root.post(f"/w/acme/moderation/sender-revisions/{revision.id}/approve")
    assert fresh(SenderRevision, revision.id).decided_by_id == user("root@example.com").id


def test_an_item_of_another_workspace_is_not_found(browser, acme):
    other = make_workspace("globex")
    make_user("admin@globex.test", workspace=other, role="admin")
    theirs = senders.propose(other, user("admin@globex.test").membership_in(other.id), user("admin@globex.test"),
                             label="Globex", saddr="GLOBEX")
    mod = browser("mod@acme.test")
    assert mod.post(f"/w/acme/moderation/sender-revisions/{theirs.id}/approve").status_code == 404
    assert mod.post(f"/w/acme/moderation/sender-revisions/{theirs.id}/reject", data={"note": "x"}).status_code == 404
    assert fresh(SenderRevision, theirs.id).state == "pending"


# --- polling -------------------------------------------------------------------------------------------

def test_the_polling_endpoint_reports_counts_ids_and_rows_the_page_lacks(browser, acme):
    one = propose(acme, "author@acme.test", label="One", saddr="ONE")
    mod, mod2 = browser("mod@acme.test"), browser("mod2@acme.test")

    state = mod.get("/w/acme/moderation/queue.json?tab=senders").get_json()
    assert state["kind"] == "sender_revision" and state["ids"] == [one.id]
    assert state["counts"] == {"campaign": 0, "sender_revision": 1}
    assert f'data-id="{one.id}"' in state["rows"][str(one.id)]

    # A new proposal appears; rows the page already shows are not sent again.
    two = propose(acme, "author@acme.test", label="Two", saddr="TWO")
    state = mod.get(f"/w/acme/moderation/queue.json?tab=senders&known={one.id}").get_json()
    assert state["ids"] == [one.id, two.id] and list(state["rows"]) == [str(two.id)]
    assert "<code>TWO</code>" in state["rows"][str(two.id)]

    # Someone else decides: the id leaves the list, the count drops.
    mod2.post(f"/w/acme/moderation/sender-revisions/{one.id}/approve")
    state = mod.get(f"/w/acme/moderation/queue.json?tab=senders&known={one.id},{two.id}").get_json()
    assert state["ids"] == [two.id] and state["rows"] == {}
    assert state["counts"]["sender_revision"] == 1


def test_polled_rows_respect_four_eyes(browser, acme):
    own = propose(acme, "mod@acme.test")
    row = browser("mod@acme.test").get("/w/acme/moderation/queue.json?tab=senders").get_json()["rows"][str(own.id)]
    assert "/approve" not in row and "another moderator decides" in row


# --- campaigns tab ----------------------------------------------------------------------------------------

def test_the_campaigns_tab_shows_what_a_moderator_needs_to_decide(browser, acme, app):
    campaign = pending_campaign(acme)
    # Not in the queue: drafts, approved ones, archived ones.
    revision = campaign.sender_revision
    pending_campaign(acme, name="Draft", status="New", moderation="awaiting", revision=revision)
    pending_campaign(acme, name="Already approved", moderation="approved", revision=revision)
    body = page(browser("mod@acme.test").get("/w/acme/moderation?tab=campaigns"))
    assert count_badge(body, "campaign") == 1
    assert "Spring sale" in body and "Draft" not in body and "Already approved" not in body
    for text in ("OnDemand", "author@acme.test", "<code>BRAND</code>", "1,234",
                 "Spring sale: 20% off everything until Sunday.", f"#{campaign.id}"):
        assert text in body, text
    has_detail = "campaigns.detail" in app.view_functions
    assert (f'href="/w/acme/campaigns/{campaign.id}"' in body) == has_detail


def test_a_long_message_is_previewed(browser, acme):
    pending_campaign(acme, message_text="x" * 500)
    body = page(browser("mod@acme.test").get("/w/acme/moderation?tab=campaigns"))
    assert "x" * 119 + "…" in body and "x" * 121 not in body


def test_approving_an_on_demand_campaign_starts_it(browser, acme, audit_events):
    campaign = pending_campaign(acme)
    body = page(browser("mod@acme.test").post(f"/w/acme/moderation/campaigns/{campaign.id}/approve",
                                              follow_redirects=True))
    assert "Approved campaign “Spring sale”; it is sending now." in body
    stored = fresh(Campaign, campaign.id)
    assert (stored.status, stored.moderation, stored.moderated_by_id) == ("Sending", "approved",
                                                                          user("mod@acme.test").id)
    assert audit_events(action="campaigns.approve")


def test_rejecting_a_campaign_returns_it_to_new_with_the_note(browser, acme):
    campaign = pending_campaign(acme)
    mod = browser("mod@acme.test")
    body = page(mod.post(f"/w/acme/moderation/campaigns/{campaign.id}/reject", data={"note": ""},
                         follow_redirects=True))
    assert "Write a note saying why the campaign is rejected" in body
    assert fresh(Campaign, campaign.id).status == "Pending"

    body = page(mod.post(f"/w/acme/moderation/campaigns/{campaign.id}/reject",
                         data={"note": "Add the opt-out text."}, follow_redirects=True))
    assert "Rejected campaign “Spring sale”; it is back with its author as New" in body
    stored = fresh(Campaign, campaign.id)
    assert (stored.status, stored.moderation, stored.moderation_note) == ("New", "rejected", "Add the opt-out text.")


def test_a_late_campaign_decision_names_the_first_moderator(browser, acme):
    campaign = pending_campaign(acme)
    browser("mod@acme.test").post(f"/w/acme/moderation/campaigns/{campaign.id}/approve")
    body = page(browser("mod2@acme.test").post(f"/w/acme/moderation/campaigns/{campaign.id}/approve",
                                               follow_redirects=True))
    assert f"Campaign #{campaign.id} was already approved by mod@acme.test at " in body
    assert fresh(Campaign, campaign.id).moderated_by_id == user("mod@acme.test").id


def test_four_eyes_applies_to_campaigns(browser, acme):
    campaign = pending_campaign(acme, author_email="mod@acme.test")
    mod = browser("mod@acme.test")
    body = page(mod.get("/w/acme/moderation?tab=campaigns"))
    assert "another moderator decides" in body and f"/campaigns/{campaign.id}/approve" not in body
    body = page(mod.post(f"/w/acme/moderation/campaigns/{campaign.id}/approve", follow_redirects=True))
    assert "Four-eyes rule" in body
    assert fresh(Campaign, campaign.id).moderation == "awaiting"


# --- API -----------------------------------------------------------------------------------------------------

def bearer(email, ws):
    _, token = tokens.create_token(user(email), ws, "test")
    return {"Authorization": f"Bearer {token}"}


def test_api_lists_the_queue_by_kind(browser, acme):
    revision = propose(acme, "author@acme.test")
    campaign = pending_campaign(acme)
    api, auth = browser(), bearer("mod@acme.test", acme)

    both = api.get("/api/v1/moderation", headers=auth).get_json()
    assert both["counts"] == {"campaign": 1, "sender_revision": 1}
    assert {(i["kind"], i["id"]) for i in both["items"]} == {("campaign", campaign.id),
                                                              ("sender_revision", revision.id)}
    only = api.get("/api/v1/moderation?kind=sender_revision", headers=auth).get_json()["items"]
    assert [(i["id"], i["saddr"], i["sender_name"]) for i in only] == [(revision.id, "ACME", "Acme")]
    [item] = api.get("/api/v1/moderation?kind=campaign", headers=auth).get_json()["items"]
    assert (item["id"], item["saddr"], item["recipients_count"]) == (campaign.id, "BRAND", 1234)
    response = api.get("/api/v1/moderation?kind=nope", headers=auth)
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_kind")
    response = api.get("/api/v1/moderation", headers=bearer("author@acme.test", acme))
    assert response.status_code == 403


def test_api_decisions_follow_the_same_rules(browser, acme, audit_events):
    revision = propose(acme, "author@acme.test")
    api = browser()
    mod, mod2 = bearer("mod@acme.test", acme), bearer("mod2@acme.test", acme)

    response = api.post(f"/api/v1/moderation/sender_revision/{revision.id}/reject", headers=mod, json={})
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "note_required")
    response = api.post(f"/api/v1/moderation/sender_revision/{revision.id}/approve", headers=mod)
    assert response.status_code == 200
    assert (response.get_json()["state"], response.get_json()["saddr"]) == ("approved", "ACME")
    response = api.post(f"/api/v1/moderation/sender_revision/{revision.id}/approve", headers=mod2)
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["code"] == "already_decided" and "already approved by mod@acme.test" in error["message"]
    assert audit_events(action="senders.revision_approved")[0]["actor_email"] == "mod@acme.test"

    own = propose(acme, "mod@acme.test", label="Mine", saddr="MINE")
    response = api.post(f"/api/v1/moderation/sender_revision/{own.id}/approve", headers=mod)
    assert (response.status_code, response.get_json()["error"]["code"]) == (403, "four_eyes")
    response = api.post(f"/api/v1/moderation/sender_revision/{own.id}/reject", headers=mod2,
                        json={"note": "Not a brand we know."})
    assert response.status_code == 200 and response.get_json()["note"] == "Not a brand we know."
    response = api.post(f"/api/v1/moderation/sender_revision/{own.id}/approve",
                        headers=bearer("author@acme.test", acme))
    assert response.status_code == 403
    response = api.post(f"/api/v1/moderation/widgets/{own.id}/approve", headers=mod)
    assert (response.status_code, response.get_json()["error"]["code"]) == (404, "not_found")


def test_api_approves_and_rejects_campaigns(browser, acme):
    campaign = pending_campaign(acme)
    other = pending_campaign(acme, name="Autumn", revision=campaign.sender_revision)
    api, mod = browser(), bearer("mod@acme.test", acme)
    response = api.post(f"/api/v1/moderation/campaign/{campaign.id}/approve", headers=mod)
    assert response.status_code == 200 and response.get_json()["status"] == "Sending"
    response = api.post(f"/api/v1/moderation/campaign/{campaign.id}/reject", headers=bearer("mod2@acme.test", acme),
                        json={"note": "late"})
    assert (response.status_code, response.get_json()["error"]["code"]) == (409, "already_decided")
    response = api.post(f"/api/v1/moderation/campaign/{other.id}/reject", headers=mod, json={"note": "Fix the text."})
    assert response.status_code == 200 and response.get_json()["status"] == "New"
    assert fresh(Campaign, other.id).moderation_note == "Fix the text."


def test_api_cannot_decide_items_of_another_workspace(browser, acme):
    revision = propose(acme, "author@acme.test")
    other = make_workspace("globex")
    make_user("admin@globex.test", workspace=other, role="admin")
    response = browser().post(f"/api/v1/moderation/sender_revision/{revision.id}/approve",
                              headers=bearer("admin@globex.test", other))
    assert response.status_code == 404
    assert fresh(SenderRevision, revision.id).state == "pending"
