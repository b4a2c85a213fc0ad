"""Schemas of the sender-name registry API."""
from marshmallow import fields as ma_fields

from blueprints.api.schemas import Body, Out, Query, StrictBoolean, StrictInteger, Text, fields, validate
from models.states import RevisionState, values
from services import smpp
from services.senders import COMMENT_MAX, LABEL_MAX


class Saddr(ma_fields.String):
    """A SADDR: a JSON string, or a JSON number for a numeric SADDR sent unquoted (kept as its digits)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


_SADDR = {"code": "invalid_saddr", "type": ["string", "integer"],
          "description": "Alphanumeric up to 11 GSM characters, or up to 15 digits (a number is taken as its digits)"}


class RevisionCreate(Body):
    saddr = Saddr(required=True, validate=validate.Length(max=15), metadata=_SADDR)
    ston = StrictInteger(allow_none=True, metadata={"code": "invalid_ton", "enum": list(smpp.TON_VALUES),
                                                    "description": "Source TON; default 5 (alphanumeric) or 1 "
                                                                   "(numeric)"})
    snpi = StrictInteger(allow_none=True, metadata={"code": "invalid_npi", "enum": list(smpp.NPI_VALUES),
                                                    "description": "Source NPI; default 0 (alphanumeric) or 1 "
                                                                   "(numeric)"})
    comment = Text(COMMENT_MAX, allow_none=True, metadata={"code": "invalid_comment",
                                                           "description": "For the moderator"})
    draft = StrictBoolean(metadata={"description": "Save as a draft instead of submitting (default false)"})


class SenderCreate(RevisionCreate):
    name = Text(LABEL_MAX, required=True, metadata={"code": "invalid_name", "description": "The label"})


class SenderListQuery(Query):
    archived = fields.Boolean(metadata={"description": "true: list the archived names instead"})


class Revision(Out):
    """A revision of a sender name"""

    id = fields.Integer(required=True)
    sender_id = fields.Integer(required=True)
    number = fields.Integer(required=True)
    saddr = fields.String(required=True)
    ston = fields.Integer(allow_none=True)
    snpi = fields.Integer(allow_none=True)
    comment = fields.String(allow_none=True)
    state = fields.String(required=True, metadata={"enum": list(values(RevisionState))})
    note = fields.String(allow_none=True, metadata={"description": "The moderator's note"})
    created_by = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    submitted_at = fields.String(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)


class SenderName(Out):
    """A sender name: current_revision (highest-numbered approved), open_revision (draft or pending)"""

    id = fields.Integer(required=True)
    workspace_id = fields.Integer(required=True)
    name = fields.String(required=True)
    archived = fields.Boolean(required=True)
    archived_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    current_revision = fields.Nested(Revision, allow_none=True)
    open_revision = fields.Nested(Revision, allow_none=True)
    revisions = fields.List(fields.Nested(Revision))


class SenderNameList(Out):
    """Sender names of the token's workspace with their revisions"""

    sender_names = fields.List(fields.Nested(SenderName), required=True)
