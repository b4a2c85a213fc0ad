"""Export jobs on the `exports` queue: build one export file; remove expired ones (periodic).

`build_export` is idempotent: a re-run after a crash rewrites the same generated file from the
start (the row is `done` only once the file is complete). Progress goes to `job.meta['progress']`
and to the Export row. When no retry is left, `on_export_failure` marks the row failed.
"""
import logging

from jobs import app_job, report_progress
from services import exports, file_store

log = logging.getLogger("mc.jobs.exports")


@app_job
def build_export(export_id):
    export = exports.build(export_id, on_progress=report_progress)
    if export is None:
        return None
    return {"state": export.state, "rows": export.rows}


@app_job
def expire_exports():
    removed = exports.expire()
    if removed:
        log.info("exports: %s expired export(s) removed", removed)
    abandoned = file_store.sweep_incomplete()   # files whose writer died (a killed build or upload)
    if abandoned:
        log.info("file store: %s incomplete file(s) removed", abandoned)
    return removed


def on_export_failure(job, connection, exc_type, exc_value, tb):
    """RQ failure callback: when no retry is left the export is marked failed (its file removed)."""
    if job.retries_left:
        return
    export_id = job.args[0] if job.args else None

    @app_job
    def mark(export_id):
            exports.mark_failed(export_id, f"Export stopped after retries: {exc_type.__name__}: {exc_value}")

    if export_id is not None:
        try:
            mark(export_id)
        except Exception:  # the callback must never hide RQ's own failure handling
            log.exception("could not record the failure of export %s", export_id)
