"""Recipient lists: the spool writer, the chunked ingest core and the Recipients tab listing.

One pipeline for every source (browser, API, CLI): the request body is copied in fixed chunks
to a spool file with a generated name in the file store (`services.file_store`: MC_DATA_DIR/spool,
or chunks in the database so that a worker on another host reads it; the size limit is enforced
while copying), an Upload row is committed, and `jobs.uploads.ingest_upload` calls `ingest()` here.
`ingest()` reads the spool from the committed byte offset in chunks of UPLOAD_CHUNK_LINES lines
(`services.recipient_files`: text check, layout, normalisation, job errors) and commits per
chunk in ONE transaction: the recipients (`services.recipient_store`: COPY on PostgreSQL,
INSERT OR IGNORE on SQLite), the job errors, the upload counters with the new offset, and the
campaign counters. A chunk always ends on a line boundary, so a worker killed at any moment
resumes without losing or re-counting a line. Stop-listed numbers are counted and NOT stored
(dispatch re-checks the stop-list anyway). Neither the web process nor the worker ever holds the
whole file or its list of numbers.
"""
import hashlib
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app

import audit
from extensions import affected_rows, db
from models import Campaign, Workspace, utcnow
from models.campaigns import JobError
from models.recipients import Recipient, Upload
from models.states import CampaignStatus as S
from models.states import Mode
from services import campaigns as campaign_rules
from services import file_store, quotas, spread
from services.errors import DomainError, NotFound
from services.numbers import display_number, display_text, hash_key, mask_number, parse_search
from services.queues import JobNames, enqueue_job
from services.recipient_files import IngestFailed, read_chunk, read_head_from
from services.recipient_store import Probe, store_numbers

log = logging.getLogger("mc.recipients")

COPY_CHUNK_BYTES = 1024 * 1024          # the spool writer's fixed read size
HASH_BLOCK_BYTES = 256 * 1024          # read size for the digest: small, so the peak does not track the file
ALLOWED_EXTENSIONS = (".csv", ".txt")


class UploadTooLarge(DomainError):
    code = "too_large"
    status = 413


def browser_limit():
    return int(current_app.config["UPLOAD_BROWSER_MAX_BYTES"])


def api_limit():
    return int(current_app.config["UPLOAD_API_MAX_BYTES"])


def chunk_lines():
    return max(1, int(current_app.config["UPLOAD_CHUNK_LINES"]))


def errors_stored():
    return int(current_app.config["UPLOAD_ERRORS_STORED"])


def human_size(n):
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return str(n)


# --- spool writer ---------------------------------------------------------------------------

def spool_stream(stream, limit, *, chunk_size=COPY_CHUNK_BYTES):
    """Copy `stream` to a new spool file in the file store in fixed chunks; returns (ref, size).

    Raises UploadTooLarge as soon as more than `limit` bytes arrived, FileStoreFailed when the
    store cannot take it (disk full, database refusing); either way nothing of it is kept. Only
    `chunk_size` bytes (plus one store chunk) are ever held in memory.
    """
    size = 0
    with file_store.create("spool", "upload") as out:
        while True:
            block = stream.read(chunk_size)
            if not block:
                break
            size += len(block)
            if size > limit:
                raise UploadTooLarge(f"The file is larger than the limit of {human_size(limit)}.")
            out.write(block)
    return out.ref, size


def discard_spool(ref):
    """Remove an upload's spool from the file store (after the ingest, or on a refusal)."""
    file_store.delete(ref)


def check_filename(name):
    """Browser/API file names: only .csv and .txt (the content is checked again by the ingest)."""
    name = os.path.basename((name or "").replace("\\", "/")).strip()[:255]
    if name and not name.lower().endswith(ALLOWED_EXTENSIONS):
        raise DomainError(f"“{name}” is not a .csv or .txt file. Export the list as CSV (UTF-8) or plain text.",
                          code="unsupported_file", status=415)
    return name


# --- starting an upload ---------------------------------------------------------------------

def ensure_may_upload(campaign):
    if campaign.mode == Mode.TRIGGER:
        raise DomainError("Trigger campaigns start empty; numbers arrive through the API after the start.",
                          code="trigger_campaign", status=409)
    if campaign.archived_at is not None or campaign.status != S.NEW:
        what = "being built" if campaign.status == S.BUILDING else campaign.status
        raise DomainError(f"Recipients can be uploaded only to a draft campaign (this one is {what}).",
                          code="not_a_draft", status=409)


def start_upload(campaign, *, spool_path, size, source, original_name="", user=None):
    """Commit the Upload row and move the campaign to Building; returns the upload.

    The caller enqueues `ingest_upload(upload.id)` after this returns (the row is committed).
    On any refusal the spool file is removed.
    """
    try:
        ensure_may_upload(campaign)
        if size == 0:
            raise DomainError("The file is empty.", code="empty_file")
        upload = Upload(workspace_id=campaign.workspace_id, campaign_id=campaign.id,
                        created_by_id=user.id if user is not None else None, source=source,
                        original_name=(original_name or "")[:255], spool_path=spool_path, state="queued",
                        bytes_total=size, bytes_done=0)
        db.session.add(upload)
        db.session.flush()
        campaign_rules.apply(campaign, "build", actor=user)   # commits the upload row with it
    except BaseException:
        db.session.rollback()
        discard_spool(spool_path)
        raise
    audit.record("recipients.upload", workspace_id=campaign.workspace_id, object_type="campaign",
                 object_id=campaign.id, after={"upload_id": upload.id, "bytes": size, "source": source,
                                               "file": upload.original_name},
                 **({} if user is not None else {"actor_email": "system", "actor_role": "system"}))
    return upload


def enqueue_ingest(upload):
    # Generous timeout: a 1 GB file at ~50k lines/s is a few minutes; retries resume from the offset.
    job = enqueue_job(JobNames.INGEST_UPLOAD, upload.id, queue="uploads", timeout=6 * 3600,
                      job_id=f"ingest-{upload.id}-{uuid.uuid4().hex[:8]}",
                      on_failure=JobNames.ON_INGEST_FAILURE)
    db.session.execute(db.update(Upload).where(Upload.id == upload.id).values(job_id=job.id))
    db.session.commit()
    return job


def get_upload(workspace, upload_id, membership, user):
    """Scoped lookup: the upload's campaign must be visible to the user (else 404)."""
    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.workspace_id != workspace.id:
        raise NotFound("This upload does not exist in this workspace.")
    campaign_rules.get_campaign(workspace, upload.campaign_id, membership, user)
    return upload


def upload_status(upload, errors_limit=20, *, may_view_full=False):
    """The JSON shape shared by the page's progress bar and GET /api/v1/uploads/<id>.

    The job errors' text (the raw line) is masked (`numbers.mask_text`) unless `may_view_full`.
    """
    total = upload.bytes_total or 0
    percent = 100 if upload.state == "done" else (int(upload.bytes_done * 100 / total) if total else 0)
    errors = db.session.execute(
        db.select(JobError).filter_by(upload_id=upload.id).order_by(JobError.id).limit(errors_limit)).scalars()
    return {
        "id": upload.id, "campaign_id": upload.campaign_id, "state": upload.state, "source": upload.source,
        "file": upload.original_name, "bytes": total, "bytes_done": upload.bytes_done,
        "lines": upload.lines, "accepted": upload.accepted, "duplicates": upload.duplicates,
        "rejected": upload.rejected, "stop_listed": upload.stop_listed, "percent": min(percent, 100),
        "error": upload.error, "created_at": upload.created_at.isoformat() if upload.created_at else None,
        "finished_at": upload.finished_at.isoformat() if upload.finished_at else None,
        "errors": [{"line": r.line_no, "reason": r.reason, "text": r.raw}
                   for r in (job_error_row(e, may_view_full) for e in errors)],
    }


def widget_upload(campaign, *, may_view_full=False):
    """What wizard step 4 passes to `upload_widget`: the latest upload's status dict, or None."""
    upload = latest_upload(campaign)
    return upload_status(upload, errors_limit=50, may_view_full=may_view_full) if upload is not None else None


def latest_upload(campaign):
    return db.session.execute(db.select(Upload).filter_by(campaign_id=campaign.id)
                              .order_by(Upload.id.desc()).limit(1)).scalar_one_or_none()


def _commit_chunk(upload, chunk, start_offset, key, probe):
    """Everything of one chunk in ONE transaction; False when it was not ours to commit.

    Claims the chunk with a conditional update on the committed offset (a row lock on
    PostgreSQL, so a stale duplicate job waits and then finds the offset moved), then locks the
    campaign row: a chunk is stored only while the campaign is Building, and nobody else adds
    numbers to it meanwhile.
    """
    claimed = affected_rows(db.session.execute(
        db.update(Upload).where(Upload.id == upload.id, Upload.bytes_done == start_offset,
                                Upload.state == "running").values(state="running")
        .execution_options(synchronize_session=False)))
    if not claimed:
        db.session.rollback()
        return False
    status, count = db.session.execute(
        db.select(Campaign.status, Campaign.recipients_count).filter_by(id=upload.campaign_id)
        .with_for_update(key_share=True)).one()
    if status != S.BUILDING:
        db.session.rollback()
        return False
    inserted, stop_listed, duplicates = store_numbers(upload.campaign_id, upload.workspace_id, upload.id,
                                                      chunk.parts, key, campaign_empty=count == 0, probe=probe)
    refusal = quotas.recipients_refusal(db.session.get(Workspace, upload.workspace_id), count + inserted)
    if refusal:  # the workspace's max_recipients_per_campaign: _fail removes what this upload stored
        db.session.rollback()
        raise IngestFailed(refusal)
    if chunk.errors:
        db.session.execute(db.insert(JobError), [
            {"campaign_id": upload.campaign_id, "upload_id": upload.id, "line_no": ln, "reason": reason,
             "raw": raw, "created_at": utcnow()} for ln, reason, raw in chunk.errors])
    db.session.execute(
        db.update(Upload).where(Upload.id == upload.id).values(
            bytes_done=chunk.end_offset, lines=Upload.lines + chunk.lines, accepted=Upload.accepted + inserted,
            duplicates=Upload.duplicates + duplicates, rejected=Upload.rejected + chunk.rejected,
            stop_listed=Upload.stop_listed + stop_listed).execution_options(synchronize_session=False))
    if inserted:
        db.session.execute(
            db.update(Campaign).where(Campaign.id == upload.campaign_id).values(
                recipients_count=Campaign.recipients_count + inserted,
                queued_count=Campaign.queued_count + inserted).execution_options(synchronize_session=False))
    db.session.commit()
    return True


# --- the ingest -------------------------------------------------------------------------------

def ingest(upload_id, on_progress=None):
    """Ingest one upload from its committed offset to the end. Idempotent and resumable.

    Transient errors (database, Redis) propagate so RQ retries the job, which resumes from the
    committed offset. A file that is not text fails the build: one job error, no recipients,
    the upload `failed` and the campaign `fail`ed.
    """
    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.state in ("done", "failed"):
        return upload
    campaign = db.session.get_one(Campaign, upload.campaign_id)
    if campaign.status != S.BUILDING:
        return _abandon(upload, f"The campaign is {campaign.status}, not Building; the upload was stopped.")
    if upload.state != "running":
        upload.state = "running"
        db.session.commit()
    try:
        stopped = _ingest_chunks(upload, campaign.id, on_progress)
    except IngestFailed as exc:
        return _fail(upload, str(exc))
    except FileNotFoundError as exc:  # file_store.StoredFileMissing: the spool, or one of its chunks
        log.warning("upload %s: %s", upload.id, exc)
        return _fail(upload, "The uploaded file is gone from the spool (the file store) or incomplete; "
                             "upload it again.")
    return stopped if stopped is not None else _finish(upload)


def _ingest_chunks(upload, campaign_id, on_progress):
    """Store the file chunk by chunk from the committed offset, the next chunk read ahead on a thread.
    Returns None once the whole file is stored, or the upload when the ingest stopped early (the
    upload was stopped, or the campaign left Building)."""
    store = file_store.holding(upload.spool_path)   # built here: the read-ahead thread has no app context
    with store.open(upload.spool_path) as fh:
        layout = read_head_from(fh)
    if upload.sha256 is None:
        store_sha256(upload)
    if upload.bytes_done > upload.bytes_total:
        raise IngestFailed("The upload's progress is past the end of its file.")
    key, probe = hash_key(upload.workspace_id), Probe()   # the workspace's key, once per run
    limit, keep = chunk_lines(), errors_stored()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mc-read-ahead") as reader:
        ahead = None  # (where, future): the next chunk, read while this one is stored
        while True:
            stopped = _stopped(upload, campaign_id)
            if stopped is not None:
                return stopped
            if upload.bytes_done >= upload.bytes_total:
                return None
            where = (upload.bytes_done, upload.lines, keep - min(upload.rejected, keep))
            if ahead is None or ahead[0] != where:
                ahead = (where, reader.submit(_read_chunk_at, store, upload.spool_path, where, layout, limit))
            chunk = ahead[1].result()
            if chunk.lines == 0:
                return None
            following = (chunk.end_offset, upload.lines + chunk.lines,
                         keep - min(upload.rejected + chunk.rejected, keep))
            ahead = (following, reader.submit(_read_chunk_at, store, upload.spool_path, following, layout,
                                              limit))
            _commit_chunk(upload, chunk, where[0], key, probe)
            if on_progress is not None:
                db.session.refresh(upload)
                on_progress(upload_status(upload, errors_limit=0))


def _stopped(upload, campaign_id):
    """Between chunks: the upload (abandoned if need be) when the ingest must stop, else None."""
    db.session.refresh(upload)
    if upload.state != "running":
        return upload
    status = db.session.execute(db.select(Campaign.status).filter_by(id=campaign_id)).scalar()
    if status != S.BUILDING:
        return _abandon(upload, f"The campaign became {status} during the upload; ingest stopped.")
    return None


def store_sha256(upload):
    """The file's SHA-256, part of the approval fingerprint's recipient set (services/approval.py).
    Read once before the first chunk from the spool, which never changes: a worker killed meanwhile
    computes the same digest again."""
    digest = hashlib.sha256()
    with file_store.open_file(upload.spool_path) as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    db.session.execute(db.update(Upload).where(Upload.id == upload.id, Upload.sha256.is_(None))
                       .values(sha256=digest.hexdigest()).execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(upload)


def _read_chunk_at(store, ref, where, layout, limit):
    """read_chunk from its own file handle (it runs on the read-ahead thread)."""
    offset, first_line_no, keep_errors = where
    with store.open(ref) as fh:
        return read_chunk(fh, offset, first_line_no, layout, limit, keep_errors)


def _finish(upload):
    db.session.refresh(upload)
    campaign = db.session.get_one(Campaign, upload.campaign_id)
    if upload.lines == 0 or (upload.accepted + upload.duplicates + upload.rejected + upload.stop_listed) == 0:
        reason = "The file has no data lines (only a header)." if upload.lines else "The file is empty."
        if not db.session.execute(db.select(JobError.id).filter_by(upload_id=upload.id, line_no=None)).first():
            db.session.add(JobError(campaign_id=upload.campaign_id, upload_id=upload.id, reason=reason))
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day and campaign.spread_last_day:
        spread.plan(campaign)
    _mark_done(upload)
    db.session.refresh(campaign)
    if campaign.status == S.BUILDING and not _other_active_uploads(upload):
        # The campaign leaves Building in the upload's own transaction (apply commits both): a crash
        # between two commits would leave a finished upload under a campaign built for ever, and a
        # reader between them would see the upload done and the campaign still Building.
        try:
            campaign_rules.apply(campaign, "build_finished")
        except DomainError:   # cancelled meanwhile: apply rolled back, the upload still ends
            _mark_done(upload)
    db.session.commit()
    db.session.refresh(upload)
    discard_spool(upload.spool_path)
    log.info("upload %s done: %s lines, %s accepted, %s duplicates, %s rejected, %s stop-listed",
             upload.id, upload.lines, upload.accepted, upload.duplicates, upload.rejected, upload.stop_listed)
    return upload


def _mark_done(upload):
    db.session.execute(db.update(Upload).where(Upload.id == upload.id, Upload.state == "running")
                       .values(state="done", finished_at=utcnow()).execution_options(synchronize_session=False))


def _other_active_uploads(upload):
    return db.session.execute(db.select(Upload.id).where(
        Upload.campaign_id == upload.campaign_id, Upload.id != upload.id,
        Upload.state.in_(("queued", "running")))).first() is not None


def _abandon(upload, message):
    db.session.execute(db.update(Upload).where(Upload.id == upload.id, Upload.state.in_(("queued", "running")))
                       .values(state="failed", error=message[:500], finished_at=utcnow())
                       .execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(upload)
    discard_spool(upload.spool_path)
    return upload


def fail_upload(upload_id, message):
    """Give up on an upload whose job cannot finish (no retry left): the same end as a bad file."""
    upload = db.session.get(Upload, upload_id)
    if upload is None or upload.state not in ("queued", "running"):
        return upload
    return _fail(upload, message)


def _fail(upload, message):
    """Non-retryable: one job error and none of this upload's rows left behind (what earlier
    uploads stored stays); a draft goes back to New so its author can upload a corrected file."""
    db.session.rollback()
    campaign = db.session.get_one(Campaign, upload.campaign_id)
    removed = _undo_upload(upload, campaign.id, message)
    if campaign.status == S.BUILDING and not _other_active_uploads(upload):
        try:   # in the same transaction as the undo, as in _finish
            campaign_rules.apply(campaign, "build_failed")
        except DomainError:   # changed meanwhile: apply rolled back, the undo still happens
            removed = _undo_upload(upload, campaign.id, message)
    db.session.commit()
    db.session.refresh(upload)
    discard_spool(upload.spool_path)
    log.warning("upload %s failed: %s (%s recipients removed)", upload.id, message, removed)
    return upload


def _undo_upload(upload, campaign_id, message):
    """This upload's rows removed, its job error written, the upload failed: uncommitted."""
    removed = affected_rows(db.session.execute(db.delete(Recipient).where(Recipient.campaign_id == campaign_id,
                                                            Recipient.upload_id == upload.id)
                                 .execution_options(synchronize_session=False)))
    if removed:
        db.session.execute(db.update(Campaign).where(Campaign.id == campaign_id).values(
            recipients_count=Campaign.recipients_count - removed, queued_count=Campaign.queued_count - removed)
            .execution_options(synchronize_session=False))
    db.session.add(JobError(campaign_id=campaign_id, upload_id=upload.id, reason=message[:200]))
    db.session.execute(db.update(Upload).where(Upload.id == upload.id).values(
        state="failed", error=message[:500], finished_at=utcnow(), accepted=0)
        .execution_options(synchronize_session=False))
    return removed


# --- the Recipients tab -----------------------------------------------------------------------

@dataclass
class RecipientRow:
    id: int
    number: str          # full or masked, as the viewer may see it
    masked: bool
    ctn_hash: str
    hash_prefix: str
    state: str
    spread_day: object
    smpp_status: str


@dataclass
class RecipientPage:
    rows: list
    next_cursor: int | None = None
    total: int = 0       # from the campaign counter, never COUNT(*)


def _search_clause(search, may_view_full):
    """`numbers.parse_search`: a full number (exact, via the unique index) only for those who may
    see numbers, else a ctn_hash prefix (a range on the hash); a refusal comes before any query."""
    found = parse_search(search, may_view_full)
    if found is None:
        return None
    kind, value = found
    if kind == "number":
        return (Recipient.number == value,)
    return (Recipient.ctn_hash >= value, Recipient.ctn_hash < value + "g")


def list_recipients(campaign, after_id=None, limit=50, *, may_view_full=False, search=None):
    """One page of a campaign's recipients, keyset-paginated on uq(campaign_id, number).

    `after_id` is the id of the last row of the previous page (an opaque cursor that does not
    reveal a number). Viewing full numbers is audited.
    """
    limit = max(1, min(int(limit or 50), 500))
    query = db.select(Recipient).where(Recipient.campaign_id == campaign.id)
    clause = _search_clause(search, may_view_full)
    if clause is not None:
        query = query.where(*clause)
    if after_id:
        last = db.session.execute(db.select(Recipient.number).filter_by(id=int(after_id), campaign_id=campaign.id)
                                  ).scalar()
        if last is None:
            raise DomainError("This page link is no longer valid; start from the first page.", code="bad_cursor")
        query = query.where(Recipient.number > last)
    found = list(db.session.execute(query.order_by(Recipient.number).limit(limit + 1)).scalars())
    more = len(found) > limit
    found = found[:limit]
    rows = [RecipientRow(id=r.id, number=display_number(r.number, may_view_full), masked=not may_view_full,
                         ctn_hash=r.ctn_hash, hash_prefix=r.ctn_hash[:12], state=r.state, spread_day=r.spread_day,
                         smpp_status=r.smpp_status) for r in found]
    if may_view_full and rows:
        audit.record("recipients.view_full", workspace_id=campaign.workspace_id, object_type="campaign",
                     object_id=campaign.id, after={"rows": len(rows), "first_id": rows[0].id, "search": bool(search)})
    return RecipientPage(rows=rows, next_cursor=found[-1].id if more else None, total=campaign.recipients_count)


@dataclass
class JobErrorRow:
    """A job error as shown (page, upload status, API): `raw` masked unless the viewer may see numbers."""
    id: int
    upload_id: int
    line_no: int
    reason: str
    raw: str
    created_at: object


def job_error_row(error, may_view_full=False):
    return JobErrorRow(id=error.id, upload_id=error.upload_id, line_no=error.line_no,
                       reason=display_text(error.reason, may_view_full), raw=display_text(error.raw, may_view_full),
                       created_at=error.created_at)


def job_errors(campaign, limit=100, after_id=None, *, may_view_full=False):
    """The campaign's Job errors (ingest line errors and build failures), oldest first, as
    JobErrorRow: the raw line text masked (`numbers.mask_text`) unless `may_view_full`."""
    query = db.select(JobError).filter_by(campaign_id=campaign.id)
    if after_id:
        query = query.where(JobError.id > int(after_id))
    found = db.session.execute(query.order_by(JobError.id).limit(max(1, min(int(limit), 1000)))).scalars()
    return [job_error_row(e, may_view_full) for e in found]


def recipient_json(row):
    return {"id": row.id, "number": row.number, "masked": row.masked, "ctn_hash": row.ctn_hash,
            "state": row.state, "spread_day": row.spread_day.isoformat() if row.spread_day else None,
            "smpp_status": row.smpp_status}


__all__ = ["spool_stream", "start_upload", "enqueue_ingest", "ingest", "list_recipients", "job_errors",
           "upload_status", "mask_number", "UploadTooLarge", "IngestFailed"]
