"""Every setting of Message Center, read from the environment.

A `.env` file in the working directory is read when present (real environment variables
win). Defaults give the embedded mode: SQLite, embedded Redis and the embedded audit store
under `MC_DATA_DIR`, so `./run.sh` works on a machine with nothing but python3.
"""
import os
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import unquote

from dotenv import load_dotenv


class ConfigError(RuntimeError):
    """The configuration cannot run (e.g. production mode without SECRET_KEY)."""


def _bool(value, default=False):
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env, name, default):
    raw = env.get(name)
    return int(raw) if raw not in (None, "") else default


# Settings whose environment variable has another name than the setting itself.
ENV_NAMES = {"SQLALCHEMY_DATABASE_URI": "DATABASE_URL", "WTF_CSRF_TIME_LIMIT": "CSRF_TIME_LIMIT_SECONDS",
             "MAX_CONTENT_LENGTH": "MAX_FORM_BYTES"}


def load_config(overrides=None, env=None):
    """Build the Flask config mapping from the environment plus explicit overrides."""
    if env is None:
        load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
        env = os.environ
    overrides = dict(overrides or {})

    data_dir = os.path.abspath(overrides.get("MC_DATA_DIR") or env.get("MC_DATA_DIR") or "instance")
    production = _bool(env.get("MC_PRODUCTION"), False) or env.get("FLASK_ENV") == "production"
    core_port = _int(env, "CORE_PORT", 8443)

    cfg = {
        "MC_DATA_DIR": data_dir,
        "MC_PRODUCTION": production,
        "SECRET_KEY": env.get("SECRET_KEY"),
        "CTN_HASH_KEY": env.get("CTN_HASH_KEY") or None,
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL") or f"sqlite:///{os.path.join(data_dir, 'mc.db')}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        # A plain redis:// or unix:// URL, or Sentinels: redis+sentinel://[:password@]host:26379,host2:26379/mymaster/0
        "REDIS_URL": env.get("REDIS_URL") or f"unix://{os.path.join(data_dir, 'redis.sock')}",
        # Where upload spools and export files live: "local" (MC_DATA_DIR, one host) or "database"
        # (chunks in the main database, for hosts without a shared disk); default: database on PostgreSQL.
        "FILE_STORE": env.get("FILE_STORE") or None,
        # Bytes per stored chunk of the database file store.
        "FILE_STORE_CHUNK_BYTES": _int(env, "FILE_STORE_CHUNK_BYTES", 1024 * 1024),
        # Standby scheduler (jobs/scheduler.py): the lease's lifetime; the active one renews it every third of it.
        "SCHEDULER_LEASE_SECONDS": _int(env, "SCHEDULER_LEASE_SECONDS", 6),
        "MONGO_URI": env.get("MONGO_URI") or None,
        "AUDIT_EMBEDDED_DIR": os.path.join(data_dir, "audit"),
        "AUDIT_FALLBACK_PATH": env.get("AUDIT_FALLBACK_PATH") or os.path.join(data_dir, "audit-fallback.jsonl"),
        "AUDIT_FALLBACK_MAX_BYTES": _int(env, "AUDIT_FALLBACK_MAX_BYTES", 200 * 1024 * 1024),
        "AUDIT_RETENTION_DAYS": _int(env, "AUDIT_RETENTION_DAYS", 90),
        # Sealed audit checkpoints (services/audit_seals.py): minutes between seals; how old (seconds) an
        # arrival must be before a seal covers it (slow writes and clock skew between hosts); the HMAC
        # key of the seals (default: derived from SECRET_KEY, like CTN_HASH_KEY).
        "AUDIT_SEAL_MINUTES": _int(env, "AUDIT_SEAL_MINUTES", 5),
        "AUDIT_SEAL_GRACE_SECONDS": _int(env, "AUDIT_SEAL_GRACE_SECONDS", 30),
        "AUDIT_SEAL_KEY": env.get("AUDIT_SEAL_KEY") or None,
        # The reference Core (coresim) listens on CORE_PORT; unset CORE_URL follows it (issue 17).
        "CORE_PORT": core_port,
        "CORE_URL": env.get("CORE_URL") or f"https://127.0.0.1:{core_port}",
        "CORE_CLIENT_CERT": env.get("CORE_CLIENT_CERT") or os.path.join(data_dir, "certs", "client.pem"),
        "CORE_CLIENT_KEY": env.get("CORE_CLIENT_KEY") or os.path.join(data_dir, "certs", "client.key"),
        "CORE_CA": env.get("CORE_CA") or os.path.join(data_dir, "certs", "ca.pem"),
        "CORE_CONNECT_TIMEOUT": float(env.get("CORE_CONNECT_TIMEOUT") or 5),
        "CORE_READ_TIMEOUT": float(env.get("CORE_READ_TIMEOUT") or 30),
        "CORE_SLOW_SECONDS": float(env.get("CORE_SLOW_SECONDS") or 5),
        "CORE_LARGE_BYTES": _int(env, "CORE_LARGE_BYTES", 8 * 1024 * 1024),
        "CORE_MAX_RESPONSE_BYTES": _int(env, "CORE_MAX_RESPONSE_BYTES", 64 * 1024 * 1024),
        "UPLOAD_CHUNK_LINES": _int(env, "UPLOAD_CHUNK_LINES", 50_000),
        "UPLOAD_BROWSER_MAX_BYTES": _int(env, "UPLOAD_BROWSER_MAX_BYTES", 50 * 1024 * 1024),
        "UPLOAD_API_MAX_BYTES": _int(env, "UPLOAD_API_MAX_BYTES", 1024 * 1024 * 1024),
        "UPLOAD_ERRORS_STORED": _int(env, "UPLOAD_ERRORS_STORED", 1000),
        "DISPATCH_BATCH_SIZE": _int(env, "DISPATCH_BATCH_SIZE", 500),
        "DISPATCH_PARALLEL": _int(env, "DISPATCH_PARALLEL", 2),
        "DISPATCH_TIME_BUDGET": _int(env, "DISPATCH_TIME_BUDGET", 20),
        "DISPATCH_LEASE_SECONDS": _int(env, "DISPATCH_LEASE_SECONDS", 60),
        "STALLED_JOB_SECONDS": _int(env, "STALLED_JOB_SECONDS", 60),
        # Dispatch under faults (services/dispatch.py, docs/operations.md "Dispatch under faults").
        "DISPATCH_BACKOFF_BASE_SECONDS": float(env.get("DISPATCH_BACKOFF_BASE_SECONDS") or 2),
        "DISPATCH_BACKOFF_MAX_SECONDS": float(env.get("DISPATCH_BACKOFF_MAX_SECONDS") or 300),
        "DISPATCH_RESUBMIT_SECONDS": float(env.get("DISPATCH_RESUBMIT_SECONDS") or 30),
        "DISPATCH_MAX_REFUSALS": _int(env, "DISPATCH_MAX_REFUSALS", 3),
        "DISPATCH_BREAKER_REJECTIONS": _int(env, "DISPATCH_BREAKER_REJECTIONS", 500),
        "DISPATCH_GIVE_UP_MINUTES": float(env.get("DISPATCH_GIVE_UP_MINUTES") or 60),
        "EXPORT_TTL_HOURS": _int(env, "EXPORT_TTL_HOURS", 24),
        "DASHBOARD_CACHE_SECONDS": _int(env, "DASHBOARD_CACHE_SECONDS", 5),
        "METRICS_TOKEN": env.get("METRICS_TOKEN") or None,
        # Directory whose Prometheus multiprocess files (*.db in it and in its subdirectories) /metrics
        # merges: every process kind of this host writes under it (docs/operations.md §8); unset = this
        # process's own PROMETHEUS_MULTIPROC_DIR only.
        "METRICS_COLLECT_DIR": env.get("METRICS_COLLECT_DIR") or None,
        "PREFLIGHT_MIN_RECIPIENTS": _int(env, "PREFLIGHT_MIN_RECIPIENTS", 100_000),
        # Messages per hour the wizard's estimate assumes (10/s: a conservative share of one Core channel).
        "CAMPAIGN_NOMINAL_RATE_PER_HOUR": _int(env, "CAMPAIGN_NOMINAL_RATE_PER_HOUR", 36_000),
        "CORE_PROBE_TIMEOUT": float(env.get("CORE_PROBE_TIMEOUT") or 3),
        "TRIGGER_RATE_PER_MINUTE": _int(env, "TRIGGER_RATE_PER_MINUTE", 600),
        # Seconds one Trigger-lane job may keep claiming before it yields (services/trigger_lane.py):
        # short, so that the lane's in-process worker heart-beats well inside STALLED_JOB_SECONDS.
        "TRIGGER_TIME_BUDGET": float(env.get("TRIGGER_TIME_BUDGET") or 5),
        # Sign-in cost (services/passwords.py): verification slots per web process, how many requests
        # may queue for one (each holds a web thread: keep it below WEB_THREADS - SIGNIN_CONCURRENCY)
        # and for how long, before "busy, try again" (503); per-IP limits (Flask-Limiter syntax).
        "SIGNIN_CONCURRENCY": _int(env, "SIGNIN_CONCURRENCY", 1),
        "SIGNIN_WAIT_SECONDS": float(env.get("SIGNIN_WAIT_SECONDS") or 5),
        "SIGNIN_MAX_WAITING": _int(env, "SIGNIN_MAX_WAITING", 28),
        "LOGIN_RATE_LIMIT": env.get("LOGIN_RATE_LIMIT") or "30 per minute",
        "TOTP_RATE_LIMIT": env.get("TOTP_RATE_LIMIT") or "10 per minute",
        "TOTP_REQUIRED_FOR_ADMINS": _bool(env.get("TOTP_REQUIRED_FOR_ADMINS")),
        "TOTP_PASSWORD_MIN_LENGTH": _int(env, "TOTP_PASSWORD_MIN_LENGTH", 8),
        "TOTP_ISSUER": env.get("TOTP_ISSUER") or "Message Center",
        "SESSION_TOUCH_SECONDS": _int(env, "SESSION_TOUCH_SECONDS", 300),
        "TOKEN_DEFAULT_DAYS": _int(env, "TOKEN_DEFAULT_DAYS", 90),
        "TOKEN_MAX_DAYS": _int(env, "TOKEN_MAX_DAYS", 365),
        "GDPR_MODE": _bool(env.get("GDPR_MODE")),
        "GDPR_RETENTION_DAYS": _int(env, "GDPR_RETENTION_DAYS", 30),
        "GDPR_BATCH_SIZE": _int(env, "GDPR_BATCH_SIZE", 5000),
        "GDPR_TIME_BUDGET": _int(env, "GDPR_TIME_BUDGET", 240),
        "MAIL_SERVER": env.get("MAIL_SERVER") or None,
        "MAIL_PORT": _int(env, "MAIL_PORT", 25),
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_FROM": env.get("MAIL_FROM") or "message-center@localhost",
        "MAIL_TIMEOUT": _int(env, "MAIL_TIMEOUT", 10),
        "GRAFANA_URL": env.get("GRAFANA_URL") or None,
        "PUBLIC_URL": (env.get("PUBLIC_URL") or "").rstrip("/") or None,
        "PROXY_FIX_HOPS": _int(env, "PROXY_FIX_HOPS", 0),
        "PROXY_FIX_TRUST_HOST": _bool(env.get("PROXY_FIX_TRUST_HOST")),
        "LOCKOUT_THRESHOLD": _int(env, "LOCKOUT_THRESHOLD", 3),
        "LOCKOUT_SECONDS": _int(env, "LOCKOUT_SECONDS", 60),
        "INVITATION_DAYS": _int(env, "INVITATION_DAYS", 7),
        "IDLE_TIMEOUT_MINUTES": _int(env, "IDLE_TIMEOUT_MINUTES", 30),
        "PASSWORD_MIN_LENGTH": _int(env, "PASSWORD_MIN_LENGTH", 15),
        # How long a process keeps the policy settings edited on /admin/settings before reading them
        # again from the database (services/settings.py): a change is in force everywhere within it.
        "SETTINGS_CACHE_SECONDS": float(env.get("SETTINGS_CACHE_SECONDS") or 5),
        # Flask / extensions
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), production),
        "SESSION_COOKIE_NAME": "mc_session",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "SESSION_REFRESH_EACH_REQUEST": True,
        # A form's CSRF token expires (the page then says so and nothing is changed).
        "WTF_CSRF_TIME_LIMIT": _int(env, "CSRF_TIME_LIMIT_SECONDS", 3600),
        # Flask-Limiter: shared counters in the app's Redis (RATELIMIT_STORAGE_URI is derived from
        # REDIS_URL below); while Redis is unreachable each process limits on its own (in memory).
        "RATELIMIT_STRATEGY": "moving-window",
        "RATELIMIT_KEY_PREFIX": "mc",
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_STORAGE_OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        "WTF_CSRF_HEADERS": ["X-CSRFToken", "X-CSRF-Token"],
        "MAX_CONTENT_LENGTH": _int(env, "MAX_FORM_BYTES", 1024 * 1024),
        "MAX_FORM_MEMORY_SIZE": 500 * 1024,
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "TESTING": False,
    }
    cfg.update(overrides)
    # Which settings the environment (or the caller's explicit configuration) fixed: those win over a
    # value a super admin stored in the database, and /admin/settings shows where each value comes from.
    cfg["SETTINGS_FROM_ENV"] = frozenset(
        key for key in cfg if key in overrides or env.get(ENV_NAMES.get(key, key)) not in (None, ""))
    cfg["PERMANENT_SESSION_LIFETIME"] = timedelta(minutes=cfg["IDLE_TIMEOUT_MINUTES"])
    cfg["RATELIMIT_STORAGE_URI"] = limits_storage_uri(cfg["REDIS_URL"])
    # Derived, never set: REDIS_URL parsed when it names Sentinels (extensions.redis_client reads it).
    cfg["REDIS_SENTINEL"] = sentinel = parse_sentinel_url(cfg["REDIS_URL"])
    if sentinel is not None:  # `limits` takes the database number as a connection option
        cfg["RATELIMIT_STORAGE_OPTIONS"] = {**cfg["RATELIMIT_STORAGE_OPTIONS"], "db": sentinel.db}
    if not cfg["FILE_STORE"]:
        cfg["FILE_STORE"] = "database" if cfg["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else "local"
    if cfg["FILE_STORE"] not in FILE_STORES:
        raise ConfigError(f"FILE_STORE must be one of {', '.join(FILE_STORES)} (got {cfg['FILE_STORE']!r}).")

    if not cfg["SECRET_KEY"]:
        if cfg["MC_PRODUCTION"]:
            raise ConfigError("SECRET_KEY must be set in production mode (MC_PRODUCTION=1).")
        cfg["SECRET_KEY"] = _dev_secret(data_dir)
    if not cfg["CTN_HASH_KEY"]:
        # ctn_hash keys (one per workspace) are derived from this; see services/numbers.py.
        cfg["CTN_HASH_KEY"] = cfg["SECRET_KEY"]
    if not cfg["AUDIT_SEAL_KEY"]:
        cfg["AUDIT_SEAL_KEY"] = cfg["SECRET_KEY"]  # the service derives its own key from it
    cfg["SETTINGS_DECLARED"] = frozenset(cfg) | {"SETTINGS_DECLARED"}  # what /admin/settings lists
    return cfg


FILE_STORES = ("local", "database")
SENTINEL_SCHEME = "redis+sentinel://"


@dataclass(frozen=True)
class SentinelUrl:
    """`redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`, parsed."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url):
    """A SentinelUrl for a `redis+sentinel://` URL, None for any other URL; ConfigError when malformed."""
    if not url or not url.startswith(SENTINEL_SCHEME):
        return None
    rest = url[len(SENTINEL_SCHEME):].split("?", 1)[0]
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, sep, pw = auth.partition(":")
        username, password = (unquote(user) or None), (unquote(pw) if sep else None)
    sentinels = []
    for item in filter(None, (part.strip() for part in netloc.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "26379"
        try:
            sentinels.append((host.strip("[]"), int(port)))
        except ValueError:
            raise ConfigError(f"REDIS_URL: bad Sentinel address {item!r} (host:port).") from None
    parts = [p for p in path.split("/") if p]
    if not sentinels or not parts or len(parts) > 2:
        raise ConfigError("REDIS_URL: a Sentinel URL is redis+sentinel://host:26379[,host2:26379]/<master name>[/db].")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ConfigError(f"REDIS_URL: the database number {parts[1]!r} is not a number.") from None
    return SentinelUrl(tuple(sentinels), parts[0], db, username, password)


def limits_storage_uri(redis_url):
    """The `limits` library names a unix-socket Redis `redis+unix://`; TCP URLs are the same. For
    Sentinels it takes `redis+sentinel://hosts/service` (the database number goes in the options)."""
    sentinel = parse_sentinel_url(redis_url)
    if sentinel is not None:
        auth = redis_url[len(SENTINEL_SCHEME):].split("/", 1)[0]
        return SENTINEL_SCHEME + auth + "/" + sentinel.service
    return "redis+" + redis_url if redis_url.startswith("unix://") else redis_url


def _dev_secret(data_dir):
    """A per-installation random key kept under MC_DATA_DIR, so dev restarts keep sessions."""
    path = os.path.join(data_dir, "secret_key")
    try:
        with open(path, encoding="ascii") as fh:
            key = fh.read().strip()
            if key:
                return key
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, mode=0o700, exist_ok=True)  # private: see services/private_files.py
    key = os.urandom(32).hex()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this installation won the race
        return _dev_secret(data_dir)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key
