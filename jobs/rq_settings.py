"""Settings for RQ's own CLI (`rq worker -c jobs.rq_settings …`, `rq info -c jobs.rq_settings`).

RQ's `--url` takes only plain Redis URLs; with this module the CLI reads REDIS_URL the way the app
does (config.py), so a `redis+sentinel://` URL gives RQ its SENTINEL settings and workers follow
a failover like every other process.
"""
from config import load_config, parse_sentinel_url

_url = load_config()["REDIS_URL"]
_sentinel = parse_sentinel_url(_url)

if _sentinel is None:
    REDIS_URL = _url
else:
    SENTINEL = {
        "INSTANCES": list(_sentinel.sentinels),
        "MASTER_NAME": _sentinel.service,
        "DB": _sentinel.db,
        "USERNAME": _sentinel.username,
        "PASSWORD": _sentinel.password,
        # Bounded waits, as the app's client: a dead master is noticed instead of hanging a worker.
        "CONNECTION_KWARGS": {"socket_connect_timeout": 2},
        "SENTINEL_KWARGS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
