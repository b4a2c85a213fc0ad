"""Schemas of the super admins' installation endpoints (workspace quotas)."""
from blueprints.api.schemas import DB_BIGINT_MAX, Body, Out, StrictInteger, fields, validate

_QUOTA = {"validate": validate.Range(min=0, max=DB_BIGINT_MAX), "required": True, "allow_none": True}


class QuotaBody(Body):
    """Both quotas; null = no quota"""

    daily_messages = StrictInteger(**_QUOTA, metadata={
        "code": "invalid_quota", "description": "messages per day in the workspace time zone, all campaigns"})
    max_recipients_per_campaign = StrictInteger(**_QUOTA, metadata={
        "code": "invalid_quota", "description": "recipients one campaign may hold"})


class Quota(Out):
    """A workspace's quotas and today's use"""

    workspace = fields.String(required=True, metadata={"description": "the workspace's slug"})
    daily_messages = fields.Integer(allow_none=True)
    max_recipients_per_campaign = fields.Integer(allow_none=True)
    used_today = fields.Integer(required=True)
    left_today = fields.Integer(allow_none=True)
