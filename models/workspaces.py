"""Workspaces (tenants) and memberships (a user's role in one workspace)."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow

ROLES = ("author", "moderator", "admin")
MASTER_SLUG = "master"


class Workspace(Model):
    __tablename__ = "workspaces"

    id = db.Column(db.Integer, primary_key=True)
    slug = db.Column(db.String(40), nullable=False, unique=True)
    name = db.Column(db.String(120), nullable=False)
    timezone = db.Column(db.String(64), nullable=False, default="UTC")
    # Daily sending window in the workspace time zone; 00:00-24:00 means no quiet hours.
    window_start = db.Column(db.String(5), nullable=False, default="00:00")
    window_end = db.Column(db.String(5), nullable=False, default="24:00")
    four_eyes = db.Column(db.Boolean, nullable=False, default=True)
    is_master = db.Column(db.Boolean, nullable=False, default=False)
    # Quotas set by super admins (services/quotas.py); NULL means none.
    quota_daily_messages = db.Column(db.BigInteger, nullable=True)  # per day, workspace time zone
    quota_max_recipients = db.Column(db.BigInteger, nullable=True)  # per campaign
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    # Loaded on demand: a workspace is loaded on every request and may have thousands of members.
    memberships = db.relationship("Membership", back_populates="workspace", cascade="all, delete-orphan")

    @property
    def sending_window(self):
        return f"{self.window_start}-{self.window_end}"

    def __repr__(self):
        return f"<Workspace {self.slug}>"


class Membership(Model):
    __tablename__ = "memberships"
    __table_args__ = (
        db.UniqueConstraint("workspace_id", "user_id", name="uq_memberships_workspace_user"),
        db.CheckConstraint("role IN ('author', 'moderator', 'admin')", name="role_known"),
    )

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    role = db.Column(db.String(20), nullable=False, default="author")
    is_moderator = db.Column(db.Boolean, nullable=False, default=False)
    can_view_numbers = db.Column(db.Boolean, nullable=False, default=False)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    workspace = db.relationship("Workspace", back_populates="memberships")
    user = db.relationship("User", back_populates="memberships")

    def snapshot(self):
        return {"role": self.role, "is_moderator": self.is_moderator, "can_view_numbers": self.can_view_numbers}
