"""The workspace stop-list (opt-outs): numbers that never get a message from this workspace.

Managed by admins (add, remove, import a file), every change audited. The ingest skips
stop-listed numbers at build time (services/recipients.py, set-based against this table) and
dispatch re-checks them with `is_stop_listed` / `stop_listed_numbers` before sending.

The Master workspace's stop-list is installation-wide: every workspace honours it like its own
(`owners(workspace_id)` — the ingest, the dispatch re-check and Trigger pushes all ask it). A
workspace's members are told that a number is blocked installation-wide (`blocked_where`), never
which Master entry (reason, date, id) blocked it.
"""
import re

from sqlalchemy.exc import IntegrityError

import audit
from extensions import db
from models.recipients import StopListEntry
from models.workspaces import MASTER_SLUG, Workspace
from services.errors import DomainError, NotFound
from services.numbers import BadNumber, ctn_hash, ctn_hasher, hash_key, mask_number, normalise_number, parse_search

IMPORT_BATCH = 5_000


def _normalise(raw):
    try:
        number = normalise_number(raw)
    except BadNumber as exc:
        raise DomainError(f"“{(raw or '').strip()[:40]}” is not a phone number: {exc}.", code="bad_number") from exc
    if not number.isascii():
        raise DomainError("A phone number has digits 0–9 only.", code="bad_number")
    return number


def add(workspace, raw_number, reason=""):
    number = _normalise(raw_number)
    entry = StopListEntry(workspace_id=workspace.id, number=number, ctn_hash=ctn_hash(number, workspace.id),
                          reason=(reason or "").strip()[:200])
    db.session.add(entry)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise DomainError(f"{mask_number(number)} is already on the stop-list.", code="duplicate") from None
    audit.record("stoplist.add", workspace_id=workspace.id, object_type="stop_list", object_id=entry.id,
                 after={"number": mask_number(number), "ctn_hash": entry.ctn_hash, "reason": entry.reason})
    return entry


def remove(workspace, entry_id):
    entry = db.session.get(StopListEntry, entry_id)
    if entry is None or entry.workspace_id != workspace.id:
        raise NotFound("This stop-list entry does not exist in this workspace.")
    before = {"number": mask_number(entry.number), "ctn_hash": entry.ctn_hash, "reason": entry.reason}
    db.session.delete(entry)
    db.session.commit()
    audit.record("stoplist.remove", workspace_id=workspace.id, object_type="stop_list", object_id=entry_id,
                 before=before)


def import_lines(workspace, lines, reason="import"):
    """Add numbers from an iterable of text lines (first column); returns (added, already, bad).

    Works in batches so an opt-out file of any length never sits in memory.
    """
    hash_number = ctn_hasher(hash_key(workspace.id))   # the workspace's key, derived once
    added = already = bad = 0
    batch: list = []

    def flush():
        nonlocal added, already
        if not batch:
            return
        existing = set(db.session.execute(db.select(StopListEntry.number).where(
            StopListEntry.workspace_id == workspace.id, StopListEntry.number.in_(batch))).scalars())
        fresh = sorted(set(batch) - existing)
        already += len(batch) - len(fresh)
        if fresh:
            db.session.execute(db.insert(StopListEntry), [
                {"workspace_id": workspace.id, "number": n, "ctn_hash": hash_number(n.encode("ascii")).decode("ascii"),
                 "reason": reason[:200]}
                for n in fresh])
        db.session.commit()
        added += len(fresh)
        batch.clear()

    for line in lines:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        cell = re.split(r"[,;\t]", line.lstrip("\ufeff").strip(), maxsplit=1)[0]
        if not cell.strip():
            continue
        try:
            number = normalise_number(cell)
            if not number.isascii():
                raise BadNumber("not ASCII")
        except BadNumber:
            if added + already + bad == 0 and any(ch.isalpha() for ch in cell):
                continue  # a header line
            bad += 1
            continue
        batch.append(number)
        if len(batch) >= IMPORT_BATCH:
            flush()
    flush()
    audit.record("stoplist.import", workspace_id=workspace.id, object_type="stop_list",
                 after={"added": added, "already": already, "bad": bad})
    return added, already, bad


def entries(workspace, after_id=None, limit=100, search=None, *, may_view_full=False):
    """A page of the stop-list, newest first (keyset on id).

    `search` follows `numbers.parse_search`: without the right to view full numbers only a hash
    prefix is accepted (a number is refused before any lookup: SearchRefused).
    """
    query = db.select(StopListEntry).filter_by(workspace_id=workspace.id)
    found = parse_search(search, may_view_full)
    if found is not None:
        kind, value = found
        if kind == "number":
            query = query.filter_by(number=value)
        else:
            query = query.where(StopListEntry.ctn_hash >= value, StopListEntry.ctn_hash < value + "g")
    if after_id:
        query = query.where(StopListEntry.id < int(after_id))
    rows = list(db.session.execute(query.order_by(StopListEntry.id.desc()).limit(limit + 1)).scalars())
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


def count(workspace):
    return db.session.execute(db.select(db.func.count()).select_from(StopListEntry)
                              .filter_by(workspace_id=workspace.id)).scalar()


def master_id() -> int | None:
    """The Master workspace's id (created by migration 0001)."""
    return db.session.execute(db.select(Workspace.id).filter_by(slug=MASTER_SLUG)).scalar()


def owners(workspace_id):
    """The stop-lists a workspace honours: its own and the Master one."""
    master = master_id()
    return [workspace_id] if master in (None, workspace_id) else [workspace_id, master]


def is_stop_listed(workspace_id, number):
    return db.session.execute(db.select(StopListEntry.id).where(
        StopListEntry.workspace_id.in_(owners(workspace_id)), StopListEntry.number == number)).first() is not None


def blocked_where(workspace, raw_number):
    """'workspace' (on its own list), 'installation' (only on the Master list) or None. Says nothing
    else about the Master entry."""
    number = _normalise(raw_number)
    if db.session.execute(db.select(StopListEntry.id).filter_by(workspace_id=workspace.id, number=number)).first():
        return "workspace"
    if is_stop_listed(workspace.id, number):
        return "installation"
    return None


def stop_listed_numbers(workspace_id, numbers):
    """Which of `numbers` (a batch, e.g. a dispatch batch) are on the workspace's or the Master stop-list."""
    numbers = list(numbers)
    if not numbers:
        return set()
    return set(db.session.execute(db.select(StopListEntry.number).where(
        StopListEntry.workspace_id.in_(owners(workspace_id)), StopListEntry.number.in_(numbers))).scalars())
