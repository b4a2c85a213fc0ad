"""System settings: the one lookup path for the policy settings a super admin may change at run time.

Every setting is declared in config.py and read as config["X"]. Seven of them are *policy* settings
(`POLICY`) that /admin/settings and `flask settings set` may change without a restart: the value is
stored in `system_settings`, and `value(key)` — used by the web processes and the workers alike —
answers, in this order:
1. the environment (or the app's explicit configuration), when it sets the key — it always wins;
2. the database row, read at most every SETTINGS_CACHE_SECONDS per process (one query for all keys);
3. the default declared in config.py.
So a change is in force in every process within SETTINGS_CACHE_SECONDS (5 s by default, ≤ 10 s).
"""
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

import audit
from extensions import db
from models import SystemSetting, utcnow
from services.errors import DomainError

log = logging.getLogger("mc.settings")
CACHE_KEY = "mc_settings_cache"
# Shown only as "set" / "not set" (and any future *_PASSWORD, *_TOKEN, *_SECRET setting).
SECRET_SUFFIXES = ("SECRET_KEY", "CTN_HASH_KEY", "AUDIT_SEAL_KEY", "_PASSWORD", "_TOKEN", "_SECRET")
URL_SETTINGS = ("SQLALCHEMY_DATABASE_URI", "REDIS_URL", "MONGO_URI", "RATELIMIT_STORAGE_URI")


@dataclass(frozen=True)
class Policy:
    key: str
    kind: type  # int or bool
    low: int
    high: int
    meaning: str


POLICY = {p.key: p for p in (
    Policy("LOCKOUT_THRESHOLD", int, 1, 100, "failed sign-ins in a row before the account is locked"),
    Policy("LOCKOUT_SECONDS", int, 1, 86_400, "how long a locked account stays locked (seconds)"),
    Policy("IDLE_TIMEOUT_MINUTES", int, 1, 1_440, "a browser session ends after this many idle minutes"),
    Policy("PASSWORD_MIN_LENGTH", int, 8, 128, "minimum password length without a second factor"),
    Policy("TOTP_REQUIRED_FOR_ADMINS", bool, 0, 1, "admins and super admins must enrol a second factor"),
    Policy("AUDIT_RETENTION_DAYS", int, 1, 3_650, "audit events are deleted after this many days"),
    Policy("GDPR_RETENTION_DAYS", int, 1, 3_650, "default days before numbers are anonymised (GDPR mode)"),
)}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class _Cache:
    """One per app: the stored policy values and when they were read."""

    def __init__(self):
        self.lock = threading.Lock()
        self.values: dict[str, str] = {}
        self.read_at = float("-inf")


def _cache():
    cache = current_app.extensions.get(CACHE_KEY)
    if cache is None:
        cache = current_app.extensions.setdefault(CACHE_KEY, _Cache())
    return cache


def forget_cached():
    """The next `value()` in this process reads the database again (after a change here, in tests)."""
    _cache().read_at = float("-inf")


def _stored():
    cache = _cache()
    now = time.monotonic()
    if now - cache.read_at >= float(current_app.config["SETTINGS_CACHE_SECONDS"]):
        with cache.lock:
            if now - cache.read_at >= float(current_app.config["SETTINGS_CACHE_SECONDS"]):
                # Its own short connection: never joins (or flushes) the caller's transaction.
                try:
                    with db.engine.connect() as conn:
                        rows = conn.execute(select(SystemSetting.key, SystemSetting.value)).all()
                    cache.values = {key: text for key, text in rows if key in POLICY}
                except SQLAlchemyError as exc:  # database unreachable: keep the last values read
                    log.warning("[settings] could not read system settings, keeping the last ones: %s", exc)
                cache.read_at = time.monotonic()
    return cache.values


def propagation_seconds():
    return float(current_app.config["SETTINGS_CACHE_SECONDS"])


def _from_env(key):
    return key in current_app.config["SETTINGS_FROM_ENV"]


def value(key):
    """The effective value of a policy setting (environment > database > default)."""
    policy = POLICY[key]
    if not _from_env(key):
        text = _stored().get(key)
        if text is not None:
            return parse(policy, text)
    return current_app.config[key]


def source(key):
    """'environment', 'database' or 'default' for any setting."""
    if _from_env(key):
        return "environment"
    if key in POLICY and key in _stored():
        return "database"
    return "default"


def parse(policy, text):
    """Text (a form field, the CLI, a stored row) -> the setting's value, or a DomainError."""
    raw = str(text).strip().lower()
    if policy.kind is bool:
        if raw in TRUE_WORDS:
            return True
        if raw in FALSE_WORDS:
            return False
        raise DomainError(f"{policy.key} must be on or off (true/false, 1/0).", code="invalid_setting")
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 12:
        raise DomainError(f"{policy.key} must be a whole number from {policy.low} to {policy.high}.",
                          code="invalid_setting")
    number = int(raw)
    if not policy.low <= number <= policy.high:
        raise DomainError(f"{policy.key} must be from {policy.low} to {policy.high} (got {number}).",
                          code="invalid_setting")
    return number


def policy_of(key):
    policy = POLICY.get(str(key or "").strip().upper())
    if policy is None:
        raise DomainError(f"{key!r} cannot be changed at run time; editable settings: {', '.join(POLICY)}.",
                          code="unknown_setting")
    return policy


def change(key, text, *, actor_id=None, actor_email=None):
    """Store a policy setting (validated, audited with before/after). Returns the stored value.
    When the environment sets the key the row is still stored, but the environment stays in force."""
    policy = policy_of(key)
    new = parse(policy, text)
    before = value(policy.key)
    row = db.session.get(SystemSetting, policy.key)
    old_stored = row.value if row else None
    stored = str(int(new)) if policy.kind is bool else str(new)
    if row is None:
        row = SystemSetting(key=policy.key, value=stored, updated_at=utcnow(), updated_by=actor_id)
        db.session.add(row)
    else:
        row.value, row.updated_at, row.updated_by = stored, utcnow(), actor_id
    db.session.commit()
    forget_cached()
    if policy.key == "AUDIT_RETENTION_DAYS":  # the TTL index (MongoDB) follows at the next write
        audit.get_store().use_retention(value(policy.key))
    audit.record("settings.changed", object_type="setting", object_id=policy.key, actor_email=actor_email,
                 before={"value": before, "stored": old_stored}, after={"value": value(policy.key), "stored": stored},
                 note="the environment sets this key and stays in force" if _from_env(policy.key) else None)
    return new


def reset(key, *, actor_id=None):
    """Forget the stored value: the environment or the default applies again."""
    policy = policy_of(key)
    row = db.session.get(SystemSetting, policy.key)
    if row is None:
        return
    before = value(policy.key)
    db.session.delete(row)
    db.session.commit()
    forget_cached()
    if policy.key == "AUDIT_RETENTION_DAYS":
        audit.get_store().use_retention(value(policy.key))
    audit.record("settings.reset", object_type="setting", object_id=policy.key,
                 before={"value": before, "stored": row.value}, after={"value": value(policy.key), "stored": None})


def _shown(key, current):
    """What the page shows: secrets only as set / not set, URLs without their password."""
    if key in URL_SETTINGS:
        if not current:
            return "not set"
        parts = urlsplit(str(current))
        if parts.password:
            host = parts.hostname or ""
            netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit(parts._replace(netloc=netloc))
        return str(current)
    if key.endswith(SECRET_SUFFIXES):
        return "set" if current else "not set"
    return str(current)


def overview():
    """Every declared setting: key, shown value, source, editable (with range) — for the page and CLI."""
    cfg = current_app.config
    rows = []
    for key in sorted(cfg["SETTINGS_DECLARED"] - {"SETTINGS_DECLARED", "SETTINGS_FROM_ENV"}):
        policy = POLICY.get(key)
        current = value(key) if policy else cfg[key]
        rows.append({"key": key, "value": _shown(key, current), "source": source(key),
                     "editable": policy is not None, "policy": policy,
                     "env_wins": policy is not None and _from_env(key)})
    return rows
