"""Queued exports of a campaign's delivery records (CSV/TXT files removed after expiry)."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class Export(Model):
    __tablename__ = "exports"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    format = db.Column(db.String(4), nullable=False)  # csv | txt
    state = db.Column(db.String(10), nullable=False, default="queued")  # queued|running|done|failed|expired
    unmasked = db.Column(db.Boolean, nullable=False, default=False)
    rows = db.Column(db.BigInteger, nullable=False, default=0)
    path = db.Column(db.String(500))
    error = db.Column(db.String(300))
    job_id = db.Column(db.String(64))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime)
    expires_at = db.Column(UTCDateTime, nullable=False, index=True)

    campaign = db.relationship("Campaign")
    created_by = db.relationship("User")
