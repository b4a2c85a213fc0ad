"""Evidence packs: "show us everything about campaign 4711" as one ZIP a regulator can check.

A moderator, admin or super admin asks for a pack (`request_pack`); the queued job
(`jobs.evidence.build_evidence_pack`) writes a ZIP with the campaign as approved (its approval
fingerprint and the document it was taken over), everyone who shaped or decided it with times and
notes, each upload's SHA-256 and counts, the SMPP values and schedule, totals by delivery state and
SMPP code, every recipient (masked unless the requester has `numbers.view_full`), the campaign's
audit events with the id of the seal covering each (services/audit_seals.py), those seals, and
`manifest.json` + `SHA256SUMS` with the SHA-256 of every file. Recipients are streamed with the
export's keyset reader, so memory stays flat at 10M recipients. Packs share the export machinery's
TTL (EXPORT_TTL_HOURS), masking and 404/410 rules; requests, completions and downloads are audited.
"""
import bisect
import contextlib
import hashlib
import io
import json
import uuid
import zipfile
from datetime import UTC

from sqlalchemy import func, select, update

import audit
from extensions import affected_rows, db
from models import Campaign, CampaignContributor, Recipient, Upload, User, utcnow
from models.audit_seals import AuditSeal
from models.evidence import EvidencePack
from services import approval, audit_seals, exports, file_store, permissions
from services import campaigns as lifecycle
from services.campaign_drafts import steps as draft_steps
from services.errors import NotFound
from services.queues import JobNames, enqueue_job

FORMAT = 1
MIME = "application/zip"
STATES = ("queued", "running", "done", "failed", "expired")
# Audit actions that say who shaped or decided the campaign (people.json); every event is in audit-events.jsonl.
PEOPLE_ACTIONS = ("campaigns.", "recipients.upload")
NOT_PEOPLE = ("campaigns.trigger_push",)


# --- requests ---------------------------------------------------------------------------------

def request_pack(workspace, campaign_id, membership, user):
    """Create a pack of a campaign the requester can see and enqueue its job (after commit)."""
    permissions.require("evidence.create", membership, superadmin=user.is_superadmin)
    campaign = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    unmasked = exports.may_view_full(membership, user)
    pack = EvidencePack(workspace_id=workspace.id, campaign_id=campaign.id, created_by_id=user.id, state="queued",
                        unmasked=unmasked, recipients=0, expires_at=utcnow() + exports.ttl())
    db.session.add(pack)
    db.session.commit()
    audit.record("evidence.requested", workspace_id=workspace.id, object_type="evidence_pack", object_id=pack.id,
                 after={"campaign_id": campaign.id, "unmasked": unmasked,
                        "recipients_expected": campaign.recipients_count})
    job = enqueue_job(JobNames.BUILD_EVIDENCE_PACK, pack.id, queue="exports", timeout=6 * 3600, retries=2,
                      job_id=f"evidence-{pack.id}-{uuid.uuid4().hex[:8]}", on_failure=JobNames.ON_EVIDENCE_FAILURE)
    db.session.execute(update(EvidencePack).where(EvidencePack.id == pack.id).values(job_id=job.id)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(pack)
    return pack


def get_pack(workspace, pack_id, membership, user):
    """Scoped lookup: another workspace's pack, or one of a campaign the user cannot see, is a 404."""
    permissions.require("evidence.create", membership, superadmin=user.is_superadmin)
    pack = db.session.get(EvidencePack, pack_id)
    if pack is None or pack.workspace_id != workspace.id:
        raise NotFound("This evidence pack does not exist in this workspace.")
    try:
        lifecycle.get_campaign(workspace, pack.campaign_id, membership, user)
    except NotFound:
        raise NotFound("This evidence pack does not exist in this workspace.") from None
    return pack


def for_campaign(campaign, limit=10):
    return list(db.session.scalars(select(EvidencePack).where(EvidencePack.campaign_id == campaign.id)
                                   .order_by(EvidencePack.id.desc()).limit(limit)))


def open_for_download(workspace, pack_id, membership, user):
    """The pack, ready to stream; audited. Expired → 410, not ready → 409, full numbers the user may
    not see → 403."""
    pack = get_pack(workspace, pack_id, membership, user)
    if pack.state == "expired" or pack.expires_at <= utcnow():
        raise exports.ExportExpired(f"This evidence pack expired on {pack.expires_at:%Y-%m-%d %H:%M} UTC and its "
                                    "file was removed. Build a new one from the campaign.")
    if pack.state != "done" or not pack.path:
        raise exports.ExportNotReady("This evidence pack is not ready yet." if pack.state in ("queued", "running")
                                     else "This evidence pack failed; build a new one from the campaign.")
    if pack.unmasked and not exports.may_view_full(membership, user):
        raise exports.FullNumbersRefused("This evidence pack contains full numbers, which your role may not see.")
    if not file_store.exists(pack.path):
        raise exports.ExportExpired("The file of this evidence pack is no longer on the server. Build a new one.")
    audit.record("evidence.downloaded", workspace_id=workspace.id, object_type="evidence_pack", object_id=pack.id,
                 after={"campaign_id": pack.campaign_id, "sha256": pack.sha256, "unmasked": pack.unmasked})
    return pack


def download_name(pack):
    return f"campaign-{pack.campaign_id}-evidence-{pack.id}.zip"


def status(pack):
    return {"id": pack.id, "campaign_id": pack.campaign_id, "state": pack.state, "sha256": pack.sha256,
            "size": pack.size, "recipients": pack.recipients, "unmasked": pack.unmasked, "error": pack.error,
            "created_at": _iso(pack.created_at), "finished_at": _iso(pack.finished_at),
            "expires_at": _iso(pack.expires_at)}


def _iso(value):
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if value else None


# --- the file ----------------------------------------------------------------------------------

def send(pack):
    """The download response, from whichever file store holds the pack (any host may serve it)."""
    return file_store.send(pack.path, MIME, download_name(pack))


class _Digesting:
    """Write-through SHA-256 and size of the ZIP's bytes: the pack is hashed as it is written, never
    read back (a 10M-recipient pack in the database store would be read twice otherwise)."""

    def __init__(self, target: io.BufferedWriter) -> None:
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        written = self.target.write(data)
        self.sha.update(memoryview(data)[:written])
        self.size += written
        return written

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        """The store's writer is finished by file_store.create, not by the ZIP."""


# --- the build (called by the job) ------------------------------------------------------------

class _Hashing:
    """A writable ZIP member that counts and hashes what goes through it."""

    def __init__(self, member):
        self.member, self.sha, self.bytes = member, hashlib.sha256(), 0

    def write(self, data):
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.sha.update(raw)
        self.bytes += len(raw)
        self.member.write(raw)


class _Pack:
    def __init__(self, zf):
        self.zf, self.files = zf, []

    @contextlib.contextmanager
    def member(self, name):
        with self.zf.open(name, "w", force_zip64=True) as raw:
            out = _Hashing(raw)
            yield out
        self.files.append({"name": name, "sha256": out.sha.hexdigest(), "bytes": out.bytes})

    def json(self, name, document):
        with self.member(name) as out:
            out.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def _user(user_id):
    user = db.session.get(User, user_id) if user_id else None
    return {"id": user.id, "email": user.email} if user else ({"id": user_id, "email": None} if user_id else None)


def campaign_document(campaign):
    """The campaign as approved (fingerprint and basis, checked), its SMPP values and schedule."""
    smpp, defaults, overridden = draft_steps.effective_smpp(campaign)
    basis = None
    if campaign.approval_basis:
        try:
            basis = json.loads(campaign.approval_basis)
        except ValueError:
            basis = campaign.approval_basis
    fingerprint = campaign.approval_fingerprint
    basis_ok = bool(campaign.approval_basis and fingerprint
                    and hashlib.sha256(campaign.approval_basis.encode("utf-8")).hexdigest() == fingerprint)
    current_ok = None
    if basis_ok:
        current_ok = approval.digest(approval.basis(campaign)) == fingerprint
    workspace = campaign.workspace
    return {
        "format": FORMAT,
        "campaign": {"id": campaign.id, "name": campaign.name, "workspace": workspace.slug, "mode": campaign.mode,
                     "status": campaign.status, "moderation": campaign.moderation,
                     "message_text": campaign.message_text, "sender_revision_id": campaign.sender_revision_id,
                     "author": _user(campaign.author_id), "created_at": _iso(campaign.created_at),
                     "submitted_at": _iso(campaign.submitted_at), "moderated_at": _iso(campaign.moderated_at),
                     "moderated_by": _user(campaign.moderated_by_id), "moderation_note": campaign.moderation_note,
                     "started_at": _iso(campaign.started_at), "finished_at": _iso(campaign.finished_at),
                     "archived_at": _iso(campaign.archived_at), "failure_reason": campaign.failure_reason,
                     "pause_reason": campaign.pause_reason},
        "approval": {"fingerprint": fingerprint, "basis": basis,
                     "basis_matches_fingerprint": basis_ok, "campaign_still_matches": current_ok},
        "smpp": {"values": smpp, "sender_defaults": defaults, "overridden": sorted(overridden)},
        "schedule": {"mode": campaign.mode, "auto_start": campaign.auto_start, "start_at": _iso(campaign.start_at),
                     "spread_first_day": campaign.spread_first_day.isoformat() if campaign.spread_first_day else None,
                     "spread_last_day": campaign.spread_last_day.isoformat() if campaign.spread_last_day else None,
                     "daily_limit": campaign.daily_limit, "ignore_daily_window": campaign.ignore_daily_window,
                     "workspace_timezone": workspace.timezone,
                     "workspace_sending_window": f"{workspace.window_start}-{workspace.window_end}"},
    }


def uploads_document(campaign):
    rows = db.session.scalars(select(Upload).where(Upload.campaign_id == campaign.id).order_by(Upload.id))
    return [{"id": u.id, "source": u.source, "original_name": u.original_name, "state": u.state,
             "sha256": u.sha256, "bytes": u.bytes_total, "lines": u.lines, "accepted": u.accepted,
             "duplicates": u.duplicates, "rejected": u.rejected, "stop_listed": u.stop_listed,
             "created_by": _user(u.created_by_id), "created_at": _iso(u.created_at),
             "finished_at": _iso(u.finished_at)} for u in rows]


def delivery_document(campaign):
    """Totals by delivery state and SMPP code: one GROUP BY in the database (flat memory)."""
    rows = db.session.execute(select(Recipient.state, Recipient.smpp_status, func.count())
                              .where(Recipient.campaign_id == campaign.id)
                              .group_by(Recipient.state, Recipient.smpp_status)).all()
    by_state: dict = {}
    by_code: dict = {}
    for state, code, n in rows:
        by_state[state] = by_state.get(state, 0) + int(n)
        by_code[code or "none"] = by_code.get(code or "none", 0) + int(n)
    return {"recipients": sum(by_state.values()), "by_state": dict(sorted(by_state.items())),
            "by_smpp_code": dict(sorted(by_code.items())),
            "counters": {k: getattr(campaign, f"{k}_count") for k in
                         ("recipients", "queued", "sent", "delivered", "failed", "inflight")}}


def contributors_document(campaign):
    rows = db.session.scalars(select(CampaignContributor).where(CampaignContributor.campaign_id == campaign.id)
                              .order_by(CampaignContributor.at))
    return [{"user": _user(r.user_id), "role": r.role, "first_contribution": r.action, "at": _iso(r.at)}
            for r in rows]


class _SealIndex:
    """Arrival stamp → id of the seal covering it (None: not sealed yet), from the seal bounds."""

    def __init__(self):
        rows = db.session.execute(select(AuditSeal.upper_ms, AuditSeal.id).order_by(AuditSeal.upper_ms)).all()
        self.uppers, self.ids = [r[0] for r in rows], [r[1] for r in rows]

    def __call__(self, arrived):
        i = bisect.bisect_left(self.uppers, arrived)
        return self.ids[i] if i < len(self.ids) else None


def _jsonable(event):
    return {k: (v.astimezone(UTC).isoformat(timespec="milliseconds") if hasattr(v, "astimezone") else v)
            for k, v in event.items()}


def _write_audit(pack, campaign):
    """audit-events.jsonl (each with `seal_id`), streamed; returns (people actions, seal ids used)."""
    query = {"$and": [{"workspace_id": campaign.workspace_id},
                      {"$or": [{"object_type": "campaign", "object_id": str(campaign.id)},
                               {"after.campaign_id": campaign.id}]}]}
    locate = _SealIndex()
    people, seals = [], set()
    with pack.member("audit-events.jsonl") as out:
        for event in audit.get_store().iter_events(query):
            seal_id = locate(audit_seals.arrival(event))
            if seal_id is not None:
                seals.add(seal_id)
            row = _jsonable(event)
            row["seal_id"] = seal_id
            row["sha256"] = audit_seals.event_hash(event)  # the leaf hash the seal holds for it
            out.write(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str) + "\n")
            action = str(event.get("action") or "")
            if action.startswith(PEOPLE_ACTIONS) and action not in NOT_PEOPLE:
                people.append({"at": row.get("ts"), "action": action, "actor_email": event.get("actor_email"),
                               "actor_id": event.get("actor_id"), "actor_role": event.get("actor_role"),
                               "note": event.get("note"), "before": event.get("before"),
                               "after": event.get("after"), "event_id": event.get("_id"), "seal_id": seal_id})
    return people, seals


def _seals_document(seal_ids):
    rows: list[AuditSeal] = list(db.session.scalars(
        select(AuditSeal).where(AuditSeal.id.in_(sorted(seal_ids))).order_by(AuditSeal.position))) if seal_ids else []
    check = audit_seals.last_verification()
    return {"seals": [{"id": s.id, "position": s.position, "events": s.events, "first_event_id": s.first_event_id,
                       "last_event_id": s.last_event_id, "prev_root": s.prev_root, "root": s.root,
                       "sealed_at": _iso(s.sealed_at), "lower_ms": s.lower_ms, "upper_ms": s.upper_ms}
                      for s in rows],
            "last_verification": None if check is None else {
                "outcome": check.outcome, "finished_at": _iso(check.finished_at), "message": check.message}}


def _write_recipients(pack, campaign_id, unmasked, on_rows):
    """recipients.csv, streamed with the export's keyset reader (exports._chunks) and its cell rules."""
    number_cell = exports.csv_cell if unmasked else exports.fast_masker()
    iso = exports._sqlite_iso if db.engine.dialect.name == "sqlite" else exports._as_text
    written = 0
    with pack.member("recipients.csv") as out:
        out.write(",".join(exports.COLUMNS) + "\r\n")
        for partition in exports._chunks(campaign_id, on_rows):
            out.write("".join([f"{number_cell(n)},{exports.csv_cell(s)},{exports.csv_cell(c) if c else ''},"
                               f"{iso(a)},{iso(d)}\r\n" for n, s, c, a, d in partition]))
            written += len(partition)
    return written


def build(pack_id, on_progress=None):
    """Write the pack into the file store. Idempotent: a re-run (after a crash) writes a new file from
    the start (the killed run's incomplete file is never visible; `file_store.sweep_incomplete`
    removes it)."""
    pack = db.session.get(EvidencePack, pack_id)
    if pack is None or pack.state in ("done", "expired"):
        return pack
    campaign = db.session.get(Campaign, pack.campaign_id)
    if campaign is None:  # deleted meanwhile: its packs went with it (ON DELETE CASCADE)
        return pack
    file_store.delete(pack.path)  # a complete file of an earlier run that did not get marked done
    db.session.execute(update(EvidencePack).where(EvidencePack.id == pack_id)
                       .values(state="running", recipients=0, error=None, path=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()
    unmasked, expected = pack.unmasked, campaign.recipients_count
    requester = _user(pack.created_by_id)

    def progress(rows):
        db.session.execute(update(EvidencePack).where(EvidencePack.id == pack_id).values(recipients=rows)
                           .execution_options(synchronize_session=False))
        db.session.commit()
        if on_progress:
            on_progress({"rows": rows, "expected": expected,
                         "percent": round(100 * rows / expected, 1) if expected else None})

    with file_store.create("evidence", "zip") as out, out.binary() as fh:
        digesting = _Digesting(fh)
        with zipfile.ZipFile(digesting, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            pack_zip = _Pack(zf)
            pack_zip.json("campaign.json", campaign_document(campaign))
            pack_zip.json("uploads.json", uploads_document(campaign))
            pack_zip.json("delivery.json", delivery_document(campaign))
            people, seal_ids = _write_audit(pack_zip, campaign)
            pack_zip.json("people.json", {"contributors": contributors_document(campaign), "actions": people})
            pack_zip.json("seals.json", _seals_document(seal_ids))
            written = _write_recipients(pack_zip, campaign.id, unmasked, progress)
            manifest = {"format": FORMAT, "campaign_id": campaign.id, "workspace": campaign.workspace.slug,
                        "pack_id": pack.id, "generated_at": _iso(utcnow()), "requested_by": requester,
                        "numbers": "full" if unmasked else "masked", "recipients": written,
                        "files": list(pack_zip.files)}
            pack_zip.json("manifest.json", manifest)
            with pack_zip.member("SHA256SUMS") as member:  # `sha256sum -c SHA256SUMS` after unzipping
                member.write("".join(f"{f['sha256']}  {f['name']}\n" for f in pack_zip.files))
    final, digest, size = out.ref, digesting.sha.hexdigest(), digesting.size
    done = affected_rows(db.session.execute(
        update(EvidencePack).where(EvidencePack.id == pack_id, EvidencePack.state == "running")
        .values(state="done", recipients=written, path=final, sha256=digest, size=size, finished_at=utcnow())
        .execution_options(synchronize_session=False)))
    db.session.commit()
    db.session.refresh(pack)
    if not done:  # expired (or removed) while it was being built: leave no file behind
        file_store.delete(final)
        return pack
    audit.record("evidence.completed", workspace_id=pack.workspace_id, object_type="evidence_pack",
                 object_id=pack.id, after={"campaign_id": pack.campaign_id, "sha256": digest, "bytes": size,
                                           "recipients": written, "unmasked": unmasked},
                 actor_id=requester["id"] if requester else None,
                 actor_email=requester["email"] if requester else None, actor_role="job")
    return pack


def mark_failed(pack_id, message):
    """The job gave up (no retry left): the row says why and the partial file goes."""
    pack = db.session.get(EvidencePack, pack_id)
    if pack is None:
        return
    file_store.delete(pack.path)
    db.session.execute(update(EvidencePack).where(EvidencePack.id == pack_id,
                                                  EvidencePack.state.in_(("queued", "running")))
                       .values(state="failed", error=message[:300], finished_at=utcnow(), path=None)
                       .execution_options(synchronize_session=False))
    db.session.commit()


def expire(now=None):
    """Remove the files of packs past their expiry; rows stay as `expired` (the link says so)."""
    return exports.expire_files(EvidencePack, "evidence.expired", "evidence_pack",
                                lambda pack: {"campaign_id": pack.campaign_id}, now)
