"""Evidence pack jobs on the `exports` queue: build one pack (services/evidence.py); remove expired
ones (periodic, beside `expire_exports`).

`build_evidence_pack` is idempotent: a re-run after a crash rewrites the same generated file from the
start (the row is `done` only once the ZIP is complete and hashed). When no retry is left,
`on_evidence_failure` marks the row failed.
"""
import logging

from jobs import app_job, report_progress
from services import evidence

log = logging.getLogger("mc.jobs.evidence")


@app_job
def build_evidence_pack(pack_id):
    pack = evidence.build(pack_id, on_progress=report_progress)
    if pack is None:
        return None
    return {"state": pack.state, "recipients": pack.recipients, "sha256": pack.sha256}


@app_job
def expire_evidence_packs():
    removed = evidence.expire()
    if removed:
        log.info("evidence: %s expired pack(s) removed", removed)
    return removed


@app_job
def _mark_failed(pack_id, message):
    evidence.mark_failed(pack_id, message)


def on_evidence_failure(job, connection, exc_type, exc_value, tb):
    """RQ failure callback: when no retry is left the pack is marked failed (its file removed)."""
    if job.retries_left:
        return
    pack_id = job.args[0] if job.args else None
    if pack_id is None:
        return
    try:
        _mark_failed(pack_id, f"Evidence pack stopped after retries: {exc_type.__name__}: {exc_value}")
    except Exception:  # the callback must never hide RQ's own failure handling
        log.exception("could not record the failure of evidence pack %s", pack_id)
