"""Sign-in under attack (issue 14, items 1, 2 and 11): bursts of parallel guesses get at most three
verifications per lock window (password step, second step, password re-checks), per-IP limits
answer 429, a full verification gate answers 503, argon2id uses the OWASP parameters and old hashes
are upgraded, an expired form says so, and members' sign-ins show in their workspaces' audit logs.

The bursts are truly parallel: one browser-like test client per thread, released together by a
barrier, with the shipped argon2 parameters (argon2 releases the GIL, so verifications overlap)."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update

from extensions import db, limiter
from models import User, UserTotp, utcnow
from services import accounts, passwords, tokens, totp
from tests.conftest import PASSWORD
from tests.factories import make_user, make_workspace

WRONG = "not the right password at all"
BURST = 32


def stored(email):
    db.session.expire_all()
    return accounts.find_user(email)


def burst(app, prepare, attempt, n=BURST):
    """n browsers, each set up by `prepare(client)` one after the other, then `attempt(client)` in all
    of them at once (one thread each, released together)."""
    clients = [app.test_client() for _ in range(n)]
    for client in clients:
        prepare(client)
    barrier = threading.Barrier(n, timeout=60)  # a thread that fails early must not hang the rest

    def run(client):
        barrier.wait()
        return attempt(client)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, clients))


def count(audit_events, action):
    return len([e for e in audit_events(action=action) if e["action"] == action])


@pytest.fixture
def no_ip_limit(app, monkeypatch):
    """The bursts below come from one address into one process: lift the per-IP limits and let the
    whole burst queue for the verification slots, so the lockout is what is tested."""
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "10000 per minute")
    monkeypatch.setitem(app.config, "TOTP_RATE_LIMIT", "10000 per minute")
    monkeypatch.setitem(app.config, "SIGNIN_MAX_WAITING", 2 * BURST)
    app.extensions.pop("mc_verification_gate", None)
    yield
    app.extensions.pop("mc_verification_gate", None)


# --- 1. the lockout holds under concurrency ---------------------------------------------------------

@pytest.mark.real_argon2
def test_32_parallel_wrong_passwords_get_three_verifications_and_the_right_one_is_refused(
        app, client, audit_events, no_ip_limit):
    user = make_user("op@example.com", workspace=make_workspace("acme"))
    email = user.email  # the threads must not touch this session's objects

    statuses = burst(app, lambda c: c.refresh_csrf(),
                     lambda c: c.post("/login", data={"email": email, "password": WRONG}).status_code)
    right = client.login(email, PASSWORD)

    assert statuses == [401] * BURST
    assert right.status_code == 401 and accounts.SIGN_IN_REFUSED in right.get_data(as_text=True)
    assert client.get("/account").status_code == 302  # not signed in
    assert count(audit_events, "auth.login_failed") == 3, "exactly three passwords were verified"
    assert count(audit_events, "auth.locked") == 1
    assert count(audit_events, "auth.login_refused") == BURST - 3 + 1
    assert count(audit_events, "auth.login") == 0
    assert stored(user.email).locked_until > utcnow()


@pytest.mark.real_argon2
def test_parallel_wrong_second_factor_codes_get_three_checks_and_the_right_code_is_refused(
        app, client, audit_events, no_ip_limit):
    user = make_user("op@example.com", workspace=make_workspace("acme"))
    client.login(user.email)
    client.post("/account/totp/start")
    secret = db.session.get(UserTotp, user.id).secret
    client.post("/account/totp/confirm", data={"code": totp.code_now(secret)})
    client.post("/logout")
    db.session.execute(update(UserTotp).where(UserTotp.user_id == user.id).values(last_step=0))
    db.session.commit()
    now = totp.code_now(secret)
    wrong_codes = ["000000" if now != "000000" else "111111", "abcd-efgh-jkmn"]  # a TOTP and a recovery code
    email = user.email

    def password_step(c):
        c.refresh_csrf()
        assert c.post("/login", data={"email": email, "password": PASSWORD}).status_code == 302
        c.csrf_token = None
        page = c.get("/login/totp").get_data(as_text=True)
        c.csrf_token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]

    codes = iter(wrong_codes * BURST)
    lock = threading.Lock()

    def wrong_code(c):
        with lock:
            code = next(codes)
        return c.post("/login/totp", data={"code": code}).status_code

    statuses = burst(app, password_step, wrong_code)
    assert stored(user.email).failed_logins == 3 and stored(user.email).locked_until is not None
    last = app.test_client()
    password_step_refused = last.login(user.email, PASSWORD)

    assert statuses == [401] * BURST
    assert password_step_refused.status_code == 401, "locked: even the right password is refused"
    assert count(audit_events, "auth.login_failed") == 3
    assert count(audit_events, "auth.locked") == 1
    assert count(audit_events, "auth.login") == 1  # the enrolment's own sign-in only


@pytest.mark.real_argon2
def test_parallel_password_rechecks_count_on_the_same_lockout(app, audit_events, no_ip_limit):
    user = make_user("op@example.com", workspace=make_workspace("acme"))
    user_id = user.id
    barrier = threading.Barrier(BURST, timeout=60)

    def recheck(_):
        with app.app_context():
            barrier.wait()
            return accounts.verify_password_for(user_id, WRONG, purpose="create API token")

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        results = list(pool.map(recheck, range(BURST)))

    assert results == [False] * BURST
    assert count(audit_events, "auth.reauth_failed") == 3
    assert count(audit_events, "auth.locked") == 1
    assert accounts.verify_password_for(user.id, PASSWORD, purpose="create API token") is False
    assert [e["note"] for e in audit_events(action="auth.reauth_refused")][0] == "create API token: account locked"


def test_a_right_recheck_gives_its_claim_back(app):
    user = make_user("op@example.com")
    assert accounts.verify_password_for(user.id, WRONG, purpose="change password") is False
    assert accounts.verify_password_for(user.id, PASSWORD, purpose="change password") is True
    assert stored(user.email).failed_logins == 1, "the right password neither counts nor resets"


def test_change_password_and_totp_disable_go_through_the_lockout(client, audit_events):
    user = make_user("op@example.com")
    client.login(user.email)
    for _ in range(3):
        client.post("/account", data={"current_password": WRONG, "new_password": "a much longer new passphrase",
                                      "confirm": "a much longer new passphrase"})
    response = client.post("/account", data={"current_password": PASSWORD,
                                             "new_password": "a much longer new passphrase",
                                             "confirm": "a much longer new passphrase"})
    assert "Your current password is not correct." in response.get_data(as_text=True)
    assert passwords.verify_password(stored(user.email).password_hash, PASSWORD), "nothing changed while locked"
    assert count(audit_events, "auth.locked") == 1
    assert count(audit_events, "auth.reauth_refused") == 1


def test_a_lock_ends_and_counting_starts_again_at_one(client, app):
    user = make_user("op@example.com")
    for _ in range(3):
        client.login(user.email, WRONG)
    db.session.execute(update(User).where(User.id == user.id).values(locked_until=utcnow()))
    db.session.commit()
    assert client.login(user.email, WRONG).status_code == 401
    row = stored(user.email)
    assert row.failed_logins == 1 and row.locked_until is None
    assert client.login(user.email, PASSWORD).status_code == 302


def test_a_claim_of_a_request_that_died_mid_check_stays_counted_until_the_lock_ends(app, client):
    # A web process killed between the claim and the verification leaves the claim counted.
    user = make_user("op@example.com")
    for _ in range(3):
        assert accounts.lockout.claim(user_id=user.id) is not None
    assert accounts.lockout.claim(user_id=user.id) is None, "the third claim locked the account"
    assert client.login(user.email, PASSWORD).status_code == 401
    db.session.execute(update(User).where(User.id == user.id).values(locked_until=utcnow()))
    db.session.commit()
    assert client.login(user.email, PASSWORD).status_code == 302


# --- 2. bounded cost -------------------------------------------------------------------------------

@pytest.mark.real_argon2
def test_hashes_use_the_owasp_argon2id_parameters_and_old_ones_are_upgraded_at_sign_in(client, audit_events):
    assert passwords.hash_password(PASSWORD).startswith("$argon2id$v=19$m=9216,t=4,p=1$")
    user = make_user("op@example.com")
    old = PasswordHasher().hash(PASSWORD)  # argon2-cffi's RFC 9106 low-memory profile: m=64 MiB, t=3, p=4
    db.session.execute(update(User).where(User.id == user.id).values(password_hash=old))
    db.session.commit()

    assert client.login(user.email, PASSWORD).status_code == 302

    assert stored(user.email).password_hash.startswith("$argon2id$v=19$m=9216,t=4,p=1$")
    assert count(audit_events, "auth.password_rehashed") == 1


def test_login_is_limited_per_address_with_429_and_retry_after(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "5 per minute")
    user = make_user("op@example.com")
    client.refresh_csrf()
    statuses = [client.post("/login", data={"email": f"x{i}@example.com", "password": WRONG}).status_code
                for i in range(5)]
    limited = client.post("/login", data={"email": user.email, "password": PASSWORD})

    assert statuses == [401] * 5
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert stored(user.email).last_login_at is None, "a limited request checks nothing"
    assert client.get("/login").status_code == 200, "the page itself stays reachable"
    elsewhere = app.test_client()
    elsewhere.refresh_csrf()
    other = elsewhere.post("/login", data={"email": user.email, "password": PASSWORD},
                           environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 302, "another address has its own budget"


def test_the_second_step_is_limited_per_address(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "TOTP_RATE_LIMIT", "2 per minute")
    user = make_user("op@example.com")
    client.login(user.email)
    client.post("/account/totp/start")
    secret = db.session.get(UserTotp, user.id).secret
    client.post("/account/totp/confirm", data={"code": totp.code_now(secret)})
    client.post("/logout")
    client.refresh_csrf()
    client.post("/login", data={"email": user.email, "password": PASSWORD})
    page = client.get("/login/totp").get_data(as_text=True)
    client.csrf_token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    statuses = [client.post("/login/totp", data={"code": "000000"}).status_code for _ in range(3)]
    assert statuses[2] == 429 and statuses[:2] != [429, 429]


def test_limits_fall_back_to_each_process_when_redis_is_down(app, client, monkeypatch, caplog):
    from config import limits_storage_uri

    monkeypatch.setitem(app.config, "LOGIN_RATE_LIMIT", "3 per minute")
    user = make_user("op@example.com")
    dead = limits_storage_uri("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        app.config["RATELIMIT_STORAGE_URI"] = dead
        limiter.init_app(app)
        client.refresh_csrf()
        statuses = [client.post("/login", data={"email": f"x{i}@example.com", "password": WRONG},
                                environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code for i in range(3)]
        statuses.append(client.post("/login", data={"email": user.email, "password": PASSWORD},
                                    environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code)
        statuses.append(client.post("/login", data={"email": user.email, "password": PASSWORD},
                                    environ_base={"REMOTE_ADDR": "192.0.2.10"}).status_code)
    finally:
        app.config["RATELIMIT_STORAGE_URI"] = limits_storage_uri(app.config["REDIS_URL"])
        limiter.init_app(app)
        limiter._storage_dead = False  # the restored storage is alive (the library re-checks it lazily)
    assert statuses == [401, 401, 401, 429, 302], "sign-in works and is still limited, per process"
    assert "falling back to in-memory storage" in caplog.text


def test_a_full_verification_gate_answers_busy_and_counts_nothing(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SIGNIN_CONCURRENCY", 1)
    monkeypatch.setitem(app.config, "SIGNIN_WAIT_SECONDS", 0.2)
    app.extensions.pop("mc_verification_gate", None)
    user = make_user("op@example.com")
    client.refresh_csrf()
    held, release = threading.Event(), threading.Event()

    def hold_the_only_slot():
        with app.app_context(), passwords.verification_slot():
            held.set()
            release.wait(10)

    with ThreadPoolExecutor(max_workers=1) as pool:
        holder = pool.submit(hold_the_only_slot)
        held.wait(5)
        started = time.monotonic()
        busy = client.post("/login", data={"email": user.email, "password": PASSWORD})
        waited = time.monotonic() - started
        release.set()
        holder.result()
    app.extensions.pop("mc_verification_gate", None)

    assert busy.status_code == 503
    assert int(busy.headers["Retry-After"]) >= 1
    assert "busy" in busy.get_data(as_text=True)
    assert 0.2 <= waited < 3
    row = stored(user.email)
    assert row.failed_logins == 0 and row.last_login_at is None, "a busy answer counts nothing"
    assert client.post("/login", data={"email": user.email, "password": PASSWORD}).status_code == 302


def test_a_full_waiting_line_answers_busy_at_once_so_threads_stay_free(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "SIGNIN_CONCURRENCY", 1)
    monkeypatch.setitem(app.config, "SIGNIN_MAX_WAITING", 1)
    monkeypatch.setitem(app.config, "SIGNIN_WAIT_SECONDS", 10)
    app.extensions.pop("mc_verification_gate", None)
    user = make_user("op@example.com")
    email = user.email
    client.refresh_csrf()
    held, release = threading.Event(), threading.Event()

    def hold_the_only_slot():
        with app.app_context(), passwords.verification_slot():
            held.set()
            release.wait(20)

    def waiter():
        other = app.test_client()
        other.refresh_csrf()
        return other.post("/login", data={"email": email, "password": PASSWORD}).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(hold_the_only_slot)
        held.wait(5)
        queued = pool.submit(waiter)  # takes the one waiting place
        deadline = time.monotonic() + 5
        while app.extensions["mc_verification_gate"].waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        busy = client.post("/login", data={"email": email, "password": PASSWORD})
        answered_in = time.monotonic() - started
        release.set()
        holder.result()
        assert queued.result() == 302, "the one that waited signs in once the slot is free"
    app.extensions.pop("mc_verification_gate", None)

    assert busy.status_code == 503 and answered_in < 2, "no waiting place: busy at once, not after 10 s"


def test_an_expired_form_says_so_and_changes_nothing(client, app, monkeypatch):
    user = make_user("op@example.com")
    monkeypatch.setitem(app.config, "WTF_CSRF_TIME_LIMIT", 1)
    client.refresh_csrf()
    time.sleep(2.1)
    response = client.post("/login", data={"email": user.email, "password": PASSWORD},
                           headers={"Referer": "http://mc.test/login"})

    assert response.status_code == 303 and response.headers["Location"].endswith("/login")
    page = client.get("/login").get_data(as_text=True)
    assert "has expired, so nothing was saved" in page
    assert stored(user.email).last_login_at is None
    as_json = client.post("/login", data={"email": user.email, "password": PASSWORD},
                          headers={"Accept": "application/json"})
    assert as_json.status_code == 400 and as_json.json["error"]["code"] == "csrf_failed"


def test_shipped_defaults_expire_forms_after_an_hour_and_limit_sign_ins_per_address():
    from config import load_config

    cfg = load_config({"SECRET_KEY": "x"}, env={})
    assert cfg["WTF_CSRF_TIME_LIMIT"] == 3600
    assert cfg["LOGIN_RATE_LIMIT"] == "30 per minute" and cfg["TOTP_RATE_LIMIT"] == "10 per minute"
    assert cfg["SIGNIN_CONCURRENCY"] == 1 and cfg["SIGNIN_WAIT_SECONDS"] == 5 and cfg["SIGNIN_MAX_WAITING"] == 28
    assert cfg["RATELIMIT_STORAGE_URI"].startswith("redis+unix://")
    assert load_config({"SECRET_KEY": "x"}, env={"REDIS_URL": "redis://h:6379/3"})["RATELIMIT_STORAGE_URI"] \
        == "redis://h:6379/3"


# --- 11. members' sign-ins in the workspace audit ---------------------------------------------------

def test_sign_ins_show_in_each_workspace_of_the_member_and_nowhere_else(client, app):
    a, b, c = make_workspace("alpha"), make_workspace("beta"), make_workspace("gamma")
    both = make_user("both@example.com", workspace=a)
    from services import members
    members.add_member(b, both, "author")
    db.session.commit()
    stranger = make_user("stranger@example.com", workspace=c)
    admin_a = make_user("admin-a@example.com", workspace=a, role="admin")
    admin_b = make_user("admin-b@example.com", workspace=b, role="admin")
    make_user("root@example.com", superadmin=True)

    for _ in range(3):
        client.login(both.email, WRONG)               # two failures, then the lock
    client.login(stranger.email, WRONG)
    client.login("nobody@example.com", WRONG)
    db.session.execute(update(User).where(User.id == both.id).values(locked_until=utcnow()))
    db.session.commit()
    assert client.login(both.email).status_code == 302
    client.post("/logout")

    def feed(admin, workspace):
        _, token = tokens.create_token(admin, workspace, "siem")
        body = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {token}"},
                          query_string={"action": "auth."}).json
        return [(e["actor_email"], e["action"]) for e in body["events"]]

    expected = {("both@example.com", "auth.login_failed"), ("both@example.com", "auth.locked"),
                ("both@example.com", "auth.login")}
    for admin, workspace in ((admin_a, a), (admin_b, b)):
        seen = feed(admin, workspace)
        assert expected <= set(seen), workspace.slug
        assert all(email == "both@example.com" for email, action in seen
                   if action.startswith("auth.login") or action == "auth.locked"), seen
        assert ("stranger@example.com", "auth.login_failed") not in seen
        assert ("nobody@example.com", "auth.login_failed") not in seen
        assert len([1 for e, act in seen if act == "auth.login_failed"]) == 3

    client.login(admin_a.email)
    page = client.get("/w/alpha/audit", query_string={"action": "auth."}).get_data(as_text=True)
    assert "both@example.com" in page and "stranger@example.com" not in page and "nobody@example.com" not in page
    client.post("/logout")
    client.login("root@example.com")
    everything = client.get("/admin/audit", query_string={"action": "auth.login_failed"}).get_data(as_text=True)
    assert "stranger@example.com" in everything and "nobody@example.com" in everything
