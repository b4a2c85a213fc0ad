"""System settings (issue 22): /admin/settings lists every setting with its value and source (secrets
as set / not set), the seven policy settings are changed at run time — validated, audited with
before/after, the environment winning — and a change is in force in a running web process (real
gunicorn) and a running worker (real `rq worker`) within 10 s, without a restart; `flask settings`."""
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rq import Queue

from audit.store import AuditStore
from extensions import db, redis_connection
from models import SystemSetting
from services import accounts, settings
from tests.factories import PASSWORD, make_user

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PORT = 52231  # this branch's range (52230-52239)
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def root(client):
    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    return client


def stored(key):
    db.session.rollback()  # a fresh snapshot (SQLite keeps the one of the test's open read transaction)
    row = db.session.get(SystemSetting, key)
    return None if row is None else row.value


# --- the page ---------------------------------------------------------------------------------

def test_page_lists_every_setting_with_its_source_and_hides_secrets(root, app, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_PASSWORD", "hunter2-mail")
    monkeypatch.setitem(app.config, "SQLALCHEMY_DATABASE_URI", "postgresql+psycopg://mc:db-pass-123@db:5432/mc")
    page = root.get("/admin/settings").get_data(as_text=True)
    for key in app.config["SETTINGS_DECLARED"] - {"SETTINGS_DECLARED", "SETTINGS_FROM_ENV"}:
        assert f"<code>{key}</code>" in page, key
    for secret in (app.config["SECRET_KEY"], app.config["CTN_HASH_KEY"], "hunter2-mail", "db-pass-123"):
        assert secret not in page
    row = page.split("<code>MAIL_PASSWORD</code>")[1].split("</tr>")[0]
    assert "<code>set</code>" in row
    assert "mc:***@db:5432" in page
    for key in settings.POLICY:
        assert f'id="setting-{key}"' in page
    policy_row = page.split('id="setting-LOCKOUT_THRESHOLD"')[1].split("</tr>")[0]
    assert ">3<" in policy_row and "default" in policy_row


def test_only_super_admins_reach_the_page(client):
    make_user("admin@example.com", workspace=None)
    client.login("admin@example.com")
    assert client.get("/admin/settings").status_code == 404
    assert client.post("/admin/settings", data={"key": "LOCKOUT_THRESHOLD", "value": "9"}).status_code == 404
    assert stored("LOCKOUT_THRESHOLD") is None


def test_a_change_is_validated_audited_and_in_force(root, app, audit_events):
    response = root.post("/admin/settings", data={"key": "LOCKOUT_THRESHOLD", "value": "5"}, follow_redirects=True)
    assert "LOCKOUT_THRESHOLD saved" in response.get_data(as_text=True)
    assert stored("LOCKOUT_THRESHOLD") == "5"
    assert settings.value("LOCKOUT_THRESHOLD") == 5 and settings.source("LOCKOUT_THRESHOLD") == "database"
    event = audit_events(action="settings.changed")[0]
    assert event["object_id"] == "LOCKOUT_THRESHOLD"
    assert event["before"]["value"] == 3 and event["after"]["value"] == 5
    assert event["actor_email"] == "root@example.com"
    # Back to the default.
    root.post("/admin/settings", data={"key": "LOCKOUT_THRESHOLD", "reset": "1"})
    assert stored("LOCKOUT_THRESHOLD") is None and settings.value("LOCKOUT_THRESHOLD") == 3
    assert audit_events(action="settings.reset")[0]["before"]["value"] == 5
    # A second factor required for admins: the super admin without one is sent to enrol at once.
    root.post("/admin/settings", data={"key": "TOTP_REQUIRED_FOR_ADMINS", "value": "on"})
    assert settings.value("TOTP_REQUIRED_FOR_ADMINS") is True
    assert "/account/totp" in root.get("/admin/settings").headers.get("Location", "")


@pytest.mark.parametrize("key, value, message", [
    ("LOCKOUT_THRESHOLD", "0", "must be from 1 to 100"),
    ("LOCKOUT_SECONDS", "-5", "must be from 1 to 86400"),
    ("PASSWORD_MIN_LENGTH", "7", "must be from 8 to 128"),
    ("AUDIT_RETENTION_DAYS", "99999999999999999999", "whole number"),
    ("IDLE_TIMEOUT_MINUTES", "ten", "whole number"),
    ("IDLE_TIMEOUT_MINUTES", "1.5", "whole number"),
    ("IDLE_TIMEOUT_MINUTES", "٣", "whole number"),
    ("GDPR_RETENTION_DAYS", "", "whole number"),
    ("TOTP_REQUIRED_FOR_ADMINS", "maybe", "must be on or off"),
    ("SECRET_KEY", "abc", "cannot be changed at run time"),
    ("NO_SUCH_SETTING", "1", "cannot be changed at run time"),
])
def test_bad_values_get_a_clear_message_and_change_nothing(root, audit_events, key, value, message):
    page = root.post("/admin/settings", data={"key": key, "value": value}, follow_redirects=True)
    assert page.status_code == 200
    assert message in page.get_data(as_text=True).replace("&#39;", "'")
    assert db.session.query(SystemSetting).count() == 0
    assert not audit_events(action="settings.changed")


def test_the_environment_wins_and_the_page_says_so(root, app, monkeypatch):
    monkeypatch.setitem(app.config, "SETTINGS_FROM_ENV", app.config["SETTINGS_FROM_ENV"] | {"LOCKOUT_SECONDS"})
    monkeypatch.setitem(app.config, "LOCKOUT_SECONDS", 120)
    root.post("/admin/settings", data={"key": "LOCKOUT_SECONDS", "value": "30"})
    assert stored("LOCKOUT_SECONDS") == "30"  # kept, for when the environment stops setting it
    assert settings.value("LOCKOUT_SECONDS") == 120 and settings.source("LOCKOUT_SECONDS") == "environment"
    row = root.get("/admin/settings").get_data(as_text=True).split('id="setting-LOCKOUT_SECONDS"')[1].split("</tr>")[0]
    assert "environment wins" in row and ">120<" in row


def test_the_environment_names_where_a_setting_comes_from():
    from config import load_config

    cfg = load_config({"SECRET_KEY": "x"}, env={"LOCKOUT_SECONDS": "9", "DATABASE_URL": "sqlite:///x.db",
                                                "IDLE_TIMEOUT_MINUTES": ""})
    assert {"LOCKOUT_SECONDS", "SQLALCHEMY_DATABASE_URI", "SECRET_KEY"} <= cfg["SETTINGS_FROM_ENV"]
    assert "IDLE_TIMEOUT_MINUTES" not in cfg["SETTINGS_FROM_ENV"] and "LOCKOUT_THRESHOLD" not in cfg["SETTINGS_FROM_ENV"]


def test_policy_readers_use_the_run_time_value(root, app):
    """The readers of the seven keys go through services/settings.py (a stored value is used)."""
    user = make_user("someone@example.com")
    settings.change("PASSWORD_MIN_LENGTH", "20")
    with pytest.raises(Exception, match="at least 20 characters"):
        accounts.check_password_policy("a" * 16 + "xyz", "someone@example.com", user=user)
    assert accounts.min_password_length() == 20
    settings.change("LOCKOUT_THRESHOLD", "1")
    other = root.application.test_client()
    other.refresh_csrf()
    other.post("/login", data={"email": "someone@example.com", "password": "wrong password entirely"})
    locked = other.post("/login", data={"email": "someone@example.com", "password": PASSWORD})
    assert locked.status_code == 401  # one failure locked the account: the right password is refused now
    settings.change("LOCKOUT_THRESHOLD", "3")
    settings.change("LOCKOUT_SECONDS", "1")  # the next lock is short: this one still holds
    assert other.post("/login", data={"email": "someone@example.com", "password": PASSWORD}).status_code == 401


def test_an_unreadable_database_keeps_the_last_values(app, tmp_path):
    """Another process whose database becomes unreadable keeps the values it last read (never a 500)."""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("uses a copy of the SQLite file")
    import shutil

    from app import create_app

    settings.change("LOCKOUT_SECONDS", "42")
    db.session.commit()
    copy = tmp_path / "copy.db"
    source = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    for suffix in ("", "-wal", "-shm"):  # the committed row may still be in the write-ahead log
        if os.path.exists(source + suffix):
            shutil.copy(source + suffix, f"{copy}{suffix}")
    other = create_app({"TESTING": True, "MC_DATA_DIR": app.config["MC_DATA_DIR"], "SECRET_KEY": "test-secret",
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{copy}", "SETTINGS_CACHE_SECONDS": 0})
    with other.app_context():
        assert settings.value("LOCKOUT_SECONDS") == 42
        db.engine.dispose()
        for suffix in ("", "-wal", "-shm"):  # the next connection opens an empty file: "no such table"
            if os.path.exists(f"{copy}{suffix}"):
                os.unlink(f"{copy}{suffix}")
        assert settings.value("LOCKOUT_SECONDS") == 42 and settings.value("LOCKOUT_THRESHOLD") == 3


# --- CLI ----------------------------------------------------------------------------------------

def test_flask_settings_show_and_set(app, audit_events):
    runner = app.test_cli_runner()
    shown = runner.invoke(args=["settings", "show"])
    assert shown.exit_code == 0
    assert "LOCKOUT_THRESHOLD = 3  (default) [editable]" in shown.output
    assert "SECRET_KEY = set  (environment)" in shown.output and app.config["SECRET_KEY"] not in shown.output
    done = runner.invoke(args=["settings", "set", "idle_timeout_minutes", "45"])
    assert done.exit_code == 0 and "IDLE_TIMEOUT_MINUTES = 45 stored" in done.output
    assert settings.value("IDLE_TIMEOUT_MINUTES") == 45
    assert audit_events(action="settings.changed")[0]["actor_email"] == "cli: flask settings set"
    for args, message in ((["settings", "set", "IDLE_TIMEOUT_MINUTES", "0"], "from 1 to 1440"),
                          (["settings", "set", "CORE_URL", "https://x"], "cannot be changed at run time")):
        refused = runner.invoke(args=args)
        assert refused.exit_code != 0 and message in refused.output
    assert stored("IDLE_TIMEOUT_MINUTES") == "45"


# --- in force in running processes, without a restart -------------------------------------------

def _env(app, data_dir):
    env = {k: v for k, v in os.environ.items() if k not in settings.POLICY}
    env.update(MC_DATA_DIR=str(data_dir), SECRET_KEY=app.config["SECRET_KEY"],
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               LOGIN_RATE_LIMIT="1000 per minute", MC_PRODUCTION="0")
    return env


def _sign_in(base, email, password):
    with requests.Session() as browser:
        token = CSRF_RE.search(browser.get(f"{base}/login", timeout=10).text).group(1)
        response = browser.post(f"{base}/login", data={"email": email, "password": password, "csrf_token": token},
                                allow_redirects=False, timeout=10)
        return response.status_code == 302


@pytest.mark.slow
def test_a_change_on_the_page_reaches_a_running_web_process_and_worker(root, app, tmp_path):
    make_user("operator@example.com")
    env = _env(app, tmp_path / "procs")
    base = f"http://127.0.0.1:{PORT}"
    web = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-b", f"127.0.0.1:{PORT}",
                            "-w", "1", "--threads", "4", "wsgi:app"], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    queue = Queue("default", connection=redis_connection())
    queue.empty()
    worker = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "-w",
                               "jobs.worker.AppWorker", "--url", env["REDIS_URL"], "--path", ROOT, "default"],
                              cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: requests.get(f"{base}/healthz", timeout=1).ok, 30)
        # Before: the default threshold (3) — one wrong password, then the right one signs in.
        assert not _sign_in(base, "operator@example.com", "not the password at all")
        assert _sign_in(base, "operator@example.com", PASSWORD)

        # The worker's audit store holds an event 40 days old; the default retention (90 days) keeps it.
        store = AuditStore(mongo_uri=None, embedded_dir=str(tmp_path / "procs" / "audit"),
                           fallback_path=str(tmp_path / "fallback.jsonl"))
        store.write({"action": "test.old", "ts": datetime.now(UTC) - timedelta(days=40)})
        store.close()
        assert _run(queue, "jobs.maintenance.purge_audit") == 0

        root.post("/admin/settings", data={"key": "LOCKOUT_THRESHOLD", "value": "1"})
        root.post("/admin/settings", data={"key": "AUDIT_RETENTION_DAYS", "value": "30"})
        changed = time.monotonic()

        # The web process: one wrong password now locks the account (the right one is refused after it).
        def locks_after_one():
            _sign_in(base, "operator@example.com", "not the password at all")
            return not _sign_in(base, "operator@example.com", PASSWORD)
        _wait_until(locks_after_one, 10)
        web_seconds = time.monotonic() - changed
        # The worker (started before the change, never restarted) purges with 30 days.
        _wait_until(lambda: _run(queue, "jobs.maintenance.purge_audit") == 1, 10)
        worker_seconds = time.monotonic() - changed
        print(f"in force after: web {web_seconds:.1f} s, worker {worker_seconds:.1f} s")
        assert web_seconds < 10 and worker_seconds < 10
        assert web.poll() is None and worker.poll() is None  # the same processes, no restart
    finally:
        for proc in (web, worker):
            proc.terminate()
        for proc in (web, worker):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _run(queue, name):
    job = queue.enqueue(name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = job.get_status(refresh=True)
        if status == "finished":
            return job.return_value()
        if status == "failed":
            raise AssertionError(f"{name} failed in the worker")
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish in 30 s")


def _wait_until(check, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.3)
