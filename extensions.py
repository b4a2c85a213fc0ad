"""Extension instances, created unbound so that importing a module never connects to anything."""
import sqlite3
from typing import Any, cast

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from redis import Redis
from redis.sentinel import Sentinel
from sqlalchemy import CursorResult, MetaData, Result, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """The embedded SQLite database is shared by the web, worker and cron processes: WAL lets
    pages and status polls read while an ingest writes, and a writer waits for the lock instead
    of failing after the driver's default 5 s."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

# Stable constraint names so Alembic migrations are reviewable and reversible on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING))
migrate = Migrate(compare_type=True, render_as_batch=True)
login_manager = LoginManager()
csrf = CSRFProtect()
# Per-IP limits on the sign-in forms and the Trigger API's per-token limit; settings RATELIMIT_* in
# config.py (Redis storage, in-memory fallback while Redis is down).
limiter = Limiter(key_func=get_remote_address)


def redis_client(config, **options):
    """The one place a Redis client is built from the settings (web, jobs, the scheduler; RQ's CLI
    reads jobs/rq_settings.py, Flask-Limiter config.limits_storage_uri — all from config.py's parser).

    `config` is the settings mapping (the app's, or `load_config()`). When REDIS_URL names Sentinels
    (`REDIS_SENTINEL`), the client talks to the master they name: after a failover its next command
    goes to the new master (a command in flight fails with ConnectionError)."""
    sentinel = config["REDIS_SENTINEL"]
    if sentinel is None:
        return Redis.from_url(config["REDIS_URL"], **options)
    auth = {k: v for k, v in (("username", sentinel.username), ("password", sentinel.password)) if v}
    timeouts = {k: options[k] for k in ("socket_connect_timeout", "socket_timeout") if k in options}
    sentinels = Sentinel(list(sentinel.sentinels), sentinel_kwargs={**timeouts, **auth}, **timeouts)
    return sentinels.master_for(sentinel.service, db=sentinel.db, **auth, **options)


def redis_connection():
    """The app's Redis client (one per app, created on first use)."""
    conn = current_app.extensions.get("mc_redis")
    if conn is None:
        conn = redis_client(current_app.config, socket_connect_timeout=2, socket_timeout=10)
        current_app.extensions["mc_redis"] = conn
    return conn


def affected_rows(result: Result[Any]) -> int:
    """The rows an UPDATE / DELETE / INSERT changed. `Session.execute` is typed as returning a
    `Result`; for those statements it is a `CursorResult`, which has `rowcount`."""
    return cast(CursorResult[Any], result).rowcount


def dialect_insert(model: Any) -> postgresql.Insert | sqlite.Insert:
    """INSERT with the database's ON CONFLICT support (`on_conflict_do_nothing/update`): PostgreSQL's
    or SQLite's."""
    if db.engine.dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
