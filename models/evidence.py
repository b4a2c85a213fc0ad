"""Evidence packs: a ZIP of everything about one campaign (services/evidence.py), built by a queued job
and removed after EXPORT_TTL_HOURS like exports; the row stays as `expired`."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class EvidencePack(Model):
    __tablename__ = "evidence_packs"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False, index=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    state = db.Column(db.String(10), nullable=False, default="queued")  # queued|running|done|failed|expired
    unmasked = db.Column(db.Boolean, nullable=False, default=False)
    recipients = db.Column(db.BigInteger, nullable=False, default=0)
    path = db.Column(db.String(500))
    sha256 = db.Column(db.String(64))
    size = db.Column(db.BigInteger)
    error = db.Column(db.String(300))
    job_id = db.Column(db.String(64))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime)
    expires_at = db.Column(UTCDateTime, nullable=False, index=True)

    campaign = db.relationship("Campaign")
    created_by = db.relationship("User")
