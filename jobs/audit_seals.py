"""Periodic audit sealing and the nightly verification (services/audit_seals.py).

`seal_audit` runs every minute from rq cron and seals when AUDIT_SEAL_MINUTES have passed since the
last seal (the interval is a setting, rq cron's schedule is fixed at import). Re-running is safe: a
seal covers only what arrived since the previous one. `verify_audit_seals` re-checks the last day's
seals every night; a failure is logged `[audit-verify] failed` (critical) and shown on Diagnostics.
"""
import logging
from datetime import timedelta

from jobs import app_job
from models import utcnow
from services import audit_seals

log = logging.getLogger("mc.jobs.audit_seals")


@app_job
def seal_audit():
    if not audit_seals.seal_due():
        return None
    rows = audit_seals.seal_all()  # an unreachable store raises: RQ records the failure, the next tick retries
    return [{"id": row.id, "events": row.events} for row in rows]


@app_job
def verify_audit_seals():
    result = audit_seals.verify(since=utcnow() - timedelta(days=1), source="nightly")
    return {"outcome": result.outcome, "events": result.events, "seals": result.seals}
