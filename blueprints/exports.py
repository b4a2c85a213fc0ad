"""Campaign exports in the browser: start one from the campaign page, follow it, download it.

Download is a streamed `send_file` of the generated file, only for members of the export's
workspace allowed by the permission table (another workspace's id is a 404). An expired export
answers 410 with a page that says so; one still being built answers 409.
"""
from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints import refusals_go_to
from blueprints.access import workspace_route
from models.states import ExportState
from services import exports as service

bp = Blueprint("exports", __name__, url_prefix="/w/<slug>")


def _wants_json():
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json"


def _progress(export):
    if export.state not in (ExportState.QUEUED, ExportState.RUNNING) or not export.job_id:
        return None
    try:
        from rq.job import Job

        from extensions import redis_connection

        return Job.fetch(export.job_id, connection=redis_connection()).get_meta(refresh=True).get("progress")
    except Exception:  # noqa: BLE001 - the job may be gone; the row still has the rows written so far
        return None


@bp.post("/campaigns/<int:campaign_id>/exports")
@workspace_route("exports.create")
@refusals_go_to("campaigns.detail", _anchor="exports")
def create(campaign_id):
    back = url_for("campaigns.detail", slug=g.workspace.slug, campaign_id=campaign_id) + "#exports"
    export = service.request_export(g.workspace, campaign_id, request.form.get("format"), g.membership,
                                    current_user)
    if _wants_json():
        return jsonify(service.status(export)), 202
    flash(f"Export #{export.id} ({export.format.upper()}{', full numbers' if export.unmasked else ', masked numbers'}) "
          "is queued. Its download link appears here when it is ready.", "success")
    return redirect(back)


@bp.get("/exports/<int:export_id>")
@workspace_route("exports.download")
def show(export_id):
    export = service.get_export(g.workspace, export_id, g.membership, current_user)
    progress = _progress(export)
    if _wants_json():
        return jsonify(service.status(export, progress))
    return render_template("exports/show.html", export=export, progress=progress)


@bp.get("/exports/<int:export_id>/download")
@workspace_route("exports.download")
def download(export_id):
    export = service.open_for_download(g.workspace, export_id, g.membership, current_user)
    return service.file_response(export)


@bp.errorhandler(service.ExportExpired)
@bp.errorhandler(service.ExportNotReady)
@bp.errorhandler(service.FullNumbersRefused)
def unavailable(exc):
    """A download that cannot be served (expired, not ready, full numbers for a masked role): the
    export's page saying why, with the error's status; JSON for a client that asks for it."""
    export = service.get_export(g.workspace, (request.view_args or {})["export_id"], g.membership, current_user)
    if _wants_json():
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status
    return render_template("exports/unavailable.html", export=export, message=exc.message,
                           status=exc.status), exc.status


def export_helpers():
    """For templates/campaigns/_exports.html (included by the campaign detail page)."""
    return {"campaign_exports": service.for_campaign, "export_ttl_hours": f"{service.ttl().total_seconds() / 3600:g}"}
