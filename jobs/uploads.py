"""Recipient jobs on the `uploads` queue: ingest an upload, plan a Spread campaign's days.

Both are idempotent and resumable: `ingest_upload` continues from the upload's committed byte
offset (a worker killed mid-chunk loses only the uncommitted chunk, which is read again), and
`plan_spread` is deterministic, so a re-run overwrites with the same days. Progress goes to the
Upload row and to `job.meta['progress']`.
"""
import logging
from datetime import timedelta

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from extensions import db, redis_connection
from jobs import app_job, report_progress
from models import Campaign, utcnow
from models.recipients import Upload
from models.states import CampaignStatus as S
from models.states import Mode, UploadState
from services import campaigns, recipients, spread

log = logging.getLogger("mc.jobs.uploads")
UNFINISHED = (UploadState.QUEUED, UploadState.RUNNING)


@app_job
def ingest_upload(upload_id):
    upload = recipients.ingest(upload_id, on_progress=report_progress)
    if upload is not None:
        report_progress(recipients.upload_status(upload, errors_limit=0))
        return {"state": upload.state, "accepted": upload.accepted, "rejected": upload.rejected}
    return None


@app_job
def plan_spread(campaign_id):
    """Assign Spread days (after submit moved a Spread campaign to Building), then finish the build."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or campaign.mode != Mode.SPREAD:
        return 0
    planned = spread.plan(campaign)
    report_progress({"planned": planned})
    db.session.refresh(campaign)
    active = db.session.execute(db.select(Upload.id).where(Upload.campaign_id == campaign_id,
                                                           Upload.state.in_(UNFINISHED))).first()
    if campaign.status == S.BUILDING and active is None:  # an ingest in progress finishes the build itself
        campaigns.apply(campaign, "build_finished")
    return planned


def on_ingest_failure(job, connection, exc_type, exc_value, tb):
    """RQ failure callback: when no retry is left, the upload fails like a bad file would — its
    rows removed, one job error, the draft back to New — so no campaign stays Building for good."""
    if job.retries_left:
        return
    upload_id = job.args[0] if job.args else None

    @app_job
    def give_up(upload_id):
        first_line = (str(exc_value).splitlines() or [""])[0]
        recipients.fail_upload(upload_id, _gave_up_message(f"{exc_type.__name__}: {first_line}"))

    if upload_id is not None:
        try:
            give_up(upload_id)
        except Exception:  # the callback must never hide RQ's own failure handling
            log.exception("could not record the failure of upload %s", upload_id)


def _gave_up_message(reason):
    # The action first: the job error column keeps 200 characters; the worker log has the rest.
    return (f"The ingest stopped after its retries; nothing from this file was kept. Upload it again "
            f"(if that fails too, see the worker log): {reason}")


@app_job
def sweep_uploads(grace_seconds=120):
    """Periodic (rq cron): an upload whose RQ job is gone — a Redis that lost its data — is queued
    again and resumes from its committed offset; one whose job failed with no retry left (a worker
    killed for good, where no failure callback ran) is failed. Returns (requeued, failed)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    stalled = db.session.execute(db.select(Upload.id, Upload.job_id).where(
        Upload.state.in_(UNFINISHED), Upload.created_at < cutoff)).all()
    requeued = failed = 0
    for upload_id, job_id in stalled:
        try:
            job = Job.fetch(job_id, connection=redis_connection()) if job_id else None
        except NoSuchJobError:
            job = None
        if job is None:
            recipients.enqueue_ingest(db.session.get(Upload, upload_id))
            log.warning("upload %s had no RQ job (lost from Redis?); queued again", upload_id)
            requeued += 1
        elif job.get_status() in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED) and not job.retries_left:
            recipients.fail_upload(upload_id, _gave_up_message(f"job {job.get_status()}"))
            failed += 1
    return requeued, failed
