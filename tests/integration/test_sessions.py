"""Signed-in sessions: listed with device, IP and last seen; one or all can be signed out; the
session id changes at sign-in; password, second-factor and role changes end other sessions."""
import re

from extensions import db
from models import UserSession
from services import members
from tests.conftest import PASSWORD
from tests.factories import make_user, make_workspace


def test_the_sessions_page_lists_each_browser(app, client):
    make_user("author@example.com", workspace=make_workspace("ops"))
    other = app.test_client()
    other.environ_base["HTTP_USER_AGENT"] = "PhoneBrowser/9.1"
    other.login("author@example.com")
    client.login("author@example.com")
    page = client.get("/account/sessions").get_data(as_text=True)
    assert "PhoneBrowser/9.1" in page and "(this browser)" in page
    assert len(re.findall(r'/account/sessions/\d+/revoke', page)) == 1  # the other one; this one uses /logout


def test_sign_in_rotates_the_session_id(app, client):
    make_user("author@example.com", workspace=make_workspace("ops"))
    client.login("author@example.com")
    first = {r.sid_digest for r in db.session.execute(db.select(UserSession)).scalars()}
    client.post("/logout")
    client.login("author@example.com")
    rows = db.session.execute(db.select(UserSession)).scalars().all()
    assert len(rows) == 2 and rows[0].revoked_at is not None, "sign-out ends the row"
    assert {r.sid_digest for r in rows} - first, "a new id at the new sign-in"


def test_revoking_one_session_signs_that_browser_out_and_is_audited(app, client, audit_events):
    make_user("author@example.com", workspace=make_workspace("ops"))
    other = app.test_client()
    other.login("author@example.com")
    client.login("author@example.com")
    other_row = db.session.execute(db.select(UserSession).order_by(UserSession.id)).scalars().first()
    assert client.post(f"/account/sessions/{other_row.id}/revoke").status_code == 302
    assert other.get("/account").status_code == 302, "the revoked browser is signed out"
    assert client.get("/account").status_code == 200
    assert audit_events(action="auth.session_revoked")[0]["object_id"] == str(other_row.id)


def test_a_session_of_another_user_cannot_be_revoked(app, client):
    ws = make_workspace("ops")
    make_user("author@example.com", workspace=ws)
    make_user("victim@example.com", workspace=ws)
    victim = app.test_client()
    victim.login("victim@example.com")
    row = db.session.execute(db.select(UserSession)).scalars().one()
    client.login("author@example.com")
    assert client.post(f"/account/sessions/{row.id}/revoke").status_code == 404
    assert victim.get("/account").status_code == 200


def test_sign_out_everywhere_ends_every_session(app, client, audit_events):
    make_user("author@example.com", workspace=make_workspace("ops"))
    other = app.test_client()
    other.login("author@example.com")
    client.login("author@example.com")
    response = client.post("/account/sessions/revoke-all")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert other.get("/account").status_code == 302
    assert client.get("/account").status_code == 302
    assert audit_events(action="auth.sessions_revoked_all")[0]["after"] == {"sessions": 2}


def test_password_change_ends_other_sessions_and_keeps_this_one(app, client):
    make_user("author@example.com", workspace=make_workspace("ops"))
    other = app.test_client()
    other.login("author@example.com")
    client.login("author@example.com")
    new = "an entirely new passphrase"
    assert client.post("/account", data={"current_password": PASSWORD, "new_password": new,
                                         "confirm": new}).status_code == 302
    assert client.get("/account").status_code == 200
    assert other.get("/account").status_code == 302


def test_role_change_ends_that_members_sessions(app, client):
    ws = make_workspace("ops")
    make_user("admin@example.com", workspace=ws, role="admin")
    author = make_user("author@example.com", workspace=ws)
    browser = app.test_client()
    browser.login("author@example.com")
    assert browser.get(f"/w/{ws.slug}/").status_code == 200
    members.change_member(ws, author.membership_in(ws.id).id, role="moderator", is_moderator=False,
                          can_view_numbers=False)
    assert browser.get(f"/w/{ws.slug}/").status_code == 302, "signed out: the new role needs a new session"
    assert browser.login("author@example.com").status_code == 302
    assert browser.get(f"/w/{ws.slug}/").status_code == 200


def test_a_stolen_cookie_of_a_revoked_session_does_not_come_back(app, client):
    make_user("author@example.com", workspace=make_workspace("ops"))
    client.login("author@example.com")
    cookie = next(c for c in client._cookies.values() if c.key == "mc_session").value
    client.post("/account/sessions/revoke-all")
    thief = app.test_client()
    thief.set_cookie("mc_session", cookie, domain="mc.test")
    assert thief.get("/account").status_code == 302


def test_changing_ones_own_role_keeps_this_session_under_a_new_id(app, client):
    ws = make_workspace("ops")
    make_user("boss@example.com", workspace=ws, role="admin")
    me = make_user("admin@example.com", workspace=ws, role="admin")
    other = app.test_client()
    other.login("admin@example.com")
    client.login("admin@example.com")
    before = {r.sid_digest for r in db.session.execute(db.select(UserSession).filter_by(revoked_at=None)).scalars()}
    response = client.post(f"/w/{ws.slug}/members/{me.membership_in(ws.id).id}",
                           data={f"m{me.membership_in(ws.id).id}-role": "author"})
    assert response.status_code == 302
    assert client.get("/account").status_code == 200, "this browser stays signed in"
    assert other.get("/account").status_code == 302, "the other browser is signed out"
    active = {r.sid_digest for r in db.session.execute(db.select(UserSession).filter_by(revoked_at=None)).scalars()}
    assert len(active) == 1 and not active & before, "the surviving session got a new id"
