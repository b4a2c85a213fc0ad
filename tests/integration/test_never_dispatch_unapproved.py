"""Nothing reaches Sending without a moderator's approval — every path we can think of is tried:
direct start (page and API), resume, approving one's own campaign under four-eyes (page, queue,
API, service), smuggled values, clone/restore/resubmit carrying an old approval, and races."""
import threading

import pytest
from sqlalchemy import text

from extensions import db
from models import Campaign
from services import campaigns as lifecycle
from services import tokens
from services.errors import Conflict, Forbidden
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def ws():
    return make_workspace("acme")


@pytest.fixture
def author(ws):
    return make_user("author@example.com", workspace=ws, role="author", is_moderator=True)


@pytest.fixture
def moderator(ws):
    return make_user("mod@example.com", workspace=ws, role="moderator")


@pytest.fixture
def pending(ws, author):
    return make_campaign(ws, author, sender=make_sender(ws), status="Pending", moderation="awaiting", recipients=2)


def _status(campaign_id):
    db.session.expire_all()
    row = db.session.get(Campaign, campaign_id)
    return row.status, row.moderation


def _token(user, ws):
    return tokens.create_token(user, ws, "test")[1]


def _apply_on_stale_view(campaign_id, event, actor):
    """Decide on the state a screen showed before another decision landed: the in-memory object says
    Pending/awaiting (never flushed), the row says otherwise — the conditional UPDATE must notice."""
    stale = db.session.get(Campaign, campaign_id)
    with db.session.no_autoflush:
        stale.status, stale.moderation = "Pending", "awaiting"
        return lifecycle.apply(stale, event, actor=actor)


def test_start_from_the_page_is_refused(client, pending):
    client.login("author@example.com")
    page = client.post(f"/w/acme/campaigns/{pending.id}/start", follow_redirects=True)
    assert "needs a moderator" in page.get_data(as_text=True)
    assert _status(pending.id) == ("Pending", "awaiting")


def test_start_button_is_not_offered(client, pending):
    client.login("author@example.com")
    html = client.get(f"/w/acme/campaigns/{pending.id}").get_data(as_text=True)
    assert f"/campaigns/{pending.id}/start" not in html


def test_start_through_the_api_is_refused(client, ws, author):
    campaign = make_campaign(ws, author, sender=make_sender(ws), status="Pending", moderation="awaiting",
                             recipients=1)
    response = client.post(f"/api/v1/campaigns/{campaign.id}/start",
                           headers={"Authorization": f"Bearer {_token(author, ws)}"})
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "illegal_transition"
    assert _status(campaign.id) == ("Pending", "awaiting")


@pytest.mark.parametrize("status", ["Sending", "Paused"])
@pytest.mark.parametrize("moderation", ["awaiting", "rejected"])
def test_the_database_refuses_an_unapproved_campaign_in_sending_or_paused(ws, author, status, moderation):
    """Whatever writes the row (a bug, a hand-made UPDATE), the database check refuses it."""
    from sqlalchemy.exc import IntegrityError

    campaign = make_campaign(ws, author, sender=make_sender(ws), status="Pending", moderation="awaiting")
    with pytest.raises(IntegrityError):
        db.session.execute(text("UPDATE campaigns SET status = :s, moderation = :m WHERE id = :id"),
                           {"s": status, "m": moderation, "id": campaign.id})
        db.session.flush()
    db.session.rollback()
    assert _status(campaign.id) == ("Pending", "awaiting")


def test_approving_ones_own_campaign_is_refused_everywhere(client, ws, author, pending):
    membership = author.membership_in(ws.id)
    with pytest.raises(Forbidden, match="Four-eyes"):
        lifecycle.approve(ws, pending.id, membership, author)
    client.login("author@example.com")
    client.post(f"/w/acme/campaigns/{pending.id}/approve")
    client.post(f"/w/acme/moderation/campaigns/{pending.id}/approve")
    api = client.post(f"/api/v1/moderation/campaign/{pending.id}/approve",
                      headers={"Authorization": f"Bearer {_token(author, ws)}"})
    assert api.status_code == 403
    html = client.get(f"/w/acme/campaigns/{pending.id}").get_data(as_text=True)
    assert f"/campaigns/{pending.id}/approve" not in html
    assert _status(pending.id) == ("Pending", "awaiting")


def test_without_four_eyes_the_author_moderator_may_approve(ws, author, pending):
    ws.four_eyes = False
    db.session.commit()
    assert lifecycle.approve(ws, pending.id, author.membership_in(ws.id), author).status == "Sending"


def test_two_moderators_approving_the_same_campaign(ws, pending, moderator):
    other = make_user("mod2@example.com", workspace=ws, role="moderator")
    lifecycle.approve(ws, pending.id, moderator.membership_in(ws.id), moderator)
    # The second moderator decided on what they saw before the first decision landed.
    with pytest.raises(Conflict) as err:
        _apply_on_stale_view(pending.id, "approve", other)
    assert err.value.code == "already_decided"
    assert _status(pending.id) == ("Sending", "approved")


def test_approval_racing_a_rejection_does_not_send(ws, pending, moderator):
    other = make_user("mod2@example.com", workspace=ws, role="moderator")
    lifecycle.reject(ws, pending.id, other.membership_in(ws.id), other, "Wrong sender")
    with pytest.raises(Conflict):
        _apply_on_stale_view(pending.id, "approve", moderator)
    assert _status(pending.id) == ("New", "rejected")


def test_approval_racing_a_cancel_does_not_send(ws, author, pending, moderator):
    lifecycle.perform(ws, pending.id, "cancel", author.membership_in(ws.id), author)
    with pytest.raises(Conflict):
        _apply_on_stale_view(pending.id, "approve", moderator)
    assert _status(pending.id) == ("Cancelled", "awaiting")


def test_concurrent_approvals_in_threads_produce_one_decision(app, ws, pending):
    mods = [make_user(f"m{i}@example.com", workspace=ws, role="moderator") for i in range(4)]
    results, barrier = [], threading.Barrier(len(mods))

    def decide(user_id):
        with app.app_context():
            from models import User, Workspace

            user, workspace = db.session.get(User, user_id), db.session.get(Workspace, ws.id)
            barrier.wait()
            try:
                lifecycle.approve(workspace, pending.id, user.membership_in(workspace.id), user)
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
    assert _status(pending.id) == ("Sending", "approved")


def test_resubmitting_a_rejected_campaign_needs_a_new_approval(ws, author, pending, moderator):
    lifecycle.reject(ws, pending.id, moderator.membership_in(ws.id), moderator, "Fix the text")
    resubmitted = lifecycle.perform(ws, pending.id, "submit", author.membership_in(ws.id), author)
    assert (resubmitted.status, resubmitted.moderation) == ("Pending", "awaiting")
    assert resubmitted.moderated_by_id is None
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.perform(ws, pending.id, "start", author.membership_in(ws.id), author)


def test_a_clone_of_an_approved_campaign_is_not_approved(ws, author):
    sending = make_campaign(ws, author, sender=make_sender(ws), status="Sending", moderation="approved",
                            recipients=1)
    copy = lifecycle.perform(ws, sending.id, "clone", author.membership_in(ws.id), author)
    assert (copy.status, copy.moderation, copy.recipients_count) == ("New", "awaiting", 0)
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.apply(copy, "start")


def test_restore_keeps_the_status_it_was_archived_in(ws, author):
    done = make_campaign(ws, author, sender=make_sender(ws), status="New", moderation="awaiting", archived=True)
    restored = lifecycle.perform(ws, done.id, "restore", author.membership_in(ws.id), author)
    assert (restored.status, restored.archived_at) == ("New", None)


def test_system_events_cannot_be_posted_by_people(client, pending):
    client.login("author@example.com")
    for action in ("build_finished", "fail", "expire", "approve_and_start"):
        assert client.post(f"/w/acme/campaigns/{pending.id}/{action}").status_code == 404
    assert _status(pending.id) == ("Pending", "awaiting")
