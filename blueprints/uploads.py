"""Browser recipient uploads (wizard step 4) and the progress endpoint its bar polls.

The file arrives as the RAW request body (`fetch` with `X-CSRFToken` and `X-Filename`,
`Content-Type: application/octet-stream`), so Werkzeug never parses it and Flask-WTF never reads
`request.form`: the route is exempt from the global CSRF hook and checks the header token itself
after raising its own size limit. Without JavaScript the same URL takes a plain multipart form
(≤ 50 MB; Werkzeug spools that part to a temp file, which we then copy to the spool).
"""
from urllib.parse import unquote, urlsplit

from flask import Blueprint, flash, g, jsonify, redirect, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError, validate_csrf
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import ValidationError

from blueprints.access import can, workspace_route
from extensions import csrf
from services import campaigns, recipients
from services.errors import DomainError, Forbidden

bp = Blueprint("uploads", __name__, url_prefix="/w/<slug>")
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the file


def _is_form():
    return request.mimetype == "multipart/form-data"


def _answers_json():
    """The raw-body upload (fetch) and the progress endpoint answer JSON; a plain form gets a page
    unless it asks for JSON."""
    return request.endpoint != "uploads.upload" or not _is_form() or request.accept_mimetypes.best == "application/json"


@bp.errorhandler(RequestEntityTooLarge)
@bp.errorhandler(DomainError)
def refused(exc):
    """Every refusal of this area, once: JSON for the widget's fetch and the progress poll, else a
    flash on the page the form came from. A file over the limit says which limit and what to do."""
    if isinstance(exc, RequestEntityTooLarge | recipients.UploadTooLarge):
        exc = _too_large(recipients.browser_limit())
    if _answers_json():
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status
    flash(exc.message, "error")
    return redirect(_back())


def _back():
    try:
        target = request.form.get("next", "") if request.mimetype == "multipart/form-data" else ""
    except RequestEntityTooLarge:
        target = ""
    parts = urlsplit(target)
    if target.startswith(f"/w/{g.workspace.slug}/") and not parts.netloc and not parts.scheme:
        return target
    return url_for("workspace.overview", slug=g.workspace.slug)


def _too_large(limit):
    return recipients.UploadTooLarge(
        f"The file is larger than {recipients.human_size(limit)}, the limit for uploads in the browser. "
        "Split it, or upload it through the API (up to 1 GB).")


@bp.post("/campaigns/<int:campaign_id>/recipients")
@csrf.exempt
@workspace_route("recipients.upload")
def upload(campaign_id):
    is_form = _is_form()
    limit = recipients.browser_limit()
    # Raise the app-wide 1 MB form limit for this route only, before anything touches the body.
    request.max_content_length = limit + (FORM_OVERHEAD if is_form else 0)
    if request.content_length is not None and request.content_length > request.max_content_length:
        raise RequestEntityTooLarge()
    try:
        token = request.form.get("csrf_token") if is_form else \
            (request.headers.get("X-CSRFToken") or request.headers.get("X-CSRF-Token"))
        validate_csrf(token)
    except ValidationError:
        raise CSRFError("The upload was not sent from this site's page; reload it and try again.") from None
    if request.mimetype == "application/x-www-form-urlencoded":
        raise DomainError("Send the file as application/octet-stream (or as a multipart form).",
                          code="unsupported_media_type", status=415)
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, current_user)
    if not campaigns.is_owner_or_manager(campaign, g.membership, current_user):
        raise Forbidden("Only the campaign's author or a workspace admin can upload recipients.")
    recipients.ensure_may_upload(campaign)
    if is_form:
        part = request.files.get("file")
        if part is None or not part.filename:
            raise DomainError("Choose a .csv or .txt file to upload.", code="no_file")
        name, stream = recipients.check_filename(part.filename), part.stream
    else:
        name, stream = recipients.check_filename(unquote(request.headers.get("X-Filename", ""))), request.stream
    path, size = recipients.spool_stream(stream, limit)
    upload = recipients.start_upload(campaign, spool_path=path, size=size, source="browser",
                                     original_name=name, user=current_user)
    recipients.enqueue_ingest(upload)
    status_url = url_for("uploads.status", slug=g.workspace.slug, upload_id=upload.id)
    if _answers_json():
        return jsonify({"id": upload.id, "state": upload.state, "bytes": size, "status_url": status_url}), 202
    flash(f"“{name or 'The file'}” was received ({recipients.human_size(size)}); the recipients are being "
          "read now — this page shows the progress.", "success")
    return redirect(_back())


@bp.get("/uploads/<int:upload_id>/status")
@workspace_route("campaigns.view")
def status(upload_id):
    upload = recipients.get_upload(g.workspace, upload_id, g.membership, current_user)
    response = jsonify(recipients.upload_status(upload, may_view_full=can("numbers.view_full")))
    response.headers["Cache-Control"] = "no-store"
    return response
