"""Sealed audit checkpoints and their verifications, kept in the main database (not in the audit store),
so that altering one of the two stores alone is detectable (services/audit_seals.py).

A seal covers the audit events that arrived in (`lower_ms`, `upper_ms`] (arrival time in ms since the
epoch, stamped by the audit store on insert); `position` numbers the chain (unique: two sealers cannot
fork it). `leaves` holds one line per event in arrival order — "<_id> <arrived_ms> <ts_ms> <workspace>
<sha256>" — so verification can name the first event that is missing, altered or inserted.
"""
from extensions import db
from models.base import Model, UTCDateTime, utcnow


class AuditSeal(Model):
    __tablename__ = "audit_seals"

    id = db.Column(db.Integer, primary_key=True)
    position = db.Column(db.Integer, nullable=False, unique=True)
    lower_ms = db.Column(db.BigInteger)               # exclusive; NULL: from the first event ever stored
    upper_ms = db.Column(db.BigInteger, nullable=False, index=True)  # inclusive
    events = db.Column(db.Integer, nullable=False, default=0)
    first_event_id = db.Column(db.String(64))
    last_event_id = db.Column(db.String(64))
    prev_root = db.Column(db.String(64), nullable=False)
    root = db.Column(db.String(64), nullable=False)
    mac = db.Column(db.String(64), nullable=False)     # HMAC-SHA256 of the seal (AUDIT_SEAL_KEY)
    leaves = db.Column(db.Text, nullable=False, default="")
    sealed_at = db.Column(UTCDateTime, nullable=False, default=utcnow)


class AuditVerification(Model):
    """One run of `flask audit verify` or of the nightly verification: what it checked and found."""

    __tablename__ = "audit_verifications"

    id = db.Column(db.Integer, primary_key=True)
    started_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    finished_at = db.Column(UTCDateTime)
    outcome = db.Column(db.String(12), nullable=False)  # verified | failed | unavailable
    seals = db.Column(db.Integer, nullable=False, default=0)
    events = db.Column(db.Integer, nullable=False, default=0)
    first_bad_event = db.Column(db.String(64))
    message = db.Column(db.String(500))
    since = db.Column(UTCDateTime)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="SET NULL"))
    source = db.Column(db.String(10), nullable=False, default="cli")  # cli | nightly
