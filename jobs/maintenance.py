"""Periodic housekeeping: audit fallback flush and audit retention on the embedded store."""
import logging

import audit
from jobs import app_job

log = logging.getLogger("mc.jobs.maintenance")


@app_job
def flush_audit_fallback():
    """Move events buffered in the fallback file back into the audit store (no duplicates: UUIDs)."""
    moved = audit.get_store().flush_fallback()
    if moved:
        log.info("audit fallback: %s events flushed back to the store", moved)
    return moved


@app_job
def purge_audit():
    """Delete audit events older than the retention (MongoDB does this itself with its TTL index)."""
    return audit.get_store().purge_expired()
