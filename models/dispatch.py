"""Dispatch bookkeeping: claimed batches with their idempotency key, per-hour and per-day counters,
small persisted cursors (e.g. the Core's delivery-report cursor), each campaign's back-off and
breaker state, and delivery reports kept until their message is recorded as sent."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class DispatchBatch(Model):
    __tablename__ = "dispatch_batches"

    id = db.Column(db.Integer, primary_key=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    # Sent with every (re)submission of this batch: the Core answers a replay with the first result.
    idempotency_key = db.Column(db.String(64), nullable=False, unique=True)
    state = db.Column(db.String(10), nullable=False, default="claimed")  # claimed | submitted | refused
    size = db.Column(db.Integer, nullable=False)
    attempts = db.Column(db.Integer, nullable=False, default=0)
    last_error = db.Column(db.String(300))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    next_attempt_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    submitted_at = db.Column(UTCDateTime)


class HourlyStat(Model):
    """Messages per campaign and UTC hour — the dashboard's 24-hour chart reads these."""

    __tablename__ = "hourly_stats"
    __table_args__ = (db.Index("ix_hourly_stats_workspace_hour", "workspace_id", "hour"),)

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    hour = db.Column(UTCDateTime, primary_key=True)
    workspace_id = db.Column(db.Integer, nullable=False)
    sent = db.Column(db.BigInteger, nullable=False, default=0)
    delivered = db.Column(db.BigInteger, nullable=False, default=0)
    failed = db.Column(db.BigInteger, nullable=False, default=0)


class DailySent(Model):
    """Messages submitted per campaign and day in the workspace time zone (daily limits)."""

    __tablename__ = "daily_sent"
    __table_args__ = (db.Index("ix_daily_sent_day", "day"),)  # a workspace's quota sums one day

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    day = db.Column(db.Date, primary_key=True)
    sent = db.Column(db.BigInteger, nullable=False, default=0)


class SystemState(Model):
    __tablename__ = "system_state"

    key = db.Column(db.String(64), primary_key=True)
    value = db.Column(db.Text, nullable=False, default="")
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class DispatchState(Model):
    """One campaign's dispatch health, shared by every worker: exponential back-off after transient
    trouble, batch-level refusals in a row, and the run of permanent rejections (circuit breaker)."""

    __tablename__ = "dispatch_states"

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    backoff_step = db.Column(db.Integer, nullable=False, default=0)
    backoff_until = db.Column(UTCDateTime)          # no new claims before this
    trouble_since = db.Column(UTCDateTime)          # first transient trouble with nothing accepted since
    trouble_code = db.Column(db.String(40))         # core_down | http_429 | http_503 | 0x00000058 | …
    trouble = db.Column(db.String(300))             # the last trouble in words
    refusals = db.Column(db.Integer, nullable=False, default=0)  # batch-level 4xx in a row
    rejection_streak = db.Column(db.Integer, nullable=False, default=0)  # permanent rejections in a row
    rejection_code = db.Column(db.String(20))       # their code while it is the same one, else "mixed"
    paused_at = db.Column(UTCDateTime)              # when the system paused the campaign
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class PendingReport(Model):
    """A final delivery report read from the Core's events feed, kept until it is applied to its
    recipient (which may still be `claimed`: the submit answer not recorded yet, or replayed)."""

    __tablename__ = "pending_reports"

    recipient_id = db.Column(db.BigInteger().with_variant(db.Integer, "sqlite"), primary_key=True)
    core_id = db.Column(db.String(64))
    status = db.Column(db.String(10), nullable=False)
    error_code = db.Column(db.String(10))
    done_at = db.Column(UTCDateTime, nullable=False)
    received_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
