"""Test fixtures: a real database (SQLite file, or PostgreSQL from DATABASE_URL) built by the
migrations, a real Redis (REDIS_URL, started by ./test.sh), the embedded audit store, and a
test client that sends the CSRF token like a browser does."""
import os
import re
import tempfile

import pytest
from flask import has_app_context
from flask.globals import _cv_app
from flask.testing import FlaskClient
from sqlalchemy import text

from app import create_app
from coresim.testing import client_config, sim_session, start_core
from extensions import db

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PASSWORD = "correct horse battery staple"


class BrowserLikeClient(FlaskClient):
    """A browser: sends the page's CSRF token with form POSTs (unless csrf=False), and every
    request runs in its own app context — own `g`, own DB session — as on a real server."""

    csrf_token = None

    def refresh_csrf(self):
        self.csrf_token = None
        for path in ("/login", "/account"):  # /login redirects once signed in
            match = CSRF_RE.search(self.get(path).get_data(as_text=True))
            if match:
                self.csrf_token = match.group(1)
                break
        return self.csrf_token

    def open(self, *args, **kwargs):
        send_csrf = kwargs.pop("csrf", True)
        method = kwargs.get("method", "GET")
        if send_csrf and method == "POST" and "json" not in kwargs and not kwargs.get("headers", {}).get("Authorization"):
            data = kwargs.setdefault("data", {})
            if isinstance(data, dict) and "csrf_token" not in data:
                data["csrf_token"] = self.csrf_token or self.refresh_csrf()
        # Hide the test's app context so Flask pushes a fresh one for this request.
        self._context_stack.close()
        preserve, self.preserve_context = self.preserve_context, False
        token = _cv_app.set(None)
        try:
            response = super().open(*args, **kwargs)
        finally:
            _cv_app.reset(token)
            self.preserve_context = preserve
        if has_app_context():
            db.session.expire_all()  # the test's session reads what the request committed
        return response

    def login(self, email, password=PASSWORD):
        self.refresh_csrf()
        response = self.post("/login", data={"email": email, "password": password})
        self.refresh_csrf()  # signing in starts a new session with a new token
        return response


@pytest.fixture(scope="session")
def _data_dir():
    with tempfile.TemporaryDirectory(prefix="mc-tests-") as path:
        yield path


@pytest.fixture(scope="session")
def app(_data_dir):
    config = {"TESTING": True, "MC_DATA_DIR": _data_dir, "SECRET_KEY": "test-secret",
              "AUDIT_EMBEDDED_DIR": os.path.join(_data_dir, "audit"), "SERVER_NAME": "mc.test",
              # Figures as they are now; tests/integration/test_dashboard.py checks the shared cache itself.
              "DASHBOARD_CACHE_SECONDS": 0,
              # One address signs in dozens of users per test; test_signin_attack.py sets its own limits.
              "LOGIN_RATE_LIMIT": "1000 per minute"}
    if not os.environ.get("DATABASE_URL"):
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{os.path.join(_data_dir, 'test.db')}"
    application = create_app(config)
    application.test_client_class = BrowserLikeClient
    with application.app_context():
        _rebuild_schema()
    return application


def _rebuild_schema():
    """Drop whatever a previous run left, then build the schema with the real migrations."""
    from flask_migrate import upgrade

    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as conn:  # tables, trigger functions, everything a run left behind
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        meta = db.MetaData()
        meta.reflect(bind=db.engine)
        meta.drop_all(bind=db.engine)
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade()


def _clean_tables():
    # DELETE in reverse dependency order: much cheaper than TRUNCATE on PostgreSQL for small tables.
    with db.engine.begin() as conn:
        for table in reversed(db.metadata.sorted_tables):
            if table.name == "workspaces":
                conn.execute(text("DELETE FROM workspaces WHERE slug <> 'master'"))
            else:
                conn.execute(table.delete())


@pytest.fixture(autouse=True)
def _isolated(app, tmp_path):
    """Every test starts with empty tables (Master workspace kept) and an empty audit store."""
    from audit.store import AuditStore

    saved_config = dict(app.config)  # a test may change settings; the next one starts from these
    app.extensions.pop("mc_settings_cache", None)  # run-time settings read afresh (services/settings.py)
    app.config["AUDIT_FALLBACK_PATH"] = str(tmp_path / "audit-fallback.jsonl")
    app.extensions["mc_audit"] = AuditStore(mongo_uri=None, embedded_dir=str(tmp_path / "audit"),
                                            fallback_path=app.config["AUDIT_FALLBACK_PATH"])
    with app.app_context():
        _clean_tables()
    ctx = app.app_context()
    ctx.push()
    yield
    db.session.remove()
    ctx.pop()
    app.extensions["mc_audit"].close()
    app.config.clear()
    app.config.update(saved_config)


@pytest.fixture(autouse=True)
def _cheap_argon2(request, monkeypatch):
    """Still argon2id, with the cheapest parameters (~1 ms instead of ~0.3 s per hash); tests
    marked `real_argon2` keep the shipped parameters."""
    if request.node.get_closest_marker("real_argon2") is None:
        from argon2 import PasswordHasher

        from services import passwords

        monkeypatch.setattr(passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def audit_events(app):
    """Read back audit events (newest first) from the store the app writes to."""
    def read(**filters):
        events, _ = app.extensions["mc_audit"].find(all_workspaces=True, limit=500, **filters)
        return events
    return read


@pytest.fixture(autouse=True)
def _fresh_rate_limits(app):
    """Every test starts with empty Flask-Limiter counters (per-IP sign-in limits, per-token Trigger
    limit) in the test Redis: ids and the test client's address repeat from test to test. The
    limiter is one object per process, so an app another test created (with another REDIS_URL) may
    have re-pointed it: bind it to the test app's Redis again first."""
    from extensions import limiter

    limiter.init_app(app)
    limiter._storage_dead = False  # a test may have left it on the in-memory fallback
    with app.app_context():
        limiter.reset()
    yield


# --- the reference Core (coresim) over real mutual TLS ------------------------------------------

@pytest.fixture(scope="module")
def core(request, tmp_path_factory):
    """The reference Core, in-process on a free port, one per test module. A module sets
    `CORE_LATENCY_SECONDS = …` to change the simulated latency (default 0.05 s); modules that need
    another Core define their own `core` fixture."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    server = start_core(str(tmp_path_factory.mktemp(f"{name}-core")),
                        latency_seconds=getattr(request.module, "CORE_LATENCY_SECONDS", 0.05), failure_ratio=0.0)
    yield server
    server.stop()


@pytest.fixture
def sim(core, app, monkeypatch):
    """A session on the simulator's /_sim/ endpoints, with the app's Core client pointed at `core`;
    the simulator is reset (counters, faults) before and after the test."""
    session = sim_session(core.certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    for key, value in client_config(core).items():
        monkeypatch.setitem(app.config, key, value)
    yield session
    session.post(core.url + "/_sim/reset").raise_for_status()
    session.close()
