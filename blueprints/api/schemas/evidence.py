"""Schemas of the evidence pack endpoints."""
from blueprints.api.schemas import Body, Out, fields
from services.evidence import STATES


class EvidenceCreate(Body):
    """No fields: the pack holds everything about the campaign (an empty body or {})."""


class EvidencePack(Out):
    """An evidence pack: its state, and download_url and the ZIP's sha256 once it is done"""

    id = fields.Integer(required=True)
    campaign_id = fields.Integer(required=True)
    state = fields.String(required=True, metadata={"enum": list(STATES)})
    sha256 = fields.String(allow_none=True, metadata={"description": "SHA-256 of the ZIP file, once done"})
    size = fields.Integer(allow_none=True, metadata={"description": "Bytes of the ZIP file, once done"})
    recipients = fields.Integer(allow_none=True, metadata={"description": "Recipients written so far"})
    unmasked = fields.Boolean(required=True, metadata={"description": "The pack holds full numbers"})
    error = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True)
    status_url = fields.String(required=True)
    download_url = fields.String(allow_none=True)
