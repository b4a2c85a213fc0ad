"""Mail kept for admins to read when no SMTP server is configured (air-gapped demo installs)."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class OutboxMail(Model):
    __tablename__ = "outbox_mails"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    recipient = db.Column(db.String(254), nullable=False)
    subject = db.Column(db.String(200), nullable=False)
    body = db.Column(db.Text, nullable=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
