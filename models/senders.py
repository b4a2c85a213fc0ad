"""Sender names and their immutable revisions (the SADDR a recipient sees).

A SADDR change never edits a row: it adds a revision in `pending`. An approved revision's
SADDR/TON/NPI never change (the service refuses; on PostgreSQL a trigger refuses as well).
"""
from sqlalchemy.orm import Mapped, relationship

from extensions import db
from models.base import Model, UTCDateTime, utcnow
from models.states import RevisionState, check_in

REVISION_STATES = ("draft", "pending", "approved", "rejected", "archived")


class SenderName(Model):
    __tablename__ = "sender_names"

    id = db.Column(db.Integer, primary_key=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    label = db.Column(db.String(80), nullable=False)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    archived_at = db.Column(UTCDateTime)

    revisions = db.relationship("SenderRevision", back_populates="sender", order_by="SenderRevision.number",
                                lazy="selectin")
    created_by = db.relationship("User")


class SenderRevision(Model):
    __tablename__ = "sender_revisions"
    __table_args__ = (
        db.UniqueConstraint("sender_id", "number", name="uq_sender_revisions_sender_number"),
        db.CheckConstraint(check_in("state", RevisionState), name="state_known"),
        db.CheckConstraint("ton BETWEEN 0 AND 6", name="ton_range"),
        db.CheckConstraint("npi IN (0, 1, 3, 4, 6, 8, 9, 10, 14, 18)", name="npi_known"),
    )

    id = db.Column(db.Integer, primary_key=True)
    sender_id = db.Column(db.Integer, db.ForeignKey("sender_names.id", ondelete="CASCADE"), nullable=False, index=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True)
    number = db.Column(db.Integer, nullable=False)
    saddr = db.Column(db.String(15), nullable=False)
    ton = db.Column(db.SmallInteger, nullable=False)
    npi = db.Column(db.SmallInteger, nullable=False)
    comment = db.Column(db.String(500), nullable=False, default="")
    state = db.Column(db.String(12), nullable=False, default="pending", index=True)
    created_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    created_at = db.Column(UTCDateTime, nullable=False, default=utcnow)
    submitted_at = db.Column(UTCDateTime)
    submitted_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))  # four-eyes
    decided_by_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="SET NULL"))
    decided_at = db.Column(UTCDateTime)
    decision_note = db.Column(db.String(500))

    sender: Mapped[SenderName] = relationship("SenderName", back_populates="revisions")
    created_by = db.relationship("User", foreign_keys=[created_by_id])
    decided_by = db.relationship("User", foreign_keys=[decided_by_id])
