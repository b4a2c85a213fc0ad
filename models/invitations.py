"""Invitations (admin-initiated) and join requests (user-initiated) into a workspace."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class Invitation(Model):
    __tablename__ = "invitations"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    email = db.Column(db.String(254), nullable=False)
    role = db.Column(db.String(20), nullable=False)
    # SHA-256 of the single-use link token; the token itself exists only in the mail.
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    state = db.Column(db.String(20), nullable=False, default="pending")  # pending|accepted|revoked
    invited_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)
    decided_at = db.Column(UTCDateTime)

    workspace = db.relationship("Workspace")
    invited_by = db.relationship("User")

    def effective_state(self, now):
        if self.state == "pending" and self.expires_at <= now:
            return "expired"
        return self.state


class JoinRequest(Model):
    __tablename__ = "join_requests"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    message = db.Column(db.String(500), nullable=False, default="")
    state = db.Column(db.String(20), nullable=False, default="pending")  # pending|approved|rejected
    role = db.Column(db.String(20))
    note = db.Column(db.String(500))
    decided_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at = db.Column(UTCDateTime)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    workspace = db.relationship("Workspace")
    user = db.relationship("User", foreign_keys=[user_id])
    decided_by = db.relationship("User", foreign_keys=[decided_by_id])
