"""Readiness checks of the parts a request needs: database, Redis, audit store."""
from sqlalchemy import text

from extensions import db, redis_connection


def _check(fn):
    try:
        fn()
        return {"ok": True}
    except Exception as exc:  # a readiness probe reports any failure, it never raises
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}


def readiness():
    import audit

    def audit_store():
        if not audit.get_store().ping():
            raise RuntimeError("audit store unreachable (events go to the fallback file)")

    return {
        "database": _check(lambda: db.session.execute(text("SELECT 1"))),
        "redis": _check(lambda: redis_connection().ping()),
        "audit": _check(audit_store),
    }
