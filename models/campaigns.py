"""Campaigns: one SMS send with its mode, lifecycle status, moderation state and counters.

Status and moderation change only through services/campaigns.py (the transition table).
Counters are maintained by the ingest and dispatch jobs so pages never count recipients.
"""
from sqlalchemy.orm import Mapped, relationship

from extensions import db
from models.base import Model, UTCDateTime, utcnow
from models.senders import SenderRevision
from models.states import CampaignStatus, Mode, Moderation, check_in, values
from models.users import User
from models.workspaces import Workspace

MODES = values(Mode)
STATUSES = values(CampaignStatus)
MODERATION = values(Moderation)


class Campaign(Model):
    __tablename__ = "campaigns"
    __table_args__ = (
        db.CheckConstraint(check_in("mode", Mode), name="mode_known"),
        db.CheckConstraint(check_in("status", CampaignStatus), name="status_known"),
        db.CheckConstraint(check_in("moderation", Moderation), name="moderation_known"),
        # Nothing sends unapproved, whatever writes the row (the transition table checks it first).
        db.CheckConstraint("status NOT IN ('Sending', 'Paused') OR moderation = 'approved'",
                           name="sending_needs_approval"),
        db.Index("ix_campaigns_workspace_status", "workspace_id", "status"),
        # The list's sort columns at 100k campaigns per workspace (Sender, Created; Start below).
        db.Index("ix_campaigns_ws_saddr", "workspace_id", "saddr", "id"),
        db.Index("ix_campaigns_ws_created", "workspace_id", "created_at", "id"),
    )

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    author_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"), index=True)
    name = db.Column(db.String(120), nullable=False)
    mode = db.Column(db.String(10), nullable=False)
    status = db.Column(db.String(10), nullable=False, default="New")
    moderation = db.Column(db.String(10), nullable=False, default="awaiting")
    wizard_step = db.Column(db.SmallInteger, nullable=False, default=1)
    sender_revision_id = db.Column(db.Integer, db.ForeignKey("sender_revisions.id", ondelete="RESTRICT"), index=True)
    message_text = db.Column(db.Text, nullable=False, default="")
    # SMPP overrides; None = the sender revision's defaults.
    saddr = db.Column(db.String(15))
    ston = db.Column(db.SmallInteger)
    snpi = db.Column(db.SmallInteger)
    dton = db.Column(db.SmallInteger)
    dnpi = db.Column(db.SmallInteger)
    daily_limit = db.Column(db.Integer)
    auto_start = db.Column(db.Boolean, nullable=False, default=True)
    start_at = db.Column(UTCDateTime)
    spread_first_day = db.Column(db.Date)
    spread_last_day = db.Column(db.Date)
    ignore_daily_window = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    submitted_at = db.Column(UTCDateTime)
    moderated_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    moderated_at = db.Column(UTCDateTime)
    moderation_note = db.Column(db.String(500))
    # What the approval bound (services/approval.py): SHA-256 of the canonical JSON kept beside it.
    approval_fingerprint = db.Column(db.String(64))
    approval_basis = db.Column(db.Text)
    # Start pressed before start_at (issue 17): the tick starts it on time. Not auto_start, which the
    # approval fingerprint binds (services/approval.py).
    start_requested_at = db.Column(UTCDateTime)
    started_at = db.Column(UTCDateTime)
    finished_at = db.Column(UTCDateTime)
    archived_at = db.Column(UTCDateTime)
    # Why the system stopped it, in words for the operator (services/dispatch.py sets them).
    failure_reason = db.Column(db.String(300))
    pause_reason = db.Column(db.String(300))
    # Counters kept by jobs (dashboards and lists read these, never COUNT(*) over recipients).
    recipients_count = db.Column(db.BigInteger, nullable=False, default=0)
    queued_count = db.Column(db.BigInteger, nullable=False, default=0)
    sent_count = db.Column(db.BigInteger, nullable=False, default=0)
    delivered_count = db.Column(db.BigInteger, nullable=False, default=0)
    failed_count = db.Column(db.BigInteger, nullable=False, default=0)
    inflight_count = db.Column(db.BigInteger, nullable=False, default=0)
    # Recipients whose Spread day passed unsent (issue 17): final, never sent.
    expired_count = db.Column(db.BigInteger, nullable=False, default=0, server_default="0")
    # "Send again to failed numbers": the finished campaign this draft retries, and which failures
    # (services/retry.py). No foreign key: the original may be deleted; the link then names a gone id.
    retry_of_id = db.Column(db.Integer, index=True)
    retry_which = db.Column(db.String(10))

    author: Mapped[User | None] = relationship("User", foreign_keys=[author_id])
    moderated_by = db.relationship("User", foreign_keys=[moderated_by_id])
    sender_revision: Mapped[SenderRevision | None] = relationship("SenderRevision")
    workspace: Mapped[Workspace] = relationship("Workspace")


# Sort by the actual start, else the planned one.
db.Index("ix_campaigns_ws_start", Campaign.workspace_id, db.func.coalesce(Campaign.started_at, Campaign.start_at),
         Campaign.id)


class JobError(Model):
    """A workflow or parsing failure (a bad file line, a build failure) — the "Job errors" tab."""

    __tablename__ = "job_errors"

    id = db.Column(db.BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    upload_id = db.Column(db.Integer, db.ForeignKey("uploads.id", ondelete="CASCADE"), index=True)
    line_no = db.Column(db.BigInteger)
    reason = db.Column(db.String(200), nullable=False)
    raw = db.Column(db.String(120))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class MessageError(Model):
    """A delivery rejection with its SMPP code — the "Message errors" tab."""

    __tablename__ = "message_errors"

    id = db.Column(db.BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    recipient_id = db.Column(db.BigInteger)
    number_tail = db.Column(db.String(8))
    smpp_status = db.Column(db.String(20))
    reason = db.Column(db.String(200), nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
