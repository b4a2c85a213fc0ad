"""Recipient jobs on the `uploads` queue: ingest an upload, plan a Spread campaign's days.

Both are idempotent and resumable: `ingest_upload` continues from the upload's committed byte
offset (a worker killed mid-chunk loses only the uncommitted chunk, which is read again), and
`plan_spread` is deterministic, so a re-run overwrites with the same days. Progress goes to the
Upload row and to `job.meta['progress']`.
"""
import logging

from rq import get_current_job

from extensions import db
from jobs import app_job
from models import Campaign
from models.recipients import Upload

log = logging.getLogger("mc.jobs.uploads")


def _report(progress):
    job = get_current_job()
    if job is not None:
        job.meta["progress"] = progress
        job.save_meta()


@app_job
def ingest_upload(upload_id):
    from services import recipients

    upload = recipients.ingest(upload_id, on_progress=_report)
    if upload is not None:
        _report(recipients.upload_status(upload, errors_limit=0))
        return {"state": upload.state, "accepted": upload.accepted, "rejected": upload.rejected}
    return None


@app_job
def plan_spread(campaign_id):
    """Assign Spread days (after submit moved a Spread campaign to Building), then finish the build."""
    from services import campaigns, spread

    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.mode != "Spread":
        return 0
    planned = spread.plan(campaign)
    _report({"planned": planned})
    db.session.refresh(campaign)
    active = db.session.execute(db.select(Upload.id).where(Upload.campaign_id == campaign_id,
                                                           Upload.state.in_(("queued", "running")))).first()
    if campaign.status == "Building" and active is None:  # an ingest in progress finishes the build itself
        campaigns.apply(campaign, "build_finished")
    return planned


def on_ingest_failure(job, connection, exc_type, exc_value, tb):
    """RQ failure callback: when no retry is left, the upload is marked failed (the campaign stays
    Building so an operator can re-enqueue; the status page shows the error)."""
    if job.retries_left:
        return
    upload_id = job.args[0] if job.args else None

    @app_job
    def mark(upload_id):
        db.session.execute(db.update(Upload).where(Upload.id == upload_id, Upload.state.in_(("queued", "running")))
                           .values(error=f"Ingest stopped after retries: {exc_type.__name__}: {exc_value}"[:500])
                           .execution_options(synchronize_session=False))
        db.session.commit()

    if upload_id is not None:
        try:
            mark(upload_id)
        except Exception:  # the callback must never hide RQ's own failure handling
            log.exception("could not record the failure of upload %s", upload_id)
