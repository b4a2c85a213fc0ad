"""The detail page: header, exactly the allowed buttons, the four tabs, the actions it posts,
archive / restore (one click or the owner dialog) and clone."""
import re

import pytest

from extensions import db
from models import Campaign, JobError, MessageError
from services import campaigns as lifecycle
from services import members
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

ACTION_RE = re.compile(r'action="/w/acme/campaigns/(\d+)/([a-z_]+)"')


@pytest.fixture
def ws():
    return make_workspace("acme")


@pytest.fixture
def author(ws):
    return make_user("author@example.com", workspace=ws, role="author")


@pytest.fixture
def moderator(ws):
    return make_user("mod@example.com", workspace=ws, role="moderator")


@pytest.fixture
def sender(ws):
    return make_sender(ws, "ACME", label="Acme")


def _buttons(client, campaign_id):
    html = client.get(f"/w/acme/campaigns/{campaign_id}").get_data(as_text=True)
    actions = set(lifecycle.USER_ACTIONS) | set(lifecycle.DECISIONS)
    return [a for cid, a in ACTION_RE.findall(html) if int(cid) == campaign_id and a in actions]


def _campaign(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


@pytest.mark.parametrize("status,moderation,archived", [
    ("New", "awaiting", False), ("New", "rejected", False), ("Pending", "awaiting", False),
    ("Pending", "approved", False), ("Sending", "approved", False), ("Paused", "approved", False),
    ("Done", "approved", False), ("Cancelled", "awaiting", False), ("Done", "approved", True),
])
def test_buttons_are_exactly_the_allowed_actions(client, ws, author, sender, status, moderation, archived):
    campaign = make_campaign(ws, author, sender=sender, status=status, moderation=moderation, archived=archived,
                             recipients=1)
    client.login("author@example.com")
    shown = _buttons(client, campaign.id)
    want = lifecycle.allowed_actions(campaign, author.membership_in(ws.id), author)
    assert shown == want
    assert ("start" in shown) == (status == "Pending" and moderation == "approved")


def test_moderator_gets_approve_and_reject_but_not_owner_actions(client, ws, author, moderator, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=1)
    client.login("mod@example.com")
    shown = _buttons(client, campaign.id)
    assert shown == ["approve", "reject"]
    assert client.post(f"/w/acme/campaigns/{campaign.id}/reject", data={"note": ""},
                       follow_redirects=True).get_data(as_text=True).count("Write a note") == 1
    client.post(f"/w/acme/campaigns/{campaign.id}/reject", data={"note": "Please name the shop"})
    assert (_campaign(campaign.id).status, _campaign(campaign.id).moderation) == ("New", "rejected")


def test_author_sees_the_rejection_note_on_the_page_and_in_the_audit_tab(client, ws, author, moderator, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=1)
    lifecycle.reject(ws, campaign.id, moderator.membership_in(ws.id), moderator, "Please name the shop")
    client.login("author@example.com")
    page = client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Please name the shop" in page and "Rejected by mod@example.com" in page
    audit_tab = client.get(f"/w/acme/campaigns/{campaign.id}?tab=audit").get_data(as_text=True)
    assert "campaigns.reject" in audit_tab and "Please name the shop" in audit_tab
    assert "Pending → New" in audit_tab.replace("status: ", "")


def test_pause_resume_cancel_from_the_page(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved", recipients=1)
    client.login("author@example.com")
    page = client.post(f"/w/acme/campaigns/{campaign.id}/pause", follow_redirects=True).get_data(as_text=True)
    assert "Paused: no new messages" in page and _campaign(campaign.id).status == "Paused"
    client.post(f"/w/acme/campaigns/{campaign.id}/resume")
    assert _campaign(campaign.id).status == "Sending"
    client.post(f"/w/acme/campaigns/{campaign.id}/cancel")
    assert _campaign(campaign.id).status == "Cancelled"
    page = client.post(f"/w/acme/campaigns/{campaign.id}/pause", follow_redirects=True).get_data(as_text=True)
    assert "Cannot pause a campaign that is Cancelled" in page


def test_archive_only_terminal_and_restore_in_one_click(client, ws, author, sender):
    sending = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved")
    client.login("author@example.com")
    page = client.post(f"/w/acme/campaigns/{sending.id}/archive", follow_redirects=True).get_data(as_text=True)
    assert "Cannot archive a campaign that is Sending" in page and _campaign(sending.id).archived_at is None
    done = make_campaign(ws, author, sender=sender, status="Done", moderation="approved")
    client.post(f"/w/acme/campaigns/{done.id}/archive")
    assert _campaign(done.id).archived_at is not None and _campaign(done.id).workspace_id == ws.id
    client.post(f"/w/acme/campaigns/{done.id}/restore")
    assert _campaign(done.id).archived_at is None


def test_restore_when_the_author_left_asks_for_a_new_owner(client, ws, author, sender, audit_events):
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    heir = make_user("heir@example.com", workspace=ws, role="author")
    campaign = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", archived=True)
    members.remove_member(ws, author.membership_in(ws.id).id)
    client.login("admin@example.com")
    r = client.post(f"/w/acme/campaigns/{campaign.id}/restore")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/campaigns/{campaign.id}/restore-owner")
    dialog = client.get(f"/w/acme/campaigns/{campaign.id}/restore-owner").get_data(as_text=True)
    assert "heir@example.com" in dialog and "admin@example.com" in dialog
    assert client.post(f"/w/acme/campaigns/{campaign.id}/restore-owner", data={"owner": "999"}).status_code == 400
    client.post(f"/w/acme/campaigns/{campaign.id}/restore-owner", data={"owner": str(heir.id)})
    restored = _campaign(campaign.id)
    assert restored.archived_at is None and restored.author_id == heir.id
    assert audit_events(action="campaigns.owner_changed")[0]["after"] == {"author": "heir@example.com"}
    assert admin.id != heir.id


def test_clone_copies_settings_without_recipients(client, ws, author, sender, audit_events):
    campaign = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", recipients=3,
                             daily_limit=500, message_text="Sale today")
    client.login("author@example.com")
    r = client.post(f"/w/acme/campaigns/{campaign.id}/clone")
    copy_id = int(r.headers["Location"].split("/campaigns/")[1].split("/")[0])
    copy = _campaign(copy_id)
    assert (copy.status, copy.moderation, copy.recipients_count) == ("New", "awaiting", 0)
    assert (copy.message_text, copy.daily_limit, copy.sender_revision_id, copy.saddr) == \
        ("Sale today", 500, sender.id, "ACME")
    assert copy.name.startswith("Copy of") and copy.wizard_step == 4
    assert audit_events(action="campaigns.cloned")[0]["before"] == {"source_id": campaign.id}


def test_tabs_show_job_errors_message_errors_with_meaning_and_masked_recipients(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved", recipients=2)
    db.session.add_all([JobError(campaign_id=campaign.id, line_no=7, reason="too short (5 digits, at least 7)",
                                 raw="12345"),
                        MessageError(campaign_id=campaign.id, number_tail="567", smpp_status="0x0000000B",
                                     reason="rejected by the SMSC")])
    db.session.commit()
    client.login("author@example.com")
    recipients = client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)
    assert "•••••••••001" in recipients and "491700000001" not in recipients
    jobs = client.get(f"/w/acme/campaigns/{campaign.id}?tab=job-errors").get_data(as_text=True)
    assert ">7<" in jobs and "too short" in jobs
    messages = client.get(f"/w/acme/campaigns/{campaign.id}?tab=message-errors").get_data(as_text=True)
    assert "0x0000000B" in messages and "ESME_RINVDSTADR" in messages and "destination" in messages


def test_full_numbers_only_with_the_right(client, ws, sender):
    viewer = make_user("viewer@example.com", workspace=ws, role="author", can_view_numbers=True)
    campaign = make_campaign(ws, viewer, sender=sender, recipients=1)
    client.login("viewer@example.com")
    assert "491700000001" in client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)


def test_export_card_posts_to_the_exports_area(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", recipients=1)
    client.login("author@example.com")
    html = client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)
    if "exports.create" in client.application.view_functions:
        assert f'action="/w/acme/campaigns/{campaign.id}/exports"' in html


def test_other_authors_and_other_workspaces_get_404(client, ws, author, sender):
    other = make_user("other@example.com", workspace=ws, role="author")
    theirs = make_campaign(ws, other, sender=sender, status="Done", moderation="approved")
    foreign_ws = make_workspace("beta")
    foreign = make_campaign(foreign_ws, make_user(workspace=foreign_ws))
    client.login("author@example.com")
    for cid in (theirs.id, foreign.id):
        assert client.get(f"/w/acme/campaigns/{cid}").status_code == 404
        assert client.post(f"/w/acme/campaigns/{cid}/archive").status_code == 404
        assert client.post(f"/w/acme/campaigns/{cid}/clone").status_code == 404
        assert client.get(f"/w/acme/campaigns/{cid}/restore-owner").status_code == 404
    assert _campaign(theirs.id).archived_at is None


def test_admin_acts_on_any_campaign(client, ws, author, sender):
    make_user("admin@example.com", workspace=ws, role="admin")
    campaign = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved")
    client.login("admin@example.com")
    assert "pause" in _buttons(client, campaign.id)
    client.post(f"/w/acme/campaigns/{campaign.id}/pause")
    assert _campaign(campaign.id).status == "Paused"
