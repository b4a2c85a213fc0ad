"""Secrets out of logs and files: the access log has no query strings and no invitation tokens;
MC_DATA_DIR is 0700 and the database and keys 0600 after the real setup commands; outbox links
are for the workspace's admins and die with their invitation; ProxyFix trusts X-Forwarded-Host
only when PROXY_FIX_TRUST_HOST says so."""
import html
import os
import re
import signal
import stat
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
from flask import request, url_for

from blueprints.access import public
from extensions import db
from models import Invitation, utcnow
from services.access_log import REDACTED, loggable_path, loggable_url, secret_patterns
from tests.factories import make_user, make_workspace
from tests.integration.test_access_matrix import browser, fresh_app  # noqa: F401  (fixtures used by name)
from tests.integration.test_invitations import accept_as_new_user, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
LINK_RE = re.compile(r"/invite/(inv_[A-Za-z0-9_-]+)")


# --- the access log -------------------------------------------------------------------------------

def test_token_routes_are_found_in_the_url_map_and_redacted(app):
    patterns = secret_patterns(app.url_map)
    secret_rules = sorted(r.rule for r in app.url_map.iter_rules() if "token" in r.arguments)
    assert secret_rules == ["/invite/<token>"] and len(patterns) == len(secret_rules)
    assert loggable_path("/invite/inv_abc-DEF_123", patterns) == f"/invite/{REDACTED}"
    assert loggable_path("/invite/inv_abc/../x", patterns) == f"/invite/{REDACTED}/../x"  # a 404 loses it too
    assert loggable_path("/w/acme/tokens/5/revoke", patterns) == "/w/acme/tokens/5/revoke"
    assert loggable_path("/invite/x", None) == "-"  # rules unknown: fail closed
    assert loggable_url("https://mc.example/invite/inv_abc?next=/x", patterns) == \
        f"https://mc.example/invite/{REDACTED}"


@pytest.mark.slow
def test_gunicorns_access_log_drops_query_strings_and_invitation_tokens(app, tmp_path):
    port = free_port()
    env = dict(os.environ, PORT=str(port), WEB_WORKERS="1", WEB_THREADS="2",
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], MC_DATA_DIR=app.config["MC_DATA_DIR"],
               SECRET_KEY=app.config["SECRET_KEY"], AUDIT_FALLBACK_PATH=app.config["AUDIT_FALLBACK_PATH"])
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        web = subprocess.Popen([os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                requests.get(base + "/healthz", timeout=3)
                break
            except requests.RequestException:
                assert web.poll() is None, log_path.read_text()
                time.sleep(0.2)
        requests.get(base + "/invite/inv_TOPSECRETTOKEN?x=querysecret", timeout=5)
        requests.get(base + "/healthz?cursor=cursorsecret", timeout=5,
                     headers={"Referer": base + "/invite/inv_REFERERTOKEN?y=refsecret"})
        requests.get(base + "/login?next=%2Fw%2Fnextsecret", timeout=5)
        time.sleep(0.5)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert f'"GET /invite/{REDACTED} HTTP/1.1"' in text and '"GET /healthz HTTP/1.1" 200' in text, text
    for secret in ("TOPSECRETTOKEN", "querysecret", "cursorsecret", "REFERERTOKEN", "refsecret", "nextsecret", "?"):
        assert secret not in "".join(line for line in text.splitlines(True) if '"GET ' in line), secret


# --- file modes -------------------------------------------------------------------------------------

def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.slow
def test_the_setup_commands_leave_a_private_data_dir_database_and_keys(tmp_path):
    data = tmp_path / "fresh" / "instance"  # does not exist yet, nor does its parent
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "MC_DATA_DIR",
                                                            "CORE_CLIENT_CERT", "CORE_CLIENT_KEY", "CORE_CA")}
    env.update(MC_DATA_DIR=str(data), FLASK_APP="app:create_app")

    def run(*args):
        # umask 022, as on a default shell: the code, not the umask, must make these private.
        subprocess.run(["/bin/sh", "-c", 'umask 022 && exec "$@"', "sh", os.path.join(BIN, "flask"), *args],
                       cwd=ROOT, env=env, check=True, capture_output=True)

    run("db", "upgrade")
    run("certs", "dev")
    assert _mode(data) == 0o700
    assert _mode(data / "mc.db") == 0o600
    assert _mode(data / "secret_key") == 0o600
    assert _mode(data / "certs") == 0o700
    keys = sorted(p.name for p in (data / "certs").glob("*.key"))
    assert keys and all(_mode(data / "certs" / k) == 0o600 for k in keys), keys
    assert not any(_mode(p) & 0o077 for p in data.rglob("*") if p.is_file() and p.suffix in (".key", ".db"))

    # A data directory left readable by an older version is tightened by the next start.
    os.chmod(data, 0o755)
    os.chmod(data / "mc.db", 0o644)
    run("db", "current")
    assert _mode(data) == 0o700 and _mode(data / "mc.db") == 0o600


# --- the outbox -------------------------------------------------------------------------------------

@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("boss@example.com", workspace=ws, role="admin")
    make_user("writer@example.com", workspace=ws, role="author")
    make_user("mod@example.com", workspace=ws, role="moderator")
    other = make_workspace("other", "Other Ltd")
    make_user("otherboss@example.com", workspace=other, role="admin")
    make_user("root@example.com", superadmin=True)
    return ws


def _outbox(client, path="/w/acme/outbox"):
    response = client.get(path)
    return response.status_code, html.unescape(response.get_data(as_text=True))


def test_outbox_links_are_for_admins_only_and_die_with_their_invitation(app, acme):
    boss = app.test_client()
    boss.login("boss@example.com")
    for address in ("nina@example.com", "omar@example.com", "pia@example.com", "quinn@example.com"):
        assert boss.post("/w/acme/invitations", data={"email": address, "role": "author"}).status_code == 302
    status, page = _outbox(boss)
    tokens = dict(zip(["quinn", "pia", "omar", "nina"], LINK_RE.findall(page)))  # newest first
    assert status == 200 and len(tokens) == 4

    # Members who are not admins, and admins of another workspace, get no link.
    for email, expected in (("writer@example.com", 403), ("mod@example.com", 403), ("otherboss@example.com", 404)):
        other = app.test_client()
        other.login(email)
        status, page = _outbox(other)
        assert status == expected and "inv_" not in page, email
        assert 'href="/w/acme/outbox"' not in other.get("/w/acme/").get_data(as_text=True)
    root = app.test_client()
    root.login("root@example.com")
    assert all(t in _outbox(root)[1] for t in tokens.values())  # super admins: this workspace's page
    assert all(t in _outbox(root, "/admin/outbox")[1] for t in tokens.values())  # and the installation's

    # Revoked, accepted, expired: the page stops showing the token, and the link is refused.
    nina = db.session.execute(db.select(Invitation).filter_by(email="nina@example.com")).scalar_one()
    assert boss.post(f"/w/acme/invitations/{nina.id}/revoke").status_code == 302
    assert accept_as_new_user(app.test_client(), f"/invite/{tokens['omar']}").status_code == 302
    db.session.execute(db.update(Invitation).where(Invitation.email == "pia@example.com")
                       .values(expires_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    for client, path in ((boss, "/w/acme/outbox"), (root, "/admin/outbox")):
        status, page = _outbox(client, path)
        assert tokens["quinn"] in page  # still pending: still usable
        for name in ("nina", "omar", "pia"):
            assert tokens[name] not in page, (path, name)
        for state in ("revoked", "accepted", "expired"):
            assert f"link no longer valid: invitation {state}" in page, (path, state)
    for name, code in (("nina", 409), ("omar", 409), ("pia", 409)):
        assert app.test_client().get(f"/invite/{tokens[name]}").status_code == code, name
    assert app.test_client().get(f"/invite/{tokens['quinn']}").status_code == 200


# --- ProxyFix --------------------------------------------------------------------------------------

def _echo_app(fresh_app, **config):  # noqa: F811
    application = fresh_app(SERVER_NAME=None, PROXY_FIX_HOPS=1, **config)

    @application.get("/_echo")
    @public
    def echo():
        return {"link": url_for("home.healthz", _external=True), "ip": request.remote_addr}

    return application


def test_x_forwarded_host_does_not_change_links_unless_the_setting_trusts_it(fresh_app, browser):  # noqa: F811
    headers = {"Host": "mc.example.com", "X-Forwarded-Host": "evil.example", "X-Forwarded-For": "203.0.113.9",
               "X-Forwarded-Proto": "https"}
    default = browser(target=_echo_app(fresh_app)).get("/_echo", headers=headers).get_json()
    assert default == {"link": "https://mc.example.com/healthz", "ip": "203.0.113.9"}  # For/Proto still trusted

    trusting = browser(target=_echo_app(fresh_app, PROXY_FIX_TRUST_HOST=True)).get("/_echo", headers=headers)
    assert trusting.get_json()["link"] == "https://evil.example/healthz"
