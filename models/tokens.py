"""Personal access tokens for the JSON API: one user, one workspace, stored hashed, with a lifetime.

A token is live while it is not revoked and `expires_at` lies ahead. `revoked_reason` says why it
died (revoked by its owner or an admin, password change, sign out everywhere, removal from the
workspace, role change) for the tokens page; the audit log has who and when."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class ApiToken(Model):
    __tablename__ = "api_tokens"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    name = db.Column(db.String(80), nullable=False)
    prefix = db.Column(db.String(16), nullable=False)  # shown in lists so users can tell tokens apart
    token_hash = db.Column(db.String(64), nullable=False, unique=True)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = db.Column(UTCDateTime, nullable=False)
    last_used_at = db.Column(UTCDateTime)
    revoked_at = db.Column(UTCDateTime)
    revoked_reason = db.Column(db.String(40))

    user = db.relationship("User")
    workspace = db.relationship("Workspace")
