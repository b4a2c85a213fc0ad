"""Schemas of the moderation API: the queue and the decisions."""
from blueprints.api.schemas import Body, Out, Query, Text, fields, validate
from blueprints.api.schemas.campaigns import Estimate
from services.moderation import KINDS

NOTE_MAX = 500


class ModerationQuery(Query):
    kind = fields.String(validate=validate.OneOf(tuple(KINDS)),
                         metadata={"code": "invalid_kind", "description": "only this kind (default: both)"})


class RejectBody(Body):
    note = Text(NOTE_MAX, required=True, metadata={"code": "note_required", "description": "Why, for the author"})


class ModerationEstimate(Estimate):
    """The pre-flight estimate the moderator decides on; times in UTC"""

    words = fields.String(required=True, metadata={"description": "duration and finish in words (workspace time zone)"})


class ModerationItem(Out):
    """A campaign or a sender revision waiting for (or given) a decision; `kind` says which. Campaigns
    carry name, mode, status, moderation, saddr_overridden, recipients_count, message_preview; sender
    revisions carry sender_name, number, ston, snpi, comment, state, current_saddr"""

    kind = fields.String(required=True, metadata={"enum": list(KINDS)})
    id = fields.Integer(required=True)
    workspace_id = fields.Integer()
    author = fields.String(allow_none=True)
    saddr = fields.String(allow_none=True)
    submitted_at = fields.String(allow_none=True)
    # campaigns
    name = fields.String()
    mode = fields.String()
    status = fields.String()
    moderation = fields.String()
    saddr_overridden = fields.Boolean()
    revision_saddr = fields.String(allow_none=True, metadata={"description": "the approved revision's SADDR"})
    revision_number = fields.Integer(allow_none=True)
    smpp = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                       metadata={"description": "the effective SADDR/STON/SNPI/DTON/DNPI that will be sent"})
    smpp_overridden = fields.List(fields.String(), metadata={"description": "fields overriding the revision"})
    sender_revision_id = fields.Integer(allow_none=True)
    recipients_count = fields.Integer()
    message_preview = fields.String()
    encoding = fields.String(metadata={"description": "GSM-7 or UCS-2"})
    segments = fields.Integer(metadata={"description": "message parts"})
    characters = fields.Integer()
    schedule = fields.String(metadata={"description": "when it would send, in words (workspace time zone)"})
    auto_start = fields.Boolean()
    start_at = fields.String(allow_none=True)
    window_start = fields.String(allow_none=True)
    window_end = fields.String(allow_none=True)
    sending_window = fields.String(allow_none=True)
    ignore_daily_window = fields.Boolean()
    daily_limit = fields.Integer(allow_none=True)
    estimate = fields.Nested(ModerationEstimate, metadata={"description": "campaigns: parts billed, duration, finish"})
    submission = fields.String(allow_none=True, metadata={
        "description": "which submission this is (a resubmission after a rejection is another)"})
    # sender revisions
    sender_id = fields.Integer()
    sender_name = fields.String()
    number = fields.Integer()
    ston = fields.Integer(allow_none=True)
    snpi = fields.Integer(allow_none=True)
    comment = fields.String(allow_none=True)
    state = fields.String()
    current_saddr = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)


class ModerationQueue(Out):
    """Items waiting for a moderator, oldest first, with the count per kind"""

    counts = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    items = fields.List(fields.Nested(ModerationItem), required=True)
