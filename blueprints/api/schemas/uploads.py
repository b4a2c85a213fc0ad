"""Schemas of the recipient upload endpoints: the upload's status and the recipients list."""
from blueprints.api.schemas import DB_BIGINT_MAX, Out, Query, Text, fields, validate
from models.states import UploadState, values

UPLOAD_STATES = list(values(UploadState))


class UploadAccepted(Out):
    """Stored; the ingest job is queued"""

    id = fields.Integer(required=True)
    state = fields.String(required=True, metadata={"enum": UPLOAD_STATES})
    bytes = fields.Integer(required=True)
    status_url = fields.String(required=True)


class UploadStatusQuery(Query):
    errors = fields.Integer(load_default=20, validate=validate.Range(min=0, max=1000),
                            metadata={"code": "invalid_errors", "description": "how many job errors to include "
                                                                               "(default 20)"})


class JobErrorOut(Out):
    line = fields.Integer(allow_none=True)
    reason = fields.String(required=True)
    text = fields.String(allow_none=True)


class UploadStatus(Out):
    """Progress and result of an upload, with its first job errors"""

    id = fields.Integer(required=True)
    campaign_id = fields.Integer(required=True)
    state = fields.String(required=True, metadata={"enum": UPLOAD_STATES})
    source = fields.String(allow_none=True)
    file = fields.String(allow_none=True)
    bytes = fields.Integer(required=True)
    bytes_done = fields.Integer(allow_none=True)
    lines = fields.Integer(allow_none=True)
    accepted = fields.Integer(allow_none=True)
    duplicates = fields.Integer(allow_none=True)
    rejected = fields.Integer(allow_none=True)
    stop_listed = fields.Integer(allow_none=True)
    percent = fields.Integer(required=True)
    error = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(JobErrorOut), required=True)


SEARCH_MAX = 10_000


class RecipientQuery(Query):
    after = fields.Integer(validate=validate.Range(min=1, max=DB_BIGINT_MAX),
                           metadata={"code": "invalid_cursor", "description": "next_cursor of the previous page"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500),
                           metadata={"code": "invalid_cursor", "description": "1-500, default 100"})
    # Longer than other search boxes on purpose: the search rule (services.numbers.parse_search) must give
    # its one refusal to every guess a member without the right sends, however long, so no length leaks.
    q = Text(SEARCH_MAX, metadata={"description": "a ctn_hash prefix (≥ 6 hex characters); a full phone number "
                                                  "only for tokens whose owner may view full numbers "
                                                  "(else 400 hash_search_only)"})


class RecipientOut(Out):
    id = fields.Integer(required=True)
    number = fields.String(required=True, metadata={"description": "Masked unless the token's owner may view "
                                                                    "full numbers"})
    masked = fields.Boolean(required=True)
    ctn_hash = fields.String(required=True)
    state = fields.String(required=True)
    spread_day = fields.String(allow_none=True)
    smpp_status = fields.String(allow_none=True)


class RecipientPage(Out):
    """The campaign's recipients, keyset-paginated"""

    recipients = fields.List(fields.Nested(RecipientOut), required=True)
    next_cursor = fields.Integer(allow_none=True)
    total = fields.Integer(required=True)
    masked = fields.Boolean(required=True)
