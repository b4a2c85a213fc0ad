"""Schemas of the API basics: who am I, and the audit feed for SIEMs."""
from blueprints.api.schemas import SHORT_TEXT, Out, Query, Text, fields, validate


class MeWorkspace(Out):
    id = fields.Integer(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)


class Me(Out):
    """The token's owner, workspace and role"""

    id = fields.Integer(required=True)
    email = fields.String(required=True)
    name = fields.String(allow_none=True)
    is_superadmin = fields.Boolean(required=True)
    workspace = fields.Nested(MeWorkspace, required=True)
    role = fields.String(allow_none=True, metadata={"enum": ["author", "moderator", "admin", None]})
    is_moderator = fields.Boolean(required=True)
    can_view_numbers = fields.Boolean(required=True)


class AuditQuery(Query):
    actor = Text(SHORT_TEXT, metadata={"description": "e-mail substring"})
    action = Text(SHORT_TEXT, metadata={"description": "action prefix, e.g. members."})
    object_type = Text(SHORT_TEXT, metadata={"description": "e.g. membership"})
    object_id = Text(SHORT_TEXT, metadata={"description": "object id"})
    since = Text(40, metadata={"code": "invalid_date", "description": "YYYY-MM-DD or ISO-8601"})
    until = Text(40, metadata={"code": "invalid_date", "description": "YYYY-MM-DD or ISO-8601"})
    cursor = Text(SHORT_TEXT, metadata={"code": "invalid_cursor", "description": "next_cursor of the previous page"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500),
                           metadata={"code": "invalid_limit", "description": "1-500, default 100"})


def _stored(type_, description=None):
    """A value of a stored audit event, passed on as stored: events written by older code (or another
    version's) are still answered, never a 500 because one does not fit today's type."""
    return fields.Raw(allow_none=True, metadata={"type": type_,  # apispec adds "null"
                                                 **({"description": description} if description else {})})


class AuditEvent(Out):
    id = fields.String(required=True, metadata={"description": "The event's UUID"})
    ts = fields.String(required=True, metadata={"description": "UTC, milliseconds, e.g. 2026-01-01T00:00:00.000Z"})
    actor_id = _stored("integer")
    actor_email = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    workspace_id = _stored("integer")
    action = fields.String(required=True)
    object_type = fields.String(allow_none=True)
    object_id = fields.String(allow_none=True)
    before = _stored("object", "Key fields before the action")
    after = _stored("object", "Key fields after the action")
    note = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)


class AuditPage(Out):
    """Audit events, newest first, and the cursor of the next page (null on the last)"""

    events = fields.List(fields.Nested(AuditEvent), required=True)
    next_cursor = fields.String(allow_none=True)
