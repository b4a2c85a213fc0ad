"""Sender-name registry: names with versioned, immutable revisions (the SADDR a recipient sees).

A SADDR change never edits a row — it adds revision number+1 in `pending`. Decisions are
conditional UPDATEs (`… WHERE state = 'pending'`), so of two racing moderators one wins and the
other gets a clear Conflict. An approved revision never changes: this module refuses it (and an
ORM guard below refuses it for any caller); on PostgreSQL a trigger refuses it as well.
The campaign wizard offers `approved_revisions_for_wizard(workspace)`.
"""
from sqlalchemy import and_, event, func, inspect, select, update
from sqlalchemy.exc import IntegrityError

import audit
from extensions import affected_rows, db
from models import SenderName, SenderRevision, utcnow
from models.states import RevisionState as R
from services import permissions, smpp
from services.errors import Conflict, DomainError, Forbidden, NotFound
from services.moderation_rules import ensure_may_decide, revision_contributors

OPEN_STATES = (R.DRAFT, R.PENDING)
LABEL_MAX = 80
COMMENT_MAX = 500
NOTE_MAX = 500


class ImmutableRevision(Conflict):
    code = "immutable_revision"


# --- lookups -------------------------------------------------------------------------------

def list_senders(workspace, *, archived=False):
    """Sender names of the workspace, by label; archived ones only when `archived` is true."""
    query = select(SenderName).where(SenderName.workspace_id == workspace.id)
    query = query.where(SenderName.archived_at.isnot(None) if archived else SenderName.archived_at.is_(None))
    return list(db.session.execute(query.order_by(func.lower(SenderName.label), SenderName.id)).scalars())


def get_sender(workspace, sender_id):
    """Scoped lookup: a name of another workspace is a 404 (its existence is not revealed)."""
    sender = db.session.get(SenderName, sender_id)
    if sender is None or sender.workspace_id != workspace.id:
        raise NotFound("This sender name does not exist in this workspace.")
    return sender


def get_revision(workspace, revision_id):
    revision = db.session.get(SenderRevision, revision_id)
    if revision is None or revision.workspace_id != workspace.id:
        raise NotFound("This sender revision does not exist in this workspace.")
    return revision


def current_revision(sender):
    """The revision campaigns should use now: the highest-numbered approved one (or None)."""
    approved = [r for r in sender.revisions if r.state == R.APPROVED]
    return max(approved, key=lambda r: r.number) if approved else None


def open_revision(sender):
    """The draft or pending revision of a name (at most one at a time), or None."""
    return next((r for r in sorted(sender.revisions, key=lambda r: -r.number) if r.state in OPEN_STATES), None)


def approved_revisions_for_wizard(workspace):
    """For the campaign wizard: the current approved revision of every non-archived sender name,
    ordered by the name's label. Each item is a SenderRevision (its `.sender` is the name)."""
    newest = (select(SenderRevision.sender_id, func.max(SenderRevision.number).label("number"))
              .where(SenderRevision.workspace_id == workspace.id, SenderRevision.state == R.APPROVED)
              .group_by(SenderRevision.sender_id).subquery())
    query = (select(SenderRevision)
             .join(newest, and_(SenderRevision.sender_id == newest.c.sender_id,
                                SenderRevision.number == newest.c.number))
             .join(SenderName, SenderName.id == SenderRevision.sender_id)
             .where(SenderName.workspace_id == workspace.id, SenderName.archived_at.is_(None))
             .order_by(func.lower(SenderName.label), SenderName.id))
    return list(db.session.execute(query).scalars())


def get_approved_revision(workspace, revision_id):
    """The revision a new campaign may pin: approved, current, of a non-archived name here."""
    revision = get_revision(workspace, revision_id)
    if revision.state != R.APPROVED or revision.sender.archived_at is not None \
            or current_revision(revision.sender) is not revision:
        raise DomainError("Choose one of the approved sender names offered; this revision is not (or no "
                          "longer) approved for new campaigns.", code="sender_not_approved")
    return revision


def pending_revisions(workspace, limit=None):
    """The moderation queue's Sender Revisions tab: pending revisions, oldest submission first."""
    query = (select(SenderRevision).join(SenderName, SenderName.id == SenderRevision.sender_id)
             .where(SenderRevision.workspace_id == workspace.id, SenderRevision.state == R.PENDING,
                    SenderName.archived_at.is_(None))
             .order_by(SenderRevision.submitted_at, SenderRevision.id))
    if limit:
        query = query.limit(limit)
    return list(db.session.execute(query).scalars())


def count_pending(workspace):
    return db.session.execute(
        select(func.count(SenderRevision.id)).join(SenderName, SenderName.id == SenderRevision.sender_id)
        .where(SenderRevision.workspace_id == workspace.id, SenderRevision.state == R.PENDING,
               SenderName.archived_at.is_(None))).scalar_one()


# --- validation ----------------------------------------------------------------------------

def _clean_label(label):
    value = " ".join((label or "").split())
    if not value:
        raise DomainError("Give the sender name a label, e.g. the brand it stands for.", code="invalid_name")
    if len(value) > LABEL_MAX:
        raise DomainError(f"The name has at most {LABEL_MAX} characters (this one has {len(value)}).",
                          code="invalid_name")
    return value


def _clean_fields(saddr, ton, npi, comment):
    saddr = smpp.validate_saddr(saddr)
    default_ton, default_npi = smpp.default_ton_npi(saddr)
    ton = default_ton if ton in (None, "") else smpp.validate_ton(ton)
    npi = default_npi if npi in (None, "") else smpp.validate_npi(npi)
    comment = (comment or "").strip()
    if len(comment) > COMMENT_MAX:
        raise DomainError(f"The comment has at most {COMMENT_MAX} characters; shorten it.", code="invalid_comment")
    return saddr, ton, npi, comment


def snapshot(revision):
    """The key fields of a revision, for audit before/after."""
    return {"revision": revision.number, "saddr": revision.saddr, "ton": revision.ton, "npi": revision.npi,
            "state": revision.state}


# --- proposals -----------------------------------------------------------------------------

def propose(workspace, membership, user, *, label, saddr, ton=None, npi=None, comment="", draft=False):
    """Create a sender name and its revision #1 (pending, or a draft to submit later)."""
    permissions.require("senders.propose", membership, superadmin=user.is_superadmin)
    label = _clean_label(label)
    saddr, ton, npi, comment = _clean_fields(saddr, ton, npi, comment)
    taken = db.session.execute(
        select(SenderName.id).where(SenderName.workspace_id == workspace.id, SenderName.archived_at.is_(None),
                                    func.lower(SenderName.label) == label.lower())).first()
    if taken:
        raise Conflict(f"A sender name called “{label}” already exists here; open it and propose a new "
                       "revision instead, or choose another name.", code="duplicate_name")
    now = utcnow()
    sender = SenderName(workspace_id=workspace.id, label=label, created_by_id=user.id, created_at=now)
    revision = SenderRevision(sender=sender, workspace_id=workspace.id, number=1, saddr=saddr, ton=ton, npi=npi,
                              comment=comment, state=R.DRAFT if draft else R.PENDING, created_by_id=user.id,
                              created_at=now, submitted_at=None if draft else now,
                              submitted_by_id=None if draft else user.id)
    db.session.add_all([sender, revision])
    db.session.commit()
    audit.record("senders.proposed", workspace_id=workspace.id, object_type="sender_revision",
                 object_id=revision.id, before=None, after={"name": label, **snapshot(revision)},
                 note=comment or None)
    return revision


def propose_revision(workspace, sender_id, membership, user, *, saddr, ton=None, npi=None, comment="",
                     draft=False):
    """A changed SADDR (or TON/NPI): a new revision number+1; nothing existing is edited."""
    permissions.require("senders.propose", membership, superadmin=user.is_superadmin)
    sender = get_sender(workspace, sender_id)
    if sender.archived_at is not None:
        raise Conflict(f"“{sender.label}” is archived; propose a new sender name instead.", code="archived")
    saddr, ton, npi, comment = _clean_fields(saddr, ton, npi, comment)
    waiting = open_revision(sender)
    if waiting is not None:
        what = "a draft" if waiting.state == R.DRAFT else "waiting for a moderator"
        raise Conflict(f"Revision #{waiting.number} ({waiting.saddr}) is {what}; withdraw it or wait for "
                       "the decision before proposing another change.", code="revision_open")
    current = current_revision(sender)
    if current is not None and (current.saddr, current.ton, current.npi) == (saddr, ton, npi):
        raise DomainError(f"Revision #{current.number} is already approved with SADDR {saddr} "
                          f"(TON {ton}, NPI {npi}); change the SADDR, TON or NPI to propose a revision.",
                          code="unchanged")
    now = utcnow()
    number = (db.session.execute(select(func.max(SenderRevision.number))
                                 .where(SenderRevision.sender_id == sender.id)).scalar() or 0) + 1
    revision = SenderRevision(sender_id=sender.id, workspace_id=workspace.id, number=number, saddr=saddr, ton=ton,
                              npi=npi, comment=comment, state=R.DRAFT if draft else R.PENDING,
                              created_by_id=user.id, created_at=now, submitted_at=None if draft else now,
                              submitted_by_id=None if draft else user.id)
    db.session.add(revision)
    try:
        db.session.commit()
    except IntegrityError:  # the unique (sender_id, number) lost a race with another proposal
        db.session.rollback()
        raise Conflict("Someone proposed a revision of this name at the same moment; reload the page "
                       "and check it before proposing again.", code="changed_meanwhile") from None
    db.session.refresh(sender)
    audit.record("senders.revision_proposed", workspace_id=workspace.id, object_type="sender_revision",
                 object_id=revision.id, before=snapshot(current) if current else None,
                 after={"name": sender.label, **snapshot(revision)}, note=comment or None)
    return revision


def _may_manage_open(revision, membership, user):
    return revision.created_by_id == user.id or permissions.allowed("senders.archive", membership,
                                                                    superadmin=user.is_superadmin)


def _conditional_state_change(revision, expected, values):
    """UPDATE … WHERE state IN expected; returns True when this request made the change."""
    done = affected_rows(db.session.execute(
        update(SenderRevision)
        .where(SenderRevision.id == revision.id, SenderRevision.state.in_(expected))
        .values(**values).execution_options(synchronize_session=False)))
    if not done:
        db.session.rollback()
        db.session.refresh(revision)
        return False
    db.session.commit()
    db.session.refresh(revision)
    return True


def submit_draft(workspace, revision_id, membership, user):
    """Draft → pending: the revision enters the moderation queue."""
    permissions.require("senders.propose", membership, superadmin=user.is_superadmin)
    revision = get_revision(workspace, revision_id)
    if not _may_manage_open(revision, membership, user):
        raise Forbidden("Only the person who wrote this draft (or an admin) can submit it.")
    before = snapshot(revision)
    submitted = {"state": R.PENDING, "submitted_at": utcnow(), "submitted_by_id": user.id}  # four-eyes
    if not _conditional_state_change(revision, (R.DRAFT,), submitted):
        raise Conflict(f"Revision #{revision.number} is {revision.state}, not a draft; nothing was submitted.",
                       code="not_draft")
    audit.record("senders.revision_submitted", workspace_id=workspace.id, object_type="sender_revision",
                 object_id=revision.id, before=before, after=snapshot(revision))
    return revision


def withdraw(workspace, revision_id, membership, user):
    """Draft or pending → archived, by its author or an admin (e.g. to fix a typo)."""
    permissions.require("senders.propose", membership, superadmin=user.is_superadmin)
    revision = get_revision(workspace, revision_id)
    if not _may_manage_open(revision, membership, user):
        raise Forbidden("Only the person who proposed this revision (or an admin) can withdraw it.")
    before = snapshot(revision)
    if not _conditional_state_change(revision, OPEN_STATES, {"state": R.ARCHIVED}):
        raise _already_decided(revision) if revision.state in (R.APPROVED, R.REJECTED) else \
            Conflict(f"Revision #{revision.number} is {revision.state}; there is nothing to withdraw.",
                     code="not_open")
    audit.record("senders.revision_withdrawn", workspace_id=workspace.id, object_type="sender_revision",
                 object_id=revision.id, before=before, after=snapshot(revision))
    return revision


# --- decisions -----------------------------------------------------------------------------

def _already_decided(revision):
    who = revision.decided_by.email if revision.decided_by else "another moderator"
    when = revision.decided_at.strftime("%Y-%m-%d %H:%M:%S UTC") if revision.decided_at else "just now"
    label = revision.sender.label if revision.sender else "sender name"
    return Conflict(f"Revision #{revision.number} was already {revision.state} by {who} at {when} "
                    f"({label}, SADDR {revision.saddr}); it has left the queue.", code="already_decided")


def _decide(workspace, revision_id, membership, user, decision, note=None):
    revision = get_revision(workspace, revision_id)
    ensure_may_decide(workspace, membership, user, revision_contributors(revision), "sender revision")
    note = (note or "").strip()
    if decision == R.REJECTED and not note:
        raise DomainError("Write a note saying why the sender revision is rejected; the author will see it.",
                          code="note_required")
    if len(note) > NOTE_MAX:
        raise DomainError(f"The note has at most {NOTE_MAX} characters; shorten it.", code="invalid_note")
    if revision.state != R.PENDING:
        if revision.state in (R.APPROVED, R.REJECTED):
            raise _already_decided(revision)
        raise Conflict(f"Revision #{revision.number} is {revision.state}, not waiting for a moderator; "
                       "nothing was changed.", code="not_pending")
    if revision.sender.archived_at is not None:
        raise Conflict(f"“{revision.sender.label}” has been archived; its revisions are no longer decided.",
                       code="archived")
    before = snapshot(revision)
    previous = current_revision(revision.sender)
    changed = _conditional_state_change(revision, (R.PENDING,), {
        "state": decision, "decided_by_id": user.id, "decided_at": utcnow(), "decision_note": note or None})
    if not changed:
        if revision.state in (R.APPROVED, R.REJECTED):
            raise _already_decided(revision)
        raise Conflict(f"Revision #{revision.number} changed meanwhile (it is now {revision.state}); "
                       "nothing was changed.", code="changed_meanwhile")
    after = snapshot(revision)
    if decision == R.APPROVED and previous is not None:
        after["replaces_revision"] = previous.number
    audit.record(f"senders.revision_{decision}", workspace_id=workspace.id, object_type="sender_revision",
                 object_id=revision.id, before=before, after=after, note=note or None)
    return revision


def approve(workspace, revision_id, membership, user):
    """Pending → approved; the highest-numbered approved revision becomes the name's current one
    (earlier approved revisions stay approved and unchanged: campaigns pin them)."""
    return _decide(workspace, revision_id, membership, user, R.APPROVED)


def reject(workspace, revision_id, membership, user, note):
    """Pending → rejected with a note the author reads on the sender name's page."""
    return _decide(workspace, revision_id, membership, user, R.REJECTED, note)


# --- archive -------------------------------------------------------------------------------

def archive(workspace, sender_id, membership, user):
    """Hide a name from the campaign wizard. Campaigns that pin its revisions keep running; its
    approved revisions stay approved; a draft or pending revision is withdrawn (archived)."""
    permissions.require("senders.archive", membership, superadmin=user.is_superadmin)
    sender = get_sender(workspace, sender_id)
    now = utcnow()
    done = affected_rows(db.session.execute(
        update(SenderName).where(SenderName.id == sender.id, SenderName.archived_at.is_(None))
        .values(archived_at=now).execution_options(synchronize_session=False)))
    if not done:
        db.session.rollback()
        raise Conflict(f"“{sender.label}” is already archived.", code="already_archived")
    withdrawn = [r.number for r in sender.revisions if r.state in OPEN_STATES]
    db.session.execute(update(SenderRevision).where(SenderRevision.sender_id == sender.id,
                                                    SenderRevision.state.in_(OPEN_STATES))
                       .values(state=R.ARCHIVED).execution_options(synchronize_session=False))
    db.session.commit()
    db.session.expire(sender)
    audit.record("senders.archived", workspace_id=workspace.id, object_type="sender_name", object_id=sender.id,
                 before={"archived": False}, after={"archived": True, "withdrawn_revisions": withdrawn})
    return sender


# --- immutability guard for every ORM caller ---------------------------------------------------

_FROZEN = ("sender_id", "workspace_id", "number", "saddr", "ton", "npi", "comment", "submitted_at",
           "decided_at", "decision_note")


@event.listens_for(SenderRevision, "before_update")
def _refuse_changes_to_approved(mapper, connection, target):
    attrs = inspect(target).attrs
    state_history = attrs.state.history
    old_state = state_history.deleted[0] if state_history.deleted else target.state
    if old_state != R.APPROVED:
        return
    changed = [name for name in _FROZEN if attrs[name].history.has_changes()]
    if state_history.has_changes() and target.state != R.ARCHIVED:
        changed.append("state")
    if changed:
        raise ImmutableRevision(f"Revision #{target.number} is approved and cannot change "
                                f"({', '.join(changed)}); propose a new revision instead.")


# --- JSON ----------------------------------------------------------------------------------

def _when(value):
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def revision_json(revision):
    return {
        "id": revision.id, "sender_id": revision.sender_id, "number": revision.number, "saddr": revision.saddr,
        "ston": revision.ton, "snpi": revision.npi, "comment": revision.comment, "state": revision.state,
        "note": revision.decision_note,
        "created_by": revision.created_by.email if revision.created_by else None,
        "created_at": _when(revision.created_at), "submitted_at": _when(revision.submitted_at),
        "decided_by": revision.decided_by.email if revision.decided_by else None,
        "decided_at": _when(revision.decided_at),
    }


def sender_json(sender, with_revisions=True):
    current = current_revision(sender)
    waiting = open_revision(sender)
    out = {
        "id": sender.id, "workspace_id": sender.workspace_id, "name": sender.label,
        "archived": sender.archived_at is not None, "archived_at": _when(sender.archived_at),
        "created_at": _when(sender.created_at),
        "current_revision": revision_json(current) if current else None,
        "open_revision": revision_json(waiting) if waiting else None,
    }
    if with_revisions:
        out["revisions"] = [revision_json(r) for r in sorted(sender.revisions, key=lambda r: r.number)]
    return out
