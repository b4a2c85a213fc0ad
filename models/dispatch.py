"""Dispatch bookkeeping: claimed batches with their idempotency key, per-hour and per-day counters,
and small persisted cursors (e.g. the Core's delivery-report cursor)."""
from extensions import db
from models.base import UTCDateTime, utcnow


class DispatchBatch(db.Model):
    __tablename__ = "dispatch_batches"

    id = db.Column(db.Integer, primary_key=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    # Sent with every (re)submission of this batch: the Core answers a replay with the first result.
    idempotency_key = db.Column(db.String(64), nullable=False, unique=True)
    state = db.Column(db.String(10), nullable=False, default="claimed")  # claimed | submitted
    size = db.Column(db.Integer, nullable=False)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.String(300))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    next_attempt_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    submitted_at = db.Column(UTCDateTime)


class HourlyStat(db.Model):
    """Messages per campaign and UTC hour — the dashboard's 24-hour chart reads these."""

    __tablename__ = "hourly_stats"
    __table_args__ = (db.Index("ix_hourly_stats_workspace_hour", "workspace_id", "hour"),)

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    hour = db.Column(UTCDateTime, primary_key=True)
    workspace_id = db.Column(db.Integer, nullable=False)
    sent = db.Column(db.BigInteger, nullable=False, default=0)
    delivered = db.Column(db.BigInteger, nullable=False, default=0)
    failed = db.Column(db.BigInteger, nullable=False, default=0)


class DailySent(db.Model):
    """Messages submitted per campaign and day in the workspace time zone (daily limits)."""

    __tablename__ = "daily_sent"

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    day = db.Column(db.Date, primary_key=True)
    sent = db.Column(db.BigInteger, nullable=False, default=0)


class SystemState(db.Model):
    __tablename__ = "system_state"

    key = db.Column(db.String(64), primary_key=True)
    value = db.Column(db.Text, nullable=False, default="")
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
