"""Schemas of the export endpoints."""
from blueprints.api.schemas import Body, Out, fields, validate
from models.states import ExportState, values
from services.exports import FORMATS


class ExportCreate(Body):
    format = fields.String(required=True, validate=validate.OneOf(FORMATS),
                           metadata={"code": "bad_format", "description": "csv, or tab-separated txt"})


class Export(Out):
    """An export: its state, rows written and download_url once it is done"""

    id = fields.Integer(required=True)
    campaign_id = fields.Integer(required=True)
    format = fields.String(required=True, metadata={"enum": list(FORMATS)})
    state = fields.String(required=True, metadata={"enum": list(values(ExportState))})
    rows = fields.Integer(allow_none=True)
    unmasked = fields.Boolean(required=True, metadata={"description": "The file holds full numbers"})
    error = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    expires_at = fields.String(allow_none=True)
    progress = fields.Raw(allow_none=True, metadata={"description": "The running job's progress, when known"})
    status_url = fields.String(required=True)
    download_url = fields.String(allow_none=True)
