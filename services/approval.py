"""An approval binds what was approved: the campaign's fingerprint, taken when a moderator
approves and checked by every dispatch job run before anything reaches the Core.

The fingerprint is the SHA-256 of a canonical JSON document (sorted keys, no spaces, UTF-8) of
everything that decides what is sent, to whom and when: the text, the pinned sender revision,
the effective SADDR/STON/SNPI/DTON/DNPI, the mode and its schedule (auto-start, start time,
Spread days), the daily limit, the window flag (ignore_daily_window) and the recipient set —
each finished upload's SHA-256 and counts plus the campaign's recipient count. A Trigger
campaign's recipients arrive through the API after its start, so its recipient set is not part
of its fingerprint. The document is stored beside the digest (`approval_basis`) so a mismatch
can say which parts changed.

Nothing changes these fields after submission through the product (the wizard, uploads and the
API only touch drafts); the check at dispatch catches what bypasses it — a direct database
write. A mismatch fails the campaign (Failed is terminal: nothing of it is sent; the author
clones it and the copy goes through moderation again) with a Job error naming what changed.
"""
import hashlib
import json
import logging
from datetime import UTC
from typing import Any

from sqlalchemy import func, select, update

import audit
from extensions import affected_rows, db
from models import Campaign, Recipient, Upload
from models.campaigns import JobError
from models.states import Mode
from models.states import Moderation as M
from services import campaigns as lifecycle  # a cycle by design: lifecycle asks approval_values() on approve
from services import segments
from services.campaign_drafts import steps as draft_steps
from services.errors import DomainError

log = logging.getLogger("mc.approval")

FORMAT = 1
LEGACY = "pre-0009"   # approved before fingerprints existed (migration 0009): recorded at first dispatch


class FingerprintMismatch(Exception):
    """The campaign no longer is what the moderator approved; `changed` names the parts."""

    def __init__(self, campaign_id, changed):
        self.campaign_id, self.changed = campaign_id, list(changed)
        super().__init__(f"campaign {campaign_id}: changed since approval: {', '.join(self.changed)}")


def _when(value):
    return value.astimezone(UTC).isoformat() if value is not None else None


def _day(value):
    return value.isoformat() if value is not None else None


def recipient_set(campaign):
    """Each finished upload's SHA-256 and counts, and the campaign's recipient count (None: Trigger)."""
    if campaign.mode == Mode.TRIGGER:
        return None
    uploads = db.session.execute(
        select(Upload.id, Upload.sha256, Upload.bytes_total, Upload.lines, Upload.accepted, Upload.duplicates,
               Upload.rejected, Upload.stop_listed)
        .where(Upload.campaign_id == campaign.id, Upload.state == "done").order_by(Upload.id)).all()
    return {"count": int(campaign.recipients_count or 0),
            "uploads": [{"id": u.id, "sha256": u.sha256, "bytes": int(u.bytes_total), "lines": int(u.lines),
                         "accepted": int(u.accepted), "duplicates": int(u.duplicates), "rejected": int(u.rejected),
                         "stop_listed": int(u.stop_listed)} for u in uploads]}


def basis(campaign):
    """The document the fingerprint is taken over (plain JSON values)."""
    smpp, _, _ = draft_steps.effective_smpp(campaign)
    return {
        "format": FORMAT,
        "campaign_id": campaign.id,
        "text": campaign.message_text or "",
        "encoding": segments.count(campaign.message_text).encoding,
        "sender_revision_id": campaign.sender_revision_id,
        "smpp": {key: smpp[key] for key in ("saddr", "ston", "snpi", "dton", "dnpi")},
        "mode": campaign.mode,
        "schedule": {"auto_start": bool(campaign.auto_start), "start_at": _when(campaign.start_at),
                     "spread_first_day": _day(campaign.spread_first_day),
                     "spread_last_day": _day(campaign.spread_last_day)},
        "daily_limit": campaign.daily_limit,
        "window": {"ignore_daily_window": bool(campaign.ignore_daily_window)},
        "recipients": recipient_set(campaign),
    }


def canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(document):
    return hashlib.sha256(canonical(document).encode("utf-8")).hexdigest()


def approval_values(campaign: Campaign) -> dict[str, Any]:
    """The columns an approval writes beside its decision (services/campaigns.py `approve`)."""
    document = basis(campaign)
    return {"approval_fingerprint": digest(document), "approval_basis": canonical(document)}


def changed_parts(approved_basis, current):
    """Top-level parts of the document that differ ("text", "smpp.saddr", "recipients.count"…)."""
    try:
        approved = json.loads(approved_basis) if approved_basis else None
    except ValueError:
        approved = None
    if not isinstance(approved, dict):
        return ["the stored approval record"]
    changed = []
    for key in sorted(set(approved) | set(current)):
        old, new = approved.get(key), current.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict) and key != "recipients":
            changed += [f"{key}.{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        elif key == "recipients" and isinstance(old, dict) and isinstance(new, dict):
            changed += [f"recipients.{k}" for k in ("count", "uploads") if old.get(k) != new.get(k)]
        else:
            changed.append(key)
    return changed or ["the stored approval record"]


def check(campaign):
    """Raise FingerprintMismatch unless the campaign still is what was approved.

    Cheap per dispatch job run: the campaign row (already loaded), its uploads' rows and one
    indexed count of its recipient rows (rows written straight into the table, bypassing the
    counters, are caught there). A Trigger campaign skips the recipient part.
    """
    stored = campaign.approval_fingerprint
    current = basis(campaign)
    if stored is None:
        raise FingerprintMismatch(campaign.id, ["no fingerprint was stored at approval"])
    if digest(current) != stored:
        raise FingerprintMismatch(campaign.id, changed_parts(campaign.approval_basis, current))
    if current["recipients"] is not None:
        rows = db.session.execute(select(func.count()).select_from(Recipient)
                                  .where(Recipient.campaign_id == campaign.id)).scalar_one()
        if rows != current["recipients"]["count"]:
            raise FingerprintMismatch(campaign.id, [f"recipients.rows ({rows:,} stored, "
                                                    f"{current['recipients']['count']:,} approved)"])


def _record_legacy(campaign):
    """Approved before migration 0009: bind what it holds now (once), so later changes are caught."""
    values = approval_values(campaign)
    done = affected_rows(db.session.execute(update(Campaign).where(Campaign.id == campaign.id,
                                                     Campaign.approval_fingerprint == LEGACY)
                              .values(**values).execution_options(synchronize_session=False)))
    db.session.commit()
    db.session.refresh(campaign)
    if done:
        audit.record("campaigns.fingerprint_recorded", workspace_id=campaign.workspace_id, object_type="campaign",
                     object_id=campaign.id, after={"fingerprint": values["approval_fingerprint"]},
                     note="approved before approval fingerprints existed; bound at its first dispatch",
                     actor_email="system", actor_role="system")


def verify_for_dispatch(campaign_id):
    """The dispatch entry's gate (jobs/dispatch.py), once per job run: True when the campaign may
    be dispatched; False when it was refused (it is Failed now, with a Job error; nothing is sent).
    Campaigns that are not approved are left to dispatch's own rules (they never get an allowance)."""
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)   # as stored now, in one query
    if campaign is None or campaign.moderation != M.APPROVED:
        return True
    if campaign.approval_fingerprint == LEGACY:
        _record_legacy(campaign)
        return True
    try:
        check(campaign)
    except FingerprintMismatch as exc:
        if campaign.status not in lifecycle.TERMINAL:  # a stale job for a campaign already ended sends nothing
            refuse(campaign, exc)
        return False
    return True


def refuse(campaign, mismatch):
    """Fail the campaign with a Job error in one transaction (a second job racing here changes nothing)."""
    stored = campaign.approval_fingerprint
    reason = (f"Dispatch refused: changed after approval ({', '.join(mismatch.changed)}); nothing was sent. "
              "Clone it and submit the copy for moderation.")
    log.error("dispatch refused: %s", mismatch)
    db.session.add(JobError(campaign_id=campaign.id, reason=reason[:200]))
    try:
        # commits the job error with the status change; failure_reason puts it on the page's banner and the JSON
        lifecycle.apply(campaign, "fail", values={"failure_reason": reason[:300]}, note=reason)
    except DomainError as exc:  # another job (or a person) moved it first: nothing is sent anyway
        db.session.rollback()
        log.warning("campaign %s: not failed by the fingerprint check: %s", campaign.id, exc)
        return
    audit.record("campaigns.fingerprint_mismatch", workspace_id=campaign.workspace_id, object_type="campaign",
                 object_id=campaign.id, before={"fingerprint": stored},
                 after={"fingerprint": digest(basis(campaign)), "changed": mismatch.changed},
                 note=reason, actor_email="system", actor_role="system")
