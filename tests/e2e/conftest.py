"""End-to-end harness: the real processes on free ports, driven by Playwright in Debian's Chromium.

A session fixture (`stack`) starts, with a fresh MC_DATA_DIR and a fresh database (a SQLite file
there, or — when DATABASE_URL names a PostgreSQL server — a new database on that server, dropped
afterwards), exactly what production runs:

- `flask db upgrade`, `flask certs dev`, `flask users create-superadmin`;
- the reference Core: `python -m coresim --port P --latency 0.3 --failure-ratio 0`;
- the web process: `gunicorn --config deploy/gunicorn.conf.py wsgi:app` on a free PORT;
- the Procfile's workers (`rq worker -w jobs.worker.AppWorker --with-scheduler …`, twice, and the
  Trigger lane's `rq worker -w jobs.worker.TriggerWorker trigger`) and its leased scheduler
  (`python -m jobs.scheduler jobs/cron.py`).

Redis is the one of REDIS_URL (./test.sh sets it), on a database number of its own (5–15, the
first empty one, claimed with a key) so the RQ queues never meet those of the other tests or of a
parallel run. Process logs and screenshots go to artifacts/e2e/. Everything is torn down by
process group at the end.

Without Chromium (`/usr/bin/chromium`, installed by ./test.sh / .ci/run with apt when missing) or
without Playwright the e2e tests are skipped with the reason; they never half-run.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import pytest
import requests

from tools.proctree import kill_tree
from tools.scratch import drop_database, free_port, fresh_database

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.path.join(ROOT, "artifacts", "e2e")
BIN = os.path.dirname(sys.executable)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-gpu"]
ADMIN_EMAIL = "root@e2e.example.org"
ADMIN_PASSWORD = "e2e super admin passphrase 2024"
CLAIM_KEY = "mc:e2e:claim"


def chromium_path():
    for candidate in (os.environ.get("MC_E2E_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def pytest_collection_modifyitems(config, items):
    """Skip (never fail) every e2e test when the browser or Playwright is not there."""
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright for Python is not installed (requirements-dev.txt)"
    if reason is None and chromium_path() is None:
        reason = ("Chromium not found at /usr/bin/chromium (./test.sh and .ci/run install it with "
                  "`apt-get install -y chromium` when apt is available)")
    if reason is None:
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.skip(reason=reason))




def _with_redis_db(url, number):
    """The same Redis server on database `number`: the path for tcp URLs, ?db= for unix sockets."""
    base, _, query = url.partition("?")
    params = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != "db"]
    if url.startswith("unix://"):
        params.append(("db", str(number)))
    else:
        scheme, rest = base.split("://", 1)
        base = f"{scheme}://{rest.split('/', 1)[0]}/{number}"
    return base + ("?" + urllib.parse.urlencode(params) if params else "")


def claim_redis_db(base_url):
    """The first empty database 5..15 of the server, claimed with a key (released by FLUSHDB)."""
    import redis

    for number in range(5, 16):
        url = _with_redis_db(base_url, number)
        conn = redis.Redis.from_url(url)
        if conn.dbsize() == 0 and conn.set(CLAIM_KEY, os.getpid(), nx=True, ex=3600):
            return url, conn
        conn.close()
    raise RuntimeError(f"no free Redis database between 5 and 15 on {base_url}")






class Stack:
    """The running installation: URLs, environment, and helpers to run `flask` commands."""

    def __init__(self):
        self.procs = {}
        self.logs = {}
        self.data_dir = tempfile.mkdtemp(prefix="mc-e2e-")
        self.db_handle = None
        self.redis_conn = None
        self.env = {}
        self.base_url = None

    def flask(self, *args, check=True):
        result = subprocess.run([os.path.join(BIN, "flask"), *args], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=120)
        with open(os.path.join(ARTIFACTS, "logs", "flask-cli.log"), "a", encoding="utf-8") as log:
            shown = ["***" if prev == "--password" else arg for prev, arg in zip(("",) + args, args)]
            log.write(f"$ flask {' '.join(shown)}\n{result.stdout}{result.stderr}\n")
        if check and result.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args[:2])} failed: {result.stderr[-2000:]}")
        return result.stdout

    def spawn(self, name, cmd):
        log = open(os.path.join(ARTIFACTS, "logs", f"{name}.log"), "w", encoding="utf-8")  # noqa: SIM115
        self.logs[name] = log
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def check_alive(self):
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited: {dead} (logs in {ARTIFACTS}/logs)")

    def start(self):
        os.makedirs(os.path.join(ARTIFACTS, "logs"), exist_ok=True)
        base_redis = os.environ.get("REDIS_URL")
        if not base_redis:
            pytest.skip("REDIS_URL is not set (./test.sh starts an embedded Redis and sets it)")
        redis_url, self.redis_conn = claim_redis_db(base_redis)
        db_url, self.db_handle = fresh_database(self.data_dir, "mc_e2e")
        web_port, core_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{web_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "CORE_", "MONGO_", "AUDIT_"))}
        env.update(MC_DATA_DIR=self.data_dir, DATABASE_URL=db_url, REDIS_URL=redis_url, SECRET_KEY=uuid.uuid4().hex,
                   MC_PRODUCTION="0", CORE_URL=f"https://127.0.0.1:{core_port}", PORT=str(web_port),
                   FLASK_APP="app:create_app", PYTHONUNBUFFERED="1", WEB_WORKERS="2", WEB_THREADS="8")
        env.pop("MAIL_SERVER", None)  # invitations go to the Outbox page, where the scenario reads them
        self.env = env
        self.flask("db", "upgrade")
        self.flask("certs", "dev")
        self.flask("users", "create-superadmin", "--email", ADMIN_EMAIL, "--password", ADMIN_PASSWORD)
        self.spawn("coresim", [sys.executable, "-m", "coresim", "--port", str(core_port), "--latency", "0.3",
                               "--failure-ratio", "0"])
        self.spawn("web", [os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"])
        # The Procfile's processes (bulk worker, Trigger-lane worker, leased scheduler), with the settings
        # module the Procfile gives RQ's CLI (it reads REDIS_URL like the app does).
        rq_worker = [os.path.join(BIN, "rq"), "worker", "-c", "jobs.rq_settings", "--maintenance-interval", "30",
                     "--path", "."]
        self.spawn("worker", [*rq_worker, "-w", "jobs.worker.AppWorker", "--with-scheduler",
                              "uploads", "dispatch", "exports", "default"])
        # A second bulk worker that takes the other queues first. With one worker the periodic dispatch
        # jobs keep `dispatch` non-empty, and RQ serves queues in order, so `exports` and `default` starve.
        self.spawn("worker-2", [*rq_worker, "-w", "jobs.worker.AppWorker", "--with-scheduler",
                                "exports", "uploads", "default", "dispatch"])
        self.spawn("worker-trigger", [*rq_worker, "-w", "jobs.worker.TriggerWorker", "trigger"])
        self.spawn("cron", [sys.executable, "-m", "jobs.scheduler", "--logging-level", "warning", "jobs/cron.py"])
        self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            self.check_alive()
            try:
                response = requests.get(self.base_url + "/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text[:300]
            except requests.RequestException as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise RuntimeError(f"the portal did not become ready: {last}")

    def stop(self):
        for name, proc in reversed(list(self.procs.items())):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for name, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            kill_tree(proc)   # work horses live in process groups of their own
        for log in self.logs.values():
            log.close()
        if self.redis_conn is not None:
            try:
                self.redis_conn.flushdb()
            except Exception:  # noqa: BLE001 - the Redis of ./test.sh may be gone already
                pass
        drop_database(self.db_handle)
        shutil.rmtree(self.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(os.path.join(ARTIFACTS, "logs"), exist_ok=True)
    installation = Stack()
    try:
        installation.start()
        yield installation
    finally:
        installation.stop()


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_instance):
    browser = playwright_instance.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS,
                                                  headless=True)
    yield browser
    browser.close()


class Shots:
    """Numbered full-page screenshots under artifacts/e2e/<folder>/."""

    def __init__(self, folder):
        self.folder = os.path.join(ARTIFACTS, folder)
        os.makedirs(self.folder, exist_ok=True)
        self.n = 0

    def __call__(self, page, name):
        self.n += 1
        page.screenshot(path=os.path.join(self.folder, f"{self.n:02d}-{name}.png"), full_page=True)


@pytest.fixture
def new_context(browser, stack):
    """Open browser contexts (one per person) on the portal; all are closed after the test."""
    contexts = []

    def make(**kwargs):
        context = browser.new_context(base_url=stack.base_url, viewport={"width": 1280, "height": 900},
                                      accept_downloads=True, **kwargs)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def sign_in(page, email, password):
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


@pytest.fixture(autouse=True)
def _isolated():
    """The suite-wide fixture cleans the in-process test database; the e2e tests never touch it (they
    drive their own processes and database), so they do not depend on it."""
    yield
