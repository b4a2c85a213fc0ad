"""Recipients of a campaign, uploads that feed them, and the workspace stop-list.

Numbers are stored normalised (digits, 7–15) with a keyed `ctn_hash`; pages show the hash and a
masked tail unless the member may see full numbers.
"""
from extensions import db
from models.base import Model, UTCDateTime, utcnow

BigId = db.BigInteger().with_variant(db.Integer, "sqlite")
RECIPIENT_STATES = ("queued", "claimed", "sent", "delivered", "failed", "stop_listed")


class Recipient(Model):
    __tablename__ = "recipients"
    __table_args__ = (
        db.UniqueConstraint("campaign_id", "number", name="uq_recipients_campaign_number"),
        db.Index("ix_recipients_campaign_state", "campaign_id", "state"),
    )

    id = db.Column(BigId, primary_key=True)
    # No foreign key on purpose (migration 0007): its per-row check doubled the cost of a bulk
    # load; inserts come only from services holding the campaign row lock, and a trigger on
    # campaigns deletes a campaign's recipients with it.
    campaign_id = db.Column(db.Integer, nullable=False)
    upload_id = db.Column(db.Integer)  # the upload that stored the row (None: Trigger API); no key, as above
    number = db.Column(db.String(15), nullable=False)
    ctn_hash = db.Column(db.String(64), nullable=False)
    state = db.Column(db.String(12), nullable=False, default="queued")
    spread_day = db.Column(db.Date)
    batch_id = db.Column(db.Integer)
    core_message_id = db.Column(db.String(64))
    smpp_status = db.Column(db.String(20))
    submitted_at = db.Column(UTCDateTime)
    delivered_at = db.Column(UTCDateTime)
    # Per-message transient refusals (throttled, queue full): how often, and not before when to
    # resubmit. NULL = never refused; nullable without a default so that adding them is free.
    attempts = db.Column(db.SmallInteger)
    retry_at = db.Column(UTCDateTime)


class Upload(Model):
    __tablename__ = "uploads"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    source = db.Column(db.String(10), nullable=False)  # browser | api | cli
    original_name = db.Column(db.String(255), nullable=False, default="")
    spool_path = db.Column(db.String(500), nullable=False)
    state = db.Column(db.String(10), nullable=False, default="queued")  # queued|running|done|failed
    bytes_total = db.Column(db.BigInteger, nullable=False, default=0)
    bytes_done = db.Column(db.BigInteger, nullable=False, default=0)  # committed offset: resume point
    lines = db.Column(db.BigInteger, nullable=False, default=0)
    accepted = db.Column(db.BigInteger, nullable=False, default=0)
    duplicates = db.Column(db.BigInteger, nullable=False, default=0)
    rejected = db.Column(db.BigInteger, nullable=False, default=0)
    stop_listed = db.Column(db.BigInteger, nullable=False, default=0)
    error = db.Column(db.String(500))
    job_id = db.Column(db.String(64))
    sha256 = db.Column(db.String(64))  # of the uploaded file, computed by the ingest (approval fingerprint)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime)

    campaign = db.relationship("Campaign")


class StopListEntry(Model):
    __tablename__ = "stop_list"
    __table_args__ = (db.UniqueConstraint("workspace_id", "number", name="uq_stop_list_workspace_number"),)

    id = db.Column(BigId, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)
    number = db.Column(db.String(15), nullable=False)
    ctn_hash = db.Column(db.String(64), nullable=False)
    reason = db.Column(db.String(200), nullable=False, default="")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
