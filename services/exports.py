"""Exports of a campaign's delivery records: request, build (streamed, flat memory), download, expiry.

A request creates an `Export` row and enqueues `jobs.exports.build_export`; the job walks the
campaign's recipients in keyset chunks over the (campaign_id, number) index, each chunk read with
a server-side cursor (`stream_results` + `yield_per`), and writes CSV or TXT to a generated name
in the file store (`services.file_store`: MC_DATA_DIR/exports, or chunks in the database so that a
web host serves what a worker on another host built; visible only once complete). Numbers are masked unless the
requester may see full numbers (`numbers.view_full`); cells a spreadsheet would run as a formula
are escaped. After EXPORT_TTL_HOURS the periodic `expire_exports` removes the file and keeps the
row as `expired`, so an old link says so instead of a blind 404. Every request, completion and
download is audited with the row count and whether numbers were unmasked.
"""
import re
import uuid
from datetime import timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import select, update

import audit
from extensions import affected_rows, db
from models import Campaign, Recipient, User, utcnow
from models.exports import Export
from services import campaigns as lifecycle
from services import file_store, permissions
from services.errors import Conflict, DomainError, Forbidden, NotFound
from services.numbers import mask_number
from services.queues import JobNames, enqueue_job

FORMATS = ("csv", "txt")
COLUMNS = ("number", "status", "smpp_code", "submitted_at", "delivered_at")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 200_000     # rows per keyset chunk (one short read; progress is committed after each)
YIELD_PER = 20_000       # rows fetched per round trip from the server-side cursor
MIME = {"csv": "text/csv; charset=utf-8", "txt": "text/plain; charset=utf-8"}


class ExportExpired(DomainError):
    status, code = 410, "export_expired"


class ExportNotReady(Conflict):
    code = "export_not_ready"


class FullNumbersRefused(Forbidden):
    """The export holds full numbers and the role may not see them."""


class BadFormat(DomainError):
    code = "bad_format"


# --- settings and paths ----------------------------------------------------------------------

def ttl():
    return timedelta(hours=float(current_app.config["EXPORT_TTL_HOURS"]))


def escape_cell(value):
    """A cell starting with = + - @ tab or CR gets a leading single quote (CSV/formula injection)."""
    if value and value[0] in FORMULA_START:
        return "'" + value
    return value


_CSV_SPECIAL = re.compile(r'[",\r\n]')


def csv_cell(value):
    """One CSV field: formula-escaped, then quoted (RFC 4180) when it holds a quote, comma or line break."""
    value = escape_cell(value)
    if _CSV_SPECIAL.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


_TXT_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})


def escape_txt_cell(value):
    """TXT is tab-separated, one record per line: escape like CSV, then tabs and line breaks become spaces."""
    value = escape_cell(value)
    if value and ("\t" in value or "\r" in value or "\n" in value):
        return value.translate(_TXT_BREAKS)
    return value


def download_name(export):
    stem = re.sub(r"[^A-Za-z0-9]+", "-", (export.campaign.name if export.campaign else "campaign")).strip("-")
    return f"{(stem or 'campaign')[:60]}-export-{export.id}.{export.format}"


# --- requests ---------------------------------------------------------------------------------

def may_view_full(membership, user):
    return permissions.allowed("numbers.view_full", membership, superadmin=user.is_superadmin)


def request_export(workspace, campaign_id, fmt, membership, user):
    """Create an export of a campaign the requester can see and enqueue its job (after commit)."""
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise BadFormat("Choose the export format: csv or txt.")
    campaign = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    unmasked = may_view_full(membership, user)
    export = Export(workspace_id=workspace.id, campaign_id=campaign.id, created_by_id=user.id, format=fmt,
                    state="queued", unmasked=unmasked, rows=0, expires_at=utcnow() + ttl())
    db.session.add(export)
    db.session.commit()
    audit.record("export.requested", workspace_id=workspace.id, object_type="export", object_id=export.id,
                 after={"campaign_id": campaign.id, "format": fmt, "unmasked": unmasked,
                        "rows_expected": campaign.recipients_count})
    job = enqueue_job(JobNames.BUILD_EXPORT, export.id, queue="exports", timeout=6 * 3600, retries=2,
                      job_id=f"export-{export.id}-{uuid.uuid4().hex[:8]}", on_failure=JobNames.ON_EXPORT_FAILURE)
    db.session.execute(update(Export).where(Export.id == export.id).values(job_id=job.id)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(export)
    return export


def get_export(workspace, export_id, membership, user):
    """Scoped lookup: another workspace's export, or one of a campaign the user cannot see, is a 404."""
    export = db.session.get(Export, export_id)
    if export is None or export.workspace_id != workspace.id:
        raise NotFound("This export does not exist in this workspace.")
    if export.created_by_id != user.id:
        try:
            lifecycle.get_campaign(workspace, export.campaign_id, membership, user)
        except NotFound:
            raise NotFound("This export does not exist in this workspace.") from None
    return export


def for_campaign(campaign, limit=20):
    return list(db.session.scalars(select(Export).where(Export.campaign_id == campaign.id)
                                   .order_by(Export.id.desc()).limit(limit)))


def open_for_download(workspace, export_id, membership, user):
    """The export and its file path, ready to stream; audited. Expired → ExportExpired (410)."""
    export = get_export(workspace, export_id, membership, user)
    if export.state == "expired" or export.expires_at <= utcnow():
        raise ExportExpired(f"This export expired on {export.expires_at:%Y-%m-%d %H:%M} UTC and its file was "
                            "removed. Start a new export from the campaign.")
    if export.state != "done" or not export.path:
        raise ExportNotReady("This export is not ready yet." if export.state in ("queued", "running")
                             else "This export failed; start a new one from the campaign.")
    if export.unmasked and not may_view_full(membership, user):
        raise FullNumbersRefused("This export contains full numbers, which your role may not see.")
    if not file_store.exists(export.path):
        raise ExportExpired("The file of this export is no longer on the server. Start a new export.")
    audit.record("export.downloaded", workspace_id=workspace.id, object_type="export", object_id=export.id,
                 after={"campaign_id": export.campaign_id, "format": export.format, "rows": export.rows,
                        "unmasked": export.unmasked})
    return export


def file_response(export):
    return file_store.send(export.path, MIME[export.format], download_name(export))


def status(export, progress=None):
    out = {"id": export.id, "campaign_id": export.campaign_id, "format": export.format, "state": export.state,
           "rows": export.rows, "unmasked": export.unmasked, "error": export.error,
           "created_at": _iso(export.created_at), "finished_at": _iso(export.finished_at),
           "expires_at": _iso(export.expires_at)}
    if progress is not None:
        out["progress"] = progress
    return out


def _iso(value):
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


# --- the build (called by the job) ------------------------------------------------------------

def _iso_utc_sql(column):
    """ISO-8601 UTC text computed by PostgreSQL; on SQLite the stored UTC text itself (reshaped by
    `_sqlite_iso`) — no per-row datetime objects in Python either way."""
    if db.engine.dialect.name == "postgresql":
        return db.func.to_char(db.func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    return db.type_coerce(column, db.String)


def _as_text(value):
    return value or ""


def _sqlite_iso(value):
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) in SQLite.
    return f"{value[:10]}T{value[11:19]}Z" if value else ""


def fast_masker():
    """`mask_number` (the one masking function) for millions of rows: its output for each length is
    precomputed and checked to be "prefix + last digits"; if that shape ever changes, every number
    goes through mask_number itself."""
    sample = "123456789012345"
    prefixes, tail = {}, None
    for length in range(1, len(sample) + 1):
        number, masked = sample[:length], mask_number(sample[:length])
        shown = len(masked) - len(masked.lstrip("•"))
        keep = len(masked) - shown
        if masked[shown:] != number[length - keep:] or (tail is not None and keep != tail and length > keep):
            return mask_number
        tail = keep if length > keep else tail
        prefixes[length] = masked[:shown]
    if not tail:
        return mask_number

    def mask(number, _p=prefixes, _t=-tail, _slow=mask_number):
        prefix = _p.get(len(number))
        return _slow(number) if prefix is None else prefix + number[_t:]

    return mask


def _chunks(campaign_id, after_chunk):
    """Rows (number, state, smpp_status, submitted_at, delivered_at) in number order, in keyset
    chunks; each chunk is one short read through a server-side cursor. `after_chunk(n)` runs
    between chunks (outside any read), with the rows read so far."""
    t = Recipient.__table__
    cols = (t.c.number, t.c.state, t.c.smpp_status, _iso_utc_sql(t.c.submitted_at), _iso_utc_sql(t.c.delivered_at))
    last, total = "", 0
    postgres = db.engine.dialect.name == "postgresql"
    while True:
        stmt = (select(*cols).where(t.c.campaign_id == campaign_id, t.c.number > last)
                .order_by(t.c.number).limit(CHUNK_ROWS))
        compiled = stmt.compile(dialect=db.engine.dialect)
        # The DBAPI cursor itself: on PostgreSQL a named (server-side) cursor in binary mode, read
        # YIELD_PER rows per round trip; SQLAlchemy Row objects would cost more than the query.
        # (the driver's own connection: psycopg's named cursors, sqlite3's; typed as the generic DBAPI)
        raw = cast(Any, db.session.connection().connection.dbapi_connection)
        params = compiled.params if postgres else tuple(compiled.params[k] for k in compiled.positiontup or ())
        cursor = raw.cursor(name=f"mc_export_{uuid.uuid4().hex[:12]}", binary=True) if postgres else raw.cursor()
        rows = 0
        try:
            if postgres:
                cursor.itersize = YIELD_PER
            cursor.execute(str(compiled), params)
            while True:
                partition = cursor.fetchmany(YIELD_PER)
                if not partition:
                    break
                yield partition
                rows += len(partition)
                last = partition[-1][0]
        finally:
            cursor.close()
        db.session.commit()  # end the read transaction: no long-lived snapshot or SQLite read lock
        total += rows
        after_chunk(total)
        if rows < CHUNK_ROWS:
            return


def build(export_id, on_progress=None):
    """Write the export file. Idempotent: a re-run (after a crash) writes a new file from the start
    (the killed run's incomplete file is never visible and `file_store.sweep_incomplete` removes it)."""
    export = db.session.get(Export, export_id)
    if export is None or export.state in ("done", "expired"):
        return export
    campaign = db.session.get(Campaign, export.campaign_id)
    expected = campaign.recipients_count if campaign else 0
    file_store.delete(export.path)  # a complete file of an earlier run that did not get marked done
    db.session.execute(update(Export).where(Export.id == export_id)
                       .values(state="running", rows=0, error=None, path=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    unmasked, fmt = export.unmasked, export.format
    written = 0
    cell = csv_cell if fmt == "csv" else escape_txt_cell
    sep, eol = ("," if fmt == "csv" else "\t"), ("\r\n" if fmt == "csv" else "\n")
    number_cell = cell if unmasked else fast_masker()  # masked numbers are "•…" + digits: nothing to escape
    iso = _sqlite_iso if db.engine.dialect.name == "sqlite" else _as_text
    states: dict = {}  # the few state values, escaped once

    with file_store.create("export", fmt) as out, out.text() as fh:
        fh.write(sep.join(COLUMNS) + eol)
        for partition in _chunks(export.campaign_id, lambda n: _progress(export_id, n, expected, on_progress)):
            fh.write("".join([
                f"{number_cell(n)}{sep}{states.get(s) or states.setdefault(s, cell(s))}{sep}"
                f"{cell(c) if c else ''}{sep}{iso(a)}{sep}{iso(d)}{eol}"
                for n, s, c, a, d in partition]))
            written += len(partition)
    final = out.ref
    done = affected_rows(db.session.execute(update(Export).where(Export.id == export_id, Export.state == "running")
                              .values(state="done", rows=written, path=final, finished_at=utcnow())
                              .execution_options(synchronize_session=False)))
    db.session.commit()
    db.session.refresh(export)
    if not done:  # expired (or removed) while it was being built: leave no file behind
        file_store.delete(final)
        return export
    creator = db.session.get(User, export.created_by_id) if export.created_by_id else None
    audit.record("export.completed", workspace_id=export.workspace_id, object_type="export", object_id=export.id,
                 after={"campaign_id": export.campaign_id, "format": fmt, "rows": written, "unmasked": unmasked},
                 actor_id=creator.id if creator else None, actor_email=creator.email if creator else None,
                 actor_role="job")
    return export


def _progress(export_id, written, expected, on_progress):
    db.session.execute(update(Export).where(Export.id == export_id).values(rows=written)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    if on_progress:
        on_progress({"rows": written, "expected": expected,
                     "percent": round(100 * written / expected, 1) if expected else None})


def mark_failed(export_id, message):
    """The job gave up (no retry left): the row says why and the partial file goes."""
    export = db.session.get(Export, export_id)
    if export is None:
        return
    file_store.delete(export.path)
    db.session.execute(update(Export).where(Export.id == export_id, Export.state.in_(("queued", "running")))
                       .values(state="failed", error=message[:300], finished_at=utcnow(), path=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


# --- expiry ---------------------------------------------------------------------------------

def expire(now=None):
    """Remove the files of exports past their expiry; rows stay as `expired` (the link says so)."""
    return expire_files(Export, "export.expired", "export",
                        lambda export: {"rows": export.rows, "unmasked": export.unmasked}, now)


def expire_files(model, action, object_type, details, now=None):
    """Expiry of stored files (exports, evidence packs): each `model` row past its `expires_at` loses
    its file, becomes `expired` and is audited as `action` with `details(row)`."""
    now = now or utcnow()
    removed = 0
    for row in list(db.session.scalars(select(model).where(model.expires_at <= now, model.state != "expired"))):
        file_store.delete(row.path)
        row.state, row.path = "expired", None
        removed += 1
        audit.record(action, workspace_id=row.workspace_id, object_type=object_type,
                     object_id=row.id, after=details(row), actor_role="job")
    db.session.commit()
    return removed
