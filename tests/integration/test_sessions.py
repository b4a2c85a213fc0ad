"""Signed-in sessions: listed with device, IP and last seen; one or all can be signed out; the
session id changes at sign-in; password, second-factor and role changes end other sessions."""
import re
import threading

import pytest
import requests
from werkzeug.serving import make_server

from extensions import db
from models import UserSession
from services import accounts, members, passwords
from tests.conftest import CSRF_RE, PASSWORD
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


# --- a session belongs to the browser that signed in ---------------------------------------------

def _session_cookie(client):
    return next(c for c in client._cookies.values() if c.key == "mc_session").value


def test_a_cookie_replayed_from_another_browser_ends_the_session_for_both(app, client, audit_events):
    make_user("author@example.com", workspace=make_workspace("ops"))
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    client.login("author@example.com")
    assert client.get("/account").status_code == 200
    thief = app.test_client()
    thief.environ_base["HTTP_USER_AGENT"] = "curl/8.5.0"
    thief.set_cookie("mc_session", _session_cookie(client), domain="mc.test")

    stolen = thief.get("/account")

    assert stolen.status_code == 302 and stolen.headers["Location"].endswith("/login")
    assert thief.get("/w/ops/").status_code == 302, "the replaying browser is signed out"
    original = client.get("/account")
    assert original.status_code == 302 and original.headers["Location"].endswith("/login"), \
        "the session is dead: the browser that signed in must sign in again"
    row = db.session.execute(db.select(UserSession)).scalars().one()
    assert row.revoked_at is not None
    event = audit_events(action="auth.session_replayed")[0]
    assert event["object_id"] == str(row.id) and event["actor_email"] == "author@example.com"
    assert event["before"]["user_agent"].endswith("Firefox/128.0") and event["after"]["user_agent"] == "curl/8.5.0"
    assert client.login("author@example.com").status_code == 302 and client.get("/account").status_code == 200


def test_a_replayed_cookie_cannot_post_either(app, client):
    """The replay is refused before the view runs: a state-changing form (with the session's own CSRF
    token, stolen with the cookie) changes nothing."""
    make_user("author@example.com", workspace=make_workspace("ops"))
    client.login("author@example.com")
    thief = app.test_client()
    thief.environ_base["HTTP_USER_AGENT"] = "Evil/1.0"
    thief.set_cookie("mc_session", _session_cookie(client), domain="mc.test")
    new = "an entirely new passphrase"

    response = thief.post("/account", data={"current_password": PASSWORD, "new_password": new, "confirm": new,
                                            "csrf_token": client.csrf_token}, csrf=False)

    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    db.session.expire_all()
    stored = accounts.find_user("author@example.com").password_hash
    assert passwords.verify_password(stored, PASSWORD), "the password did not change"


def test_the_same_browser_keeps_its_session_and_the_idle_timeout_is_unchanged(app, client):
    make_user("author@example.com", workspace=make_workspace("ops"))
    client.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 Firefox/128.0"
    client.login("author@example.com")
    for _ in range(3):
        assert client.get("/account").status_code == 200
    assert app.config["PERMANENT_SESSION_LIFETIME"].total_seconds() == app.config["IDLE_TIMEOUT_MINUTES"] * 60
    assert db.session.execute(db.select(UserSession)).scalars().one().revoked_at is None


@pytest.fixture
def server(app):
    """The app served by a real threaded HTTP server on a free port."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)


def test_twenty_replays_at_once_from_other_browsers_end_the_session_once(server, audit_events):
    make_user("author@example.com", workspace=make_workspace("ops"))
    browser = requests.Session()
    browser.headers["User-Agent"] = "Mozilla/5.0 Firefox/128.0"
    csrf = CSRF_RE.search(browser.get(f"{server}/login", timeout=10).text).group(1)
    signed_in = browser.post(f"{server}/login", data={"email": "author@example.com", "password": PASSWORD,
                                                       "csrf_token": csrf}, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 302
    assert browser.get(f"{server}/account", allow_redirects=False, timeout=10).status_code == 200
    cookie = browser.cookies.get("mc_session")
    barrier, results = threading.Barrier(20), []

    def replay(n):
        barrier.wait()
        response = requests.get(f"{server}/account", cookies={"mc_session": cookie}, allow_redirects=False,
                                headers={"User-Agent": f"Thief/{n}"}, timeout=30)
        results.append(response.status_code)

    threads = [threading.Thread(target=replay, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert results == [302] * 20, "no replay got the page"
    assert len(audit_events(action="auth.session_replayed")) == 1, "ended (and audited) once"
    assert browser.get(f"{server}/account", allow_redirects=False, timeout=10).status_code == 302
    db.session.expire_all()
    assert db.session.execute(db.select(UserSession)).scalars().one().revoked_at is not None
