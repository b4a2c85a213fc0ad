"""Two-step sign-in end to end: enrolment with a locally rendered QR code, sign-in with a code or a
recovery code, lockout shared with passwords, the 15/8 password rule, turning it off, and the
installation setting that requires it of admins."""
import re

from extensions import db
from models import User, UserTotp
from services import totp
from tests.conftest import PASSWORD
from tests.factories import make_user, make_workspace

CODES_RE = re.compile(r"<code>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</code>")


def enrol(client):
    """Set up TOTP through the pages; returns (secret, recovery codes)."""
    page = client.get("/account/totp")
    assert page.status_code == 200
    assert client.post("/account/totp/start").status_code == 302
    page = client.get("/account/totp").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page, "the QR code is rendered locally as an SVG data URI"
    assert "http://" not in page.split("<main", 1)[-1] and "https://" not in page.split("<main", 1)[-1]
    secret = re.search(r"<code>([A-Z2-7]{32})</code>", page).group(1)
    done = client.post("/account/totp/confirm", data={"code": totp.code_now(secret)})
    assert done.status_code == 200
    codes = CODES_RE.findall(done.get_data(as_text=True))
    assert len(codes) == 10
    return secret, codes


def password_step(client, email, next_url=None):
    client.refresh_csrf()
    response = client.post("/login", query_string={"next": next_url} if next_url else None,
                           data={"email": email, "password": PASSWORD})
    csrf_from(client, "/login/totp")
    return response


def csrf_from(client, path):
    """Take the CSRF token from a page that /login and /account do not cover (the second step)."""
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get(path).get_data(as_text=True))
    client.csrf_token = match.group(1) if match else client.csrf_token


def test_admin_enrols_totp_and_signs_in_with_it(client, audit_events):
    admin = make_user("admin@example.com", workspace=make_workspace("ops"), role="admin")
    assert client.login(admin.email).status_code == 302
    secret, _ = enrol(client)
    assert [e["action"] for e in audit_events(action="auth.totp_enabled")] == ["auth.totp_enabled"]

    client.post("/logout")
    response = password_step(client, admin.email, next_url="/account")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login/totp")
    assert client.get("/account").status_code == 302, "the password alone does not sign in"
    row = db.session.get(UserTotp, admin.id)
    row.last_step = 0  # the enrolment used the current step; let the same step sign in
    db.session.commit()
    done = client.post("/login/totp", data={"code": totp.code_now(secret)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/account")
    client.refresh_csrf()
    assert client.get("/account").status_code == 200
    logins = audit_events(action="auth.login")
    assert logins[0]["note"] == "second factor: totp"


def test_a_recovery_code_signs_in_once_and_is_audited(client, audit_events):
    user = make_user("author@example.com", workspace=make_workspace("ops"))
    client.login(user.email)
    _, codes = enrol(client)
    client.post("/logout")
    password_step(client, user.email)
    assert client.post("/login/totp", data={"code": codes[3]}).status_code == 302
    client.refresh_csrf()  # signed in: a new session with a new token
    assert audit_events(action="auth.recovery_code_used")[0]["after"]["recovery_codes_left"] == 9
    client.post("/logout")
    password_step(client, user.email)
    assert client.post("/login/totp", data={"code": codes[3]}).status_code == 401


def test_wrong_codes_count_towards_the_same_lockout_as_passwords(client, audit_events):
    user = make_user("author@example.com", workspace=make_workspace("ops"))
    client.login(user.email)
    secret, _ = enrol(client)
    client.post("/logout")
    password_step(client, user.email)
    wrong = "123456" if totp.code_now(secret) != "123456" else "654321"
    for _ in range(3):
        assert client.post("/login/totp", data={"code": wrong}).status_code == 401
    db.session.expire_all()
    assert db.session.get(User, user.id).locked_until is not None
    assert audit_events(action="auth.locked")
    # Locked: even the right code (and the right password) is refused with the same message.
    refused = client.post("/login/totp", data={"code": totp.code_now(secret)})
    assert refused.status_code == 401 and "temporarily locked" in refused.get_data(as_text=True)
    client.refresh_csrf()
    assert client.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 401


def test_a_correct_password_does_not_reset_the_second_factor_failures(client):
    user = make_user("author@example.com", workspace=make_workspace("ops"))
    client.login(user.email)
    secret, _ = enrol(client)
    client.post("/logout")
    wrong = "123456" if totp.code_now(secret) != "123456" else "654321"
    for _ in range(3):  # password right, code wrong, three times over
        password_step(client, user.email)
        client.post("/login/totp", data={"code": wrong})
    db.session.expire_all()
    assert db.session.get(User, user.id).locked_until is not None


def test_the_second_step_without_a_password_step_goes_back_to_sign_in(client):
    client.refresh_csrf()
    response = client.get("/login/totp")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


def test_with_totp_an_8_character_password_is_allowed_and_turning_it_off_forces_15(client, audit_events):
    user = make_user("author@example.com", workspace=make_workspace("ops"))
    client.login(user.email)
    _, codes = enrol(client)
    # Enrolment re-issued the session: sign in again with both factors for a fresh start.
    client.refresh_csrf()
    short = "plum-ox-42"  # 10 characters
    changed = client.post("/account", data={"current_password": PASSWORD, "new_password": short, "confirm": short})
    assert changed.status_code == 302, changed.get_data(as_text=True)[:500]
    client.refresh_csrf()
    # Turning TOTP off with a 10-character password and no new one is refused …
    refused = client.post("/account/totp/disable", data={"password": short, "code": codes[0]}, follow_redirects=True)
    assert "at least 15 characters" in refused.get_data(as_text=True)
    db.session.expire_all()
    assert totp.is_enrolled(db.session.get(User, user.id))
    # … and accepted with a new long password in the same step.
    done = client.post("/account/totp/disable", data={"password": short, "code": codes[1],
                                                      "new_password": "a much longer passphrase"})
    assert done.status_code == 302
    db.session.expire_all()
    assert not totp.is_enrolled(db.session.get(User, user.id))
    assert audit_events(action="auth.totp_disabled")[0]["after"] == {"password_changed": True}
    client.post("/logout")
    assert client.login(user.email, "a much longer passphrase").status_code == 302


def test_without_totp_a_short_password_is_refused(client):
    user = make_user("author@example.com", workspace=make_workspace("ops"))
    client.login(user.email)
    response = client.post("/account", data={"current_password": PASSWORD, "new_password": "plum-ox-42",
                                             "confirm": "plum-ox-42"})
    assert response.status_code == 200 and "at least 15 characters" in response.get_data(as_text=True)


def test_required_totp_blocks_an_admin_until_enrolled_but_not_an_author(app, client):
    app.config["TOTP_REQUIRED_FOR_ADMINS"] = True
    ws = make_workspace("ops")
    make_user("admin@example.com", workspace=ws, role="admin")
    make_user("author@example.com", workspace=ws)
    assert client.login("admin@example.com").status_code == 302
    for path in ("/", f"/w/{ws.slug}/", f"/w/{ws.slug}/members", "/account"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/account/totp"), path
    csrf_from(client, "/account/totp")
    refused = client.post(f"/w/{ws.slug}/settings", data={"name": "x"})
    assert refused.status_code == 302 and refused.headers["Location"].endswith("/account/totp")
    enrol(client)
    assert client.get(f"/w/{ws.slug}/members").status_code == 200

    author = app.test_client()
    assert author.login("author@example.com").status_code == 302
    assert author.get(f"/w/{ws.slug}/").status_code == 200


def test_required_totp_applies_to_super_admins(app, client):
    app.config["TOTP_REQUIRED_FOR_ADMINS"] = True
    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/totp")
