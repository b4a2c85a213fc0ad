"""Who shaped a campaign: one row per person, with the first thing they did to it.

The four-eyes rule (services/moderation_rules.py) refuses a decision by anyone listed here, not
only by the author. Rows are written by services/contributors.py in the same transaction as the
action that shaped the campaign.
"""
from extensions import db
from models.base import Model, UTCDateTime, utcnow

CONTRIBUTIONS = ("created", "edited", "uploaded", "submitted", "restored", "owner", "cloned_from")


class CampaignContributor(Model):
    __tablename__ = "campaign_contributors"
    __table_args__ = (
        db.CheckConstraint("action IN ('created', 'edited', 'uploaded', 'submitted', 'restored', 'owner', "
                           "'cloned_from')", name="action_known"),
    )

    campaign_id = db.Column(db.Integer, db.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    user_id = db.Column(db.Integer, db.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    workspace_id = db.Column(db.Integer, db.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False)
    role = db.Column(db.String(30), nullable=False)     # the role they acted with (admin, author, superadmin…)
    action = db.Column(db.String(20), nullable=False)   # their first contribution (CONTRIBUTIONS)
    at = db.Column(UTCDateTime, nullable=False, default=utcnow)

    user = db.relationship("User")
