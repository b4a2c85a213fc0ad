"""System settings changed at run time by a super admin (services/settings.py owns the rules)."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class SystemSetting(Model):
    __tablename__ = "system_settings"

    key = db.Column(db.String(64), primary_key=True)
    value = db.Column(db.String(200), nullable=False)
    updated_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_by = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
