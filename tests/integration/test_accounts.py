"""Accounts: signing in and out, the database-backed lockout, password changes that end other
sessions, the idle timeout of the session cookie, inactive accounts."""
import html
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import update

from app import create_app
from extensions import db
from models import User, utcnow
from services import accounts
from tests.factories import PASSWORD, make_user, make_workspace

REFUSED = accounts.SIGN_IN_REFUSED
WRONG = "not the right password at all"


def page(response):
    return html.unescape(response.get_data(as_text=True))


def stored(email):
    """The user row as committed in the database (not what this session remembers)."""
    db.session.expire_all()
    return accounts.find_user(email)


def actions(audit_events, prefix="auth."):
    return [e["action"] for e in reversed(audit_events(action=prefix))]


@pytest.fixture
def other_process(app):
    """A second web process: its own app object, engine and session, same database and audit store."""
    config = {key: app.config[key] for key in ("TESTING", "MC_DATA_DIR", "SECRET_KEY", "SERVER_NAME",
                                               "SQLALCHEMY_DATABASE_URI", "AUDIT_EMBEDDED_DIR")}
    second = create_app(config)
    second.test_client_class = app.test_client_class
    second.extensions["mc_audit"] = app.extensions["mc_audit"]
    yield second
    with second.app_context():
        db.engine.dispose()


# --- signing in and out -------------------------------------------------------------------------

def test_sign_in_opens_the_workspace_and_sign_out_ends_the_session(client, audit_events):
    make_user("op@example.com", workspace=make_workspace("acme"))

    response = client.login("OP@example.com ", PASSWORD)  # e-mail is case- and space-insensitive

    assert response.status_code == 302
    assert client.get("/").headers["Location"].endswith("/w/acme/")
    assert "op@example.com" in page(client.get("/account"))
    assert stored("op@example.com").last_login_at is not None

    response = client.post("/logout")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "You are signed out." in page(client.get("/login"))
    assert client.get("/account").status_code == 302
    assert actions(audit_events) == ["auth.login", "auth.logout"]
    login = audit_events(action="auth.login")[0]
    assert login["actor_email"] == "op@example.com" and login["request_id"]


def test_sign_in_ignores_a_next_target_on_another_host(client):
    make_user("op@example.com", workspace=make_workspace("acme"))

    response = client.post("/login?next=//evil.example/steal", data={"email": "op@example.com",
                                                                    "password": PASSWORD})

    assert response.status_code == 302
    assert "evil.example" not in response.headers["Location"]


def test_unknown_user_wrong_password_and_locked_account_look_the_same(client, app, audit_events):
    make_user("op@example.com")
    unknown = client.login("nobody@example.com", PASSWORD)
    wrong = client.login("op@example.com", WRONG)
    db.session.execute(update(User).where(User.email == "op@example.com")
                       .values(locked_until=utcnow() + timedelta(seconds=60)))
    db.session.commit()
    locked = client.login("op@example.com", PASSWORD)

    for response in (unknown, wrong, locked):
        assert response.status_code == 401
        assert REFUSED in page(response)
        assert "locked until" not in page(response).lower()
    assert [e["note"] for e in reversed(audit_events(action="auth.login_failed"))] == [
        "unknown account", "wrong password"]
    # Refused while locked: recorded, but not a verification (the password was not looked at).
    assert [e["note"] for e in audit_events(action="auth.login_refused")] == ["account locked"]
    assert audit_events(action="auth.login_failed")[-1]["actor_email"] == "nobody@example.com"


def test_third_wrong_password_locks_the_account_and_the_right_one_is_refused_meanwhile(client, app, audit_events):
    make_user("op@example.com")

    for attempt in (1, 2):
        assert client.login("op@example.com", WRONG).status_code == 401
        assert stored("op@example.com").failed_logins == attempt
        assert stored("op@example.com").locked_until is None

    before = utcnow()
    assert client.login("op@example.com", WRONG).status_code == 401
    row = stored("op@example.com")
    assert row.locked_until is not None
    assert timedelta(seconds=55) < row.locked_until - before <= timedelta(seconds=61)

    response = client.login("op@example.com", PASSWORD)
    assert response.status_code == 401
    assert REFUSED in page(response)
    assert client.get("/account").status_code == 302  # not signed in

    assert actions(audit_events) == ["auth.login_failed", "auth.login_failed", "auth.locked",
                                     "auth.login_failed", "auth.login_refused"]
    locked = audit_events(action="auth.locked")[0]
    assert locked["object_type"] == "user" and locked["object_id"] == str(row.id)
    assert locked["after"]["locked_until"].startswith(row.locked_until.isoformat()[:19])
    notes = [e["note"] for e in reversed(audit_events(action="auth.login_failed"))]
    assert notes[2] == "wrong password; account locked for 60 s"
    assert audit_events(action="auth.login_refused")[0]["note"] == "account locked"


def test_lockout_duration_comes_from_config_and_ends(client, app, monkeypatch, audit_events):
    monkeypatch.setitem(app.config, "LOCKOUT_SECONDS", 5)
    make_user("op@example.com")
    for _ in range(3):
        client.login("op@example.com", WRONG)
    row = stored("op@example.com")
    assert row.locked_until - utcnow() <= timedelta(seconds=5)
    assert client.login("op@example.com", PASSWORD).status_code == 401

    # Five seconds later (moved in the database rather than slept):
    db.session.execute(update(User).where(User.id == row.id).values(locked_until=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = client.login("op@example.com", PASSWORD)

    assert response.status_code == 302
    row = stored("op@example.com")
    assert row.failed_logins == 0 and row.locked_until is None
    assert audit_events(action="auth.")[0]["action"] == "auth.login"


def test_lockout_is_shared_by_every_web_process(client, app, other_process):
    make_user("op@example.com")
    for _ in range(3):
        client.login("op@example.com", WRONG)

    with other_process.test_client() as elsewhere:
        response = elsewhere.login("op@example.com", PASSWORD)
        assert response.status_code == 401
        assert REFUSED in page(response)

    browser_two = app.test_client()
    assert browser_two.login("op@example.com", PASSWORD).status_code == 401


def test_failures_counted_in_two_processes_add_up(client, app, other_process):
    make_user("op@example.com")
    client.login("op@example.com", WRONG)
    with other_process.test_client() as elsewhere:
        elsewhere.login("op@example.com", WRONG)
    assert stored("op@example.com").failed_logins == 2
    assert stored("op@example.com").locked_until is None

    app.test_client().login("op@example.com", WRONG)

    assert stored("op@example.com").locked_until is not None


def test_a_successful_sign_in_resets_the_count(client, app):
    make_user("op@example.com")
    client.login("op@example.com", WRONG)
    client.login("op@example.com", WRONG)
    assert client.login("op@example.com", PASSWORD).status_code == 302
    assert stored("op@example.com").failed_logins == 0
    client.post("/logout")

    client.login("op@example.com", WRONG)
    client.login("op@example.com", WRONG)

    assert stored("op@example.com").locked_until is None
    assert client.login("op@example.com", PASSWORD).status_code == 302


def test_inactive_account_is_refused_with_the_same_message(client, audit_events):
    user = make_user("gone@example.com", workspace=make_workspace("acme"))
    user.is_active_account = False
    db.session.commit()

    response = client.login("gone@example.com", PASSWORD)

    assert response.status_code == 401
    assert REFUSED in page(response)
    assert client.get("/w/acme/").status_code == 302
    assert audit_events(action="auth.login_failed")[0]["note"] == "inactive account"
    assert "auth.login" not in actions(audit_events)


def test_deactivating_an_account_ends_its_open_session(client):
    user = make_user("gone@example.com", workspace=make_workspace("acme"))
    client.login("gone@example.com")
    assert client.get("/w/acme/").status_code == 200

    user.is_active_account = False
    db.session.commit()

    assert client.get("/w/acme/").status_code == 302


# --- password change ----------------------------------------------------------------------------

def change(client, current, new, confirm=None):
    return client.post("/account", data={"current_password": current, "new_password": new,
                                         "confirm": new if confirm is None else confirm})


def test_password_policy_messages_on_change(client, audit_events):
    user = make_user("op@example.com")
    old_hash = user.password_hash
    client.login("op@example.com")

    for new, message in (
        ("ten chars!", "Use at least 15 characters (you typed 10)."),
        ("1q2w3e4r5t6y7u8i9o0p", "This password is on the list of commonly used passwords; choose another."),
        ("w" * 129, "128 characters"),
        ("op@example.com", "Do not use your e-mail address as your password."),
    ):
        response = change(client, PASSWORD, new)

        assert response.status_code == 200
        assert message in page(response), new

    assert stored("op@example.com").password_hash == old_hash
    assert audit_events(action="auth.password_changed") == []


def test_password_change_needs_the_current_password(client, audit_events):
    user = make_user("op@example.com")
    client.login("op@example.com")

    response = change(client, "not my current password", "a brand new long passphrase")

    assert "Your current password is not correct." in page(response)
    assert stored("op@example.com").password_hash == user.password_hash
    assert audit_events(action="auth.password_changed") == []


def test_password_change_signs_out_other_sessions_but_keeps_this_one(client, app, audit_events):
    user = make_user("op@example.com", workspace=make_workspace("acme"))
    laptop = app.test_client()
    laptop.login("op@example.com")
    client.login("op@example.com")
    assert laptop.get("/w/acme/").status_code == 200

    response = change(client, PASSWORD, "a brand new long passphrase")

    assert response.status_code == 302
    assert "Password changed. Your other sessions were signed out." in page(client.get("/account"))
    assert client.get("/w/acme/").status_code == 200
    gone = laptop.get("/w/acme/")
    assert gone.status_code == 302 and "/login" in gone.headers["Location"]

    client.post("/logout")
    assert client.login("op@example.com", PASSWORD).status_code == 401
    assert client.login("op@example.com", "a brand new long passphrase").status_code == 302
    event = audit_events(action="auth.password_changed")[0]
    assert event["actor_email"] == "op@example.com" and event["object_id"] == str(user.id)


# --- session cookie -----------------------------------------------------------------------------

def _session_cookie(response):
    return next((h for h in response.headers.getlist("Set-Cookie") if h.startswith("mc_session=")), None)


def test_session_idle_timeout_is_30_minutes_and_refreshed_on_each_request(client, app):
    assert app.config["PERMANENT_SESSION_LIFETIME"] == timedelta(minutes=30)
    make_user("op@example.com", workspace=make_workspace("acme"))
    client.login("op@example.com")

    cookie = _session_cookie(client.get("/w/acme/"))

    assert cookie is not None, "each request re-issues the cookie (sliding expiry)"
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = cookie.split("Expires=")[1].split(";")[0]
    remaining = parsedate_to_datetime(expires) - utcnow()
    assert timedelta(minutes=29) < remaining <= timedelta(minutes=30, seconds=1)


def _clock_ahead(monkeypatch, minutes):
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) + minutes * 60)


def test_session_survives_29_idle_minutes(client, monkeypatch):
    make_user("op@example.com", workspace=make_workspace("acme"))
    client.login("op@example.com")
    client.get("/w/acme/")

    _clock_ahead(monkeypatch, 29)

    assert client.get("/w/acme/").status_code == 200


def test_session_ends_after_31_idle_minutes(client, monkeypatch):
    make_user("op@example.com", workspace=make_workspace("acme"))
    client.login("op@example.com")
    client.get("/w/acme/")

    _clock_ahead(monkeypatch, 31)
    response = client.get("/w/acme/")

    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_form_post_without_csrf_token_is_refused(client):
    make_user("op@example.com")

    response = client.post("/login", data={"email": "op@example.com", "password": PASSWORD}, csrf=False)

    assert response.status_code == 400
    assert stored("op@example.com").last_login_at is None
