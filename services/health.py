"""Readiness checks of the parts a request needs: database, Redis, audit store.

`/readyz` is public, so it answers status words only ("ok" / "down"); what went wrong — exception
texts naming hosts, ports and paths — goes to the log (`mc.health`)."""
import logging

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

import audit
from extensions import db, redis_connection

log = logging.getLogger("mc.health")


class AuditStoreDown(RuntimeError):
    pass


def _check(name, fn, errors):
    try:
        fn()
    except errors as exc:  # a readiness probe reports the failure (the log has the detail); it never raises
        log.warning("readyz: %s down: %s: %s", name, type(exc).__name__, exc)
        if name == "database":
            db.session.rollback()
        return "down"
    return "ok"


def readiness():
    """{"database": "ok"|"down", "redis": …, "audit": …}."""
    def audit_store():
        if not audit.get_store().ping():
            raise AuditStoreDown("audit store unreachable (events go to the fallback file)")

    return {
        "database": _check("database", lambda: db.session.execute(text("SELECT 1")), (SQLAlchemyError, OSError)),
        "redis": _check("redis", lambda: redis_connection().ping(), (RedisError, OSError)),
        "audit": _check("audit", audit_store, (AuditStoreDown, OSError)),
    }
