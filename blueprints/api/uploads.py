"""API uploads: the raw-body recipient upload (up to 1 GB), its status, and the recipients list.

`PUT /api/v1/campaigns/<id>/recipients` streams the body in fixed chunks to the spool (the
whole body is never held in memory); the route raises `request.max_content_length` for itself before touching the
body and answers 413 `too_large` above the limit.
"""
from urllib.parse import unquote

from flask import g, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from blueprints.api import api_error, api_route, bp
from blueprints.api.contract import doc, respond, use_query
from blueprints.api.schemas.uploads import (
    RecipientPage,
    RecipientQuery,
    UploadAccepted,
    UploadStatus,
    UploadStatusQuery,
)
from services import campaigns, permissions, recipients
from services.errors import Forbidden


def _too_large(limit):
    return api_error(413, "too_large", f"The body is larger than {recipients.human_size(limit)}, "
                                       "the limit for recipient uploads.")


_RAW = {"schema": {"type": "string", "format": "binary"}}
_NOT_HERE = "No such campaign in the token's workspace"


@bp.put("/campaigns/<int:campaign_id>/recipients")
@api_route("recipients.upload")
@doc("Upload the campaign's recipient list as the raw request body (CSV or text, up to 1 GB)",
     request_body={"required": True, "content": {m: _RAW for m in ("text/csv", "text/plain",
                                                                     "application/octet-stream")}},
     parameters=[{"name": "X-Filename", "in": "header", "schema": {"type": "string", "maxLength": 255},
                  "description": "Original file name (.csv or .txt), percent-encoded"}],
     errors={403: "Role may not upload recipients", 404: _NOT_HERE,
             409: "The campaign is not a draft (not_a_draft) or is a Trigger campaign",
             413: "Body larger than 1 GB (too_large)", 415: "Not a .csv/.txt file, or a form-encoded body"})
@respond(UploadAccepted, status=202)
def put_recipients(campaign_id):
    limit = recipients.api_limit()
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        return _too_large(limit)
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return api_error(415, "unsupported_media_type",
                         "Send the file itself as the request body "
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
    return ({"id": upload.id, "state": upload.state, "bytes": size, "status_url": status_url},
            {"Location": status_url})


@bp.get("/uploads/<int:upload_id>")
@api_route("campaigns.view")
@doc("Progress and result of an upload, with its first job errors",
     errors={400: "errors out of 0-1000 (invalid_errors)", 404: "No such upload in the token's workspace"})
@use_query(UploadStatusQuery)
@respond(UploadStatus)
def get_upload(upload_id, query):
    upload = recipients.get_upload(g.workspace, upload_id, g.membership, g.api_user)
    may_view_full = permissions.allowed("numbers.view_full", g.membership, superadmin=g.api_user.is_superadmin)
    return recipients.upload_status(upload, errors_limit=query["errors"], may_view_full=may_view_full)


@bp.get("/campaigns/<int:campaign_id>/recipients")
@api_route("campaigns.view")
@doc("The campaign's recipients, keyset-paginated; numbers masked unless the token's owner may view full numbers",
     errors={400: "Bad cursor or limit (invalid_cursor, bad_cursor) or search", 404: _NOT_HERE})
@use_query(RecipientQuery)
@respond(RecipientPage)
def list_recipients(campaign_id, query):
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    may_view_full = permissions.allowed("numbers.view_full", g.membership, superadmin=g.api_user.is_superadmin)
    page = recipients.list_recipients(campaign, after_id=query.get("after"), limit=query["limit"],
                                      may_view_full=may_view_full, search=query.get("q"))
    return {"recipients": [recipients.recipient_json(r) for r in page.rows],
            "next_cursor": page.next_cursor, "total": page.total, "masked": not may_view_full}
