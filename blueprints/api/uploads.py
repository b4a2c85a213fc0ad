"""API uploads: the raw-body recipient upload (up to 1 GB), its status, and the recipients list.

`PUT /api/v1/campaigns/<id>/recipients` streams the body in fixed chunks to the spool (the
whole body is never held in memory); the route raises `request.max_content_length` for itself before touching the
body and answers 413 `too_large` above the limit.
"""
from urllib.parse import unquote

from flask import g, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from services import campaigns, permissions, recipients
from services.errors import DomainError, Forbidden


def _too_large(limit):
    return api_error(413, "too_large", f"The body is larger than {recipients.human_size(limit)}, "
                                       "the limit for recipient uploads.")


@bp.put("/campaigns/<int:campaign_id>/recipients")
@api_route("recipients.upload")
def put_recipients(campaign_id):
    limit = recipients.api_limit()
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit)
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return api_error(415, "unsupported_media_type", "Send the file itself as the request body "
                                                         "(Content-Type: text/csv, text/plain or application/octet-stream).")
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    if not campaigns.is_owner_or_manager(campaign, g.membership, g.api_user):
        raise Forbidden("Only the campaign's author or a workspace admin can upload recipients.")
    recipients.ensure_may_upload(campaign)
    name = recipients.check_filename(unquote(request.headers.get("X-Filename", "")))
    try:
        path, size = recipients.spool_stream(request.stream, limit)
    except (RequestEntityTooLarge, recipients.UploadTooLarge):
        return _too_large(limit)
    upload = recipients.start_upload(campaign, spool_path=path, size=size, source="api", original_name=name,
                                     user=g.api_user)
    recipients.enqueue_ingest(upload)
    status_url = url_for("api.get_upload", upload_id=upload.id)
    response = jsonify({"id": upload.id, "state": upload.state, "bytes": size, "status_url": status_url})
    response.headers["Location"] = status_url
    return response, 202


@bp.get("/uploads/<int:upload_id>")
@api_route("campaigns.view")
def get_upload(upload_id):
    upload = recipients.get_upload(g.workspace, upload_id, g.membership, g.api_user)
    try:
        errors = max(0, min(int(request.args.get("errors", 20)), 1000))
    except ValueError:
        return api_error(400, "invalid_errors", "errors must be a whole number between 0 and 1000.")
    may_view_full = permissions.allowed("numbers.view_full", g.membership, superadmin=g.api_user.is_superadmin)
    return jsonify(recipients.upload_status(upload, errors_limit=errors, may_view_full=may_view_full))


@bp.get("/campaigns/<int:campaign_id>/recipients")
@api_route("campaigns.view")
def list_recipients(campaign_id):
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    try:
        limit = int(request.args.get("limit", 100))
        after = int(request.args["after"]) if request.args.get("after") else None
    except ValueError:
        return api_error(400, "invalid_cursor", "after and limit must be whole numbers.")
    may_view_full = permissions.allowed("numbers.view_full", g.membership, superadmin=g.api_user.is_superadmin)
    page = recipients.list_recipients(campaign, after_id=after, limit=limit, may_view_full=may_view_full,
                                      search=request.args.get("q"))
    return jsonify({"recipients": [recipients.recipient_json(r) for r in page.rows],
                    "next_cursor": page.next_cursor, "total": page.total, "masked": not may_view_full})


_UPLOAD_STATUS = {"type": "object", "properties": {
    "id": {"type": "integer"}, "state": {"enum": ["queued", "running", "done", "failed"]},
    "bytes": {"type": "integer"}, "bytes_done": {"type": "integer"}, "lines": {"type": "integer"},
    "accepted": {"type": "integer"}, "duplicates": {"type": "integer"}, "rejected": {"type": "integer"},
    "stop_listed": {"type": "integer"}, "percent": {"type": "integer"}, "error": {"type": ["string", "null"]},
    "errors": {"type": "array", "items": {"type": "object", "properties": {
        "line": {"type": ["integer", "null"]}, "reason": {"type": "string"}, "text": {"type": ["string", "null"]}}}}}}

PATHS = {
    "/api/v1/campaigns/{campaign_id}/recipients": {
        "put": {
            "summary": "Upload the campaign's recipient list as the raw request body (CSV or text, up to 1 GB)",
            "parameters": [
                {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {"name": "X-Filename", "in": "header", "schema": {"type": "string"},
                 "description": "Original file name (.csv or .txt), percent-encoded"}],
            "requestBody": {"required": True, "content": {
                "text/csv": {"schema": {"type": "string", "format": "binary"}},
                "text/plain": {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "202": {"description": "Stored; the ingest job is queued: {id, state, bytes, status_url}"},
                "401": error_response("Missing or invalid token"),
                "403": error_response("Role may not upload recipients"),
                "404": error_response("No such campaign in the token's workspace"),
                "409": error_response("The campaign is not a draft (not_a_draft) or is a Trigger campaign"),
                "413": error_response("Body larger than 1 GB (too_large)"),
                "415": error_response("Not a .csv/.txt file, or a form-encoded body")},
        },
        "get": {
            "summary": "The campaign's recipients, keyset-paginated; numbers masked unless the token's owner "
                       "may view full numbers",
            "parameters": [
                {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "integer"}},
                {"name": "after", "in": "query", "schema": {"type": "integer"},
                 "description": "next_cursor of the previous page"},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "q", "in": "query", "schema": {"type": "string"},
                 "description": "a full phone number or a ctn_hash prefix (≥ 6 hex characters)"}],
            "responses": {"200": {"description": "{recipients: [...], next_cursor, total, masked}"},
                          "400": error_response("Bad cursor or search"),
                          "401": error_response("Missing or invalid token"),
                          "404": error_response("No such campaign in the token's workspace")},
        },
    },
    "/api/v1/uploads/{upload_id}": {"get": {
        "summary": "Progress and result of an upload, with its first job errors",
        "parameters": [
            {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "integer"}},
            {"name": "errors", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
             "description": "how many job errors to include (default 20)"}],
        "responses": {"200": {"description": "Upload status",
                              "content": {"application/json": {"schema": _UPLOAD_STATUS}}},
                      "401": error_response("Missing or invalid token"),
                      "404": error_response("No such upload in the token's workspace")},
    }},
}
