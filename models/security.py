"""Second factor, sign-in sessions and GDPR mode: the tables behind services/totp.py,
services/sessions.py and services/gdpr.py."""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class UserTotp(Model):
    """A user's TOTP secret. `confirmed_at` is set once a code from the authenticator was accepted;
    until then the secret is only an enrolment in progress and sign-in does not ask for it."""
    __tablename__ = "user_totp"

    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    secret = db.Column(db.String(64), nullable=False)
    confirmed_at = db.Column(UTCDateTime)
    # The last accepted 30-second step: a code is accepted once (no replay inside its window).
    last_step = db.Column(db.BigInteger, nullable=False, default=0)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class RecoveryCode(Model):
    """One single-use recovery code (60 random bits), stored as a salted argon2id hash."""
    __tablename__ = "recovery_codes"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    code_digest = db.Column(db.String(255), nullable=False)  # argon2id encoded hash
    used_at = db.Column(UTCDateTime)
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class UserSession(Model):
    """One signed-in browser. The cookie carries a random session id; only its digest is stored."""
    __tablename__ = "user_sessions"

    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    sid_digest = db.Column(db.String(64), nullable=False, unique=True)
    epoch = db.Column(db.Integer, nullable=False, default=0)  # User.session_epoch when it started
    user_agent = db.Column(db.String(300), nullable=False, default="")
    ip = db.Column(db.String(64), nullable=False, default="")
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    last_seen_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    revoked_at = db.Column(UTCDateTime)


class WorkspaceGdpr(Model):
    """GDPR mode of a workspace: once enabled it cannot be turned off (anonymisation is irreversible)."""
    __tablename__ = "workspace_gdpr"

    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    retention_days = db.Column(db.Integer, nullable=False)
    enabled_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    enabled_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))


class AnonymisedCampaign(Model):
    """A finished campaign whose recipient numbers were replaced by hash and masked tail."""
    __tablename__ = "anonymised_campaigns"

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False,
                             index=True)
    recipients = db.Column(db.BigInteger, nullable=False, default=0)
    anonymised_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
