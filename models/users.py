"""Accounts: one row per person, independent of workspaces (memberships link the two)."""
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, relationship

from extensions import db
from models.base import Model, UTCDateTime, utcnow
from models.workspaces import Membership


class User(UserMixin, Model):
    __tablename__ = "users"

    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(254), nullable=False, unique=True)
    name = db.Column(db.String(120), nullable=False, default="")
    password_hash = db.Column(db.String(255), nullable=False)
    is_superadmin = db.Column(db.Boolean, nullable=False, default=False)
    is_active_account = db.Column(db.Boolean, nullable=False, default=True)
    failed_logins = db.Column(db.Integer, nullable=False, default=0)
    locked_until = db.Column(UTCDateTime)
    last_login_at = db.Column(UTCDateTime)
    # Bumped on password change so other sessions of this user end (checked by the user loader).
    session_epoch = db.Column(db.Integer, nullable=False, default=0)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    # Loaded on first use (the signed-in user's, once per request), not with every User row loaded
    # as an author, a moderator or an export's creator.
    memberships: Mapped[list[Membership]] = relationship("Membership", back_populates="user",
                                                         cascade="all, delete-orphan")

    @property
    def is_active(self):
        return self.is_active_account

    def get_id(self):
        return f"{self.id}:{self.session_epoch}"

    def membership_in(self, workspace_id: int) -> Membership | None:
        return next((m for m in self.memberships if m.workspace_id == workspace_id), None)

    def __repr__(self):
        return f"<User {self.email}>"
