"""Invitations: an admin invites an address; the single-use link (stored hashed) creates the
account or adds the membership; revoked, expired and used links are refused; mail goes to a
real SMTP server (aiosmtpd) when MAIL_SERVER is set, otherwise to the outbox page."""
import email
import email.policy
import hashlib
import html
import re
import socket
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text, update

from extensions import db
from models import Invitation, OutboxMail, utcnow
from services import accounts
from tests.conftest import CSRF_RE
from tests.factories import PASSWORD, make_user, make_workspace


def page(response):
    return html.unescape(response.get_data(as_text=True))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LINK_RE = re.compile(r"https?://[^\s/]+(/invite/(inv_[A-Za-z0-9_-]+))")
NEW_PASSWORD = "seven purple tractors sing"


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("boss@example.com", workspace=ws, role="admin")
    return ws


@pytest.fixture
def admin(client, acme):
    client.login("boss@example.com")
    return client


def invite(admin, email, role="author"):
    return admin.post("/w/acme/invitations", data={"email": email, "role": role})


def link_in_outbox(admin, email):
    """The accept path from the newest mail to `email` on the workspace's outbox page."""
    outbox = page(admin.get("/w/acme/outbox"))
    assert f"To {email}" in outbox
    match = LINK_RE.search(outbox)
    assert match, "the outbox mail carries no invitation link"
    return match.group(1)


def invitation_row(email):
    db.session.expire_all()
    return db.session.execute(db.select(Invitation).filter_by(email=email)).scalar_one_or_none()


def accept_as_new_user(browser, path, password=NEW_PASSWORD, name="Nina New"):
    """Fill in the form on the invitation page (a refused link has no form: post anyway)."""
    match = CSRF_RE.search(browser.get(path).get_data(as_text=True))
    browser.csrf_token = match.group(1) if match else browser.refresh_csrf()
    return browser.post(path, data={"name": name, "password": password, "confirm": password})


def test_admin_invites_and_the_outbox_shows_the_mail_with_its_link(admin, acme, audit_events):
    response = invite(admin, "nina@example.com", "moderator")

    assert response.status_code == 302
    assert "Invitation for nina@example.com sent to the outbox" in page(admin.get("/w/acme/members"))
    outbox = page(admin.get("/w/acme/outbox"))
    assert "You are invited to Acme Ltd on Message Center" in outbox
    assert "boss@example.com invited you" in outbox and "as moderator" in outbox
    assert link_in_outbox(admin, "nina@example.com").startswith("/invite/inv_")
    row = invitation_row("nina@example.com")
    assert row.state == "pending" and row.role == "moderator"
    event = audit_events(action="invitations.created")[0]
    assert event["actor_email"] == "boss@example.com" and event["workspace_id"] == acme.id
    assert event["object_id"] == str(row.id)
    assert event["after"] == {"email": "nina@example.com", "role": "moderator"}


def test_the_link_token_is_stored_only_as_a_hash(admin):
    invite(admin, "nina@example.com")
    token = link_in_outbox(admin, "nina@example.com").rsplit("/", 1)[1]

    row = invitation_row("nina@example.com")

    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM invitations")).mappings().one()
    assert not any(token in str(value) for value in stored.values())


def test_new_user_accepts_creates_account_and_is_signed_in(admin, app, acme, audit_events):
    invite(admin, "Nina@Example.com", "moderator")
    path = link_in_outbox(admin, "nina@example.com")
    invitee = app.test_client()

    form = invitee.get(path)
    assert form.status_code == 200
    assert "Join Acme Ltd" in page(form) and "nina@example.com" in page(form)
    response = accept_as_new_user(invitee, path)

    assert response.status_code == 302 and response.headers["Location"].endswith("/w/acme/")
    overview = invitee.get("/w/acme/")
    assert overview.status_code == 200
    assert "Welcome to Acme Ltd." in page(overview)
    user = accounts.find_user("nina@example.com")
    assert user.name == "Nina New"
    assert user.membership_in(acme.id).role == "moderator"
    assert invitation_row("nina@example.com").state == "accepted"
    accepted = audit_events(action="invitations.accepted")[0]
    assert accepted["actor_email"] == "nina@example.com"
    assert accepted["before"] == {"state": "pending"} and accepted["after"] == {"state": "accepted"}
    added = audit_events(action="members.added")[0]
    assert added["after"]["user"] == "nina@example.com" and added["after"]["role"] == "moderator"
    # The new password is the one chosen on the form.
    invitee.post("/logout")
    assert app.test_client().login("nina@example.com", NEW_PASSWORD).status_code == 302


def test_the_link_works_once(admin, app):
    invite(admin, "nina@example.com")
    path = link_in_outbox(admin, "nina@example.com")
    accept_as_new_user(app.test_client(), path)

    again = app.test_client()
    second_view = again.get(path)
    second_post = again.post(path, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})

    for response in (second_view, second_post):
        assert response.status_code == 409
        assert "This invitation is accepted and can no longer be used." in page(response)
    assert len(accounts.find_user("nina@example.com").memberships) == 1


def test_a_revoked_link_is_refused(admin, app, audit_events):
    invite(admin, "nina@example.com")
    path = link_in_outbox(admin, "nina@example.com")
    row = invitation_row("nina@example.com")

    admin.post(f"/w/acme/invitations/{row.id}/revoke")

    assert "Invitation revoked; its link no longer works." in page(admin.get("/w/acme/members"))
    response = app.test_client().get(path)
    assert response.status_code == 409
    assert "This invitation is revoked and can no longer be used." in page(response)
    assert accept_as_new_user(app.test_client(), path).status_code == 409
    assert accounts.find_user("nina@example.com") is None
    event = audit_events(action="invitations.revoked")[0]
    assert event["before"] == {"state": "pending"} and event["after"] == {"state": "revoked"}


def test_an_expired_link_is_refused(admin, app):
    invite(admin, "nina@example.com")
    path = link_in_outbox(admin, "nina@example.com")
    db.session.execute(update(Invitation).where(Invitation.email == "nina@example.com")
                       .values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    invitee = app.test_client()
    response = invitee.get(path)

    assert response.status_code == 409
    assert "This invitation is expired and can no longer be used." in page(response)
    assert accept_as_new_user(invitee, path).status_code == 409
    assert accounts.find_user("nina@example.com") is None
    assert ">expired<" in page(admin.get("/w/acme/members"))


def test_an_unknown_link_is_404_not_500(app):
    response = app.test_client().get("/invite/inv_not-a-real-token")

    assert response.status_code == 404
    assert "This invitation link is not valid." in page(response)


def test_weak_password_on_accept_shows_the_policy_and_creates_nothing(admin, app, acme, audit_events):
    invite(admin, "nina@example.com")
    path = link_in_outbox(admin, "nina@example.com")

    response = accept_as_new_user(app.test_client(), path, password="short one")

    assert response.status_code == 200
    assert "Use at least 15 characters (you typed 9)." in page(response)
    assert accounts.find_user("nina@example.com") is None
    assert invitation_row("nina@example.com").state == "pending"
    assert audit_events(action="invitations.accepted") == []


def test_existing_account_must_sign_in_as_the_invited_address(admin, app, acme, audit_events):
    make_user("olga@example.com")  # has an account, not in Acme
    make_user("someone.else@example.com")
    invite(admin, "olga@example.com", "author")
    path = link_in_outbox(admin, "olga@example.com")

    anonymous = app.test_client()
    view = page(anonymous.get(path))
    assert "Sign in as olga@example.com" in view
    assert 'name="password"' not in view  # no second account for the same address

    wrong_person = app.test_client()
    wrong_person.login("someone.else@example.com")
    wrong_person.csrf_token = CSRF_RE.search(wrong_person.get(path).get_data(as_text=True)).group(1)
    refused = wrong_person.post(path)
    assert "Sign in as olga@example.com to accept this invitation." in page(refused)
    assert accounts.find_user("olga@example.com").membership_in(acme.id) is None

    olga = app.test_client()
    olga.refresh_csrf()
    signed_in = olga.post(f"/login?next={path}", data={"email": "olga@example.com", "password": PASSWORD})
    assert signed_in.headers["Location"].endswith(path)
    olga.csrf_token = CSRF_RE.search(olga.get(path).get_data(as_text=True)).group(1)
    assert "Accept and join" in page(olga.get(path))
    accepted = olga.post(path)

    assert accepted.status_code == 302
    assert olga.get("/w/acme/").status_code == 200
    db.session.expire_all()
    assert accounts.find_user("olga@example.com").membership_in(acme.id).role == "author"
    assert audit_events(action="invitations.accepted")[0]["actor_email"] == "olga@example.com"


def test_signed_in_as_someone_else_no_account_is_created_for_the_invited_address(admin, app, acme):
    make_user("someone.else@example.com")
    invite(admin, "nina@example.com")
    path = link_in_outbox(admin, "nina@example.com")
    browser = app.test_client()
    browser.login("someone.else@example.com")

    response = accept_as_new_user(browser, path)

    assert "You are signed in as someone.else@example.com. Sign out, then open the link again" in page(response)
    assert accounts.find_user("nina@example.com") is None
    assert invitation_row("nina@example.com").state == "pending"


def test_inviting_an_existing_member_is_refused(admin, acme):
    make_user("alice@example.com", workspace=acme, role="author")

    invite(admin, "alice@example.com")

    assert "alice@example.com is already a member of this workspace." in page(admin.get("/w/acme/members"))
    assert invitation_row("alice@example.com") is None
    assert "The outbox is empty." in page(admin.get("/w/acme/outbox"))


def test_a_second_pending_invitation_for_the_same_address_is_refused(admin):
    invite(admin, "nina@example.com")

    invite(admin, "nina@example.com", "admin")

    assert "nina@example.com already has a pending invitation" in page(admin.get("/w/acme/members"))
    assert invitation_row("nina@example.com").role == "author"


def test_only_admins_invite(client, acme):
    make_user("alice@example.com", workspace=acme, role="author")
    client.login("alice@example.com")

    assert invite(client, "nina@example.com").status_code == 403
    assert invitation_row("nina@example.com") is None


class Collector:
    """aiosmtpd handler that keeps every message it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(app, monkeypatch):
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", controller.port)
    yield collector
    controller.stop()


def test_with_an_smtp_server_the_invitation_is_mailed(admin, app, smtp_server, audit_events):
    invite(admin, "nina@example.com", "admin")

    assert "Invitation for nina@example.com sent by e-mail." in page(admin.get("/w/acme/members"))
    assert len(smtp_server.messages) == 1
    envelope = smtp_server.messages[0]
    assert envelope.rcpt_tos == ["nina@example.com"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == "You are invited to Acme Ltd on Message Center"
    assert mail["From"] == app.config["MAIL_FROM"]
    path = LINK_RE.search(mail.get_content()).group(1)
    assert "The outbox is empty." in page(admin.get("/w/acme/outbox"))
    assert db.session.scalar(db.select(db.func.count(OutboxMail.id))) == 0
    # The mailed link works.
    assert accept_as_new_user(app.test_client(), path).status_code == 302
    assert accounts.find_user("nina@example.com").membership_in(invitation_row("nina@example.com").workspace_id)


def test_an_unreachable_smtp_server_is_reported_and_leaves_nothing(admin, app, monkeypatch, audit_events):
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", free_port())  # nothing listens there

    response = invite(admin, "nina@example.com")

    assert response.status_code == 302
    members_page = page(admin.get("/w/acme/members"))
    assert "The invitation for nina@example.com was not sent" in members_page
    assert "Check MAIL_SERVER and MAIL_PORT" in members_page
    assert invitation_row("nina@example.com") is None
    assert audit_events(action="invitations.created") == []
    # Once the server is back the admin simply invites again.
    monkeypatch.setitem(app.config, "MAIL_SERVER", None)
    invite(admin, "nina@example.com")
    assert invitation_row("nina@example.com").state == "pending"
