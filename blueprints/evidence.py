"""Evidence packs in the browser: build one from the campaign page, follow it, download the ZIP.

Moderators, admins and super admins (`evidence.create`); another workspace's id is a 404, an expired
pack a 410 page, one still being built a 409.
"""
from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from blueprints.access import workspace_route
from services import evidence as service
from services import exports

bp = Blueprint("evidence", __name__, url_prefix="/w/<slug>")


def _wants_json():
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json"


@bp.post("/campaigns/<int:campaign_id>/evidence")
@workspace_route("evidence.create")
def create(campaign_id):
    # Another workspace's or an unknown campaign: NotFound, the 404 page (app.py).
    pack = service.request_pack(g.workspace, campaign_id, g.membership, current_user)
    if _wants_json():
        return jsonify(service.status(pack)), 202
    flash(f"Evidence pack #{pack.id} ({'full numbers' if pack.unmasked else 'masked numbers'}) is queued. "
          "Its download link appears here when it is ready.", "success")
    return redirect(url_for("evidence.show", slug=g.workspace.slug, pack_id=pack.id))


@bp.get("/evidence/<int:pack_id>")
@workspace_route("evidence.create")
def show(pack_id):
    pack = service.get_pack(g.workspace, pack_id, g.membership, current_user)
    if _wants_json():
        return jsonify(service.status(pack))
    return render_template("evidence/show.html", pack=pack)


@bp.get("/evidence/<int:pack_id>/download")
@workspace_route("evidence.create")
def download(pack_id):
    pack = service.open_for_download(g.workspace, pack_id, g.membership, current_user)
    return service.send(pack)


@bp.errorhandler(exports.ExportExpired)
@bp.errorhandler(exports.ExportNotReady)
@bp.errorhandler(exports.FullNumbersRefused)
def unavailable(exc):
    """A download that cannot be served (expired, not ready, full numbers for a masked role): the
    pack's page saying why, with the error's status; JSON for a client that asks for it."""
    pack = service.get_pack(g.workspace, (request.view_args or {})["pack_id"], g.membership, current_user)
    if _wants_json():
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status
    return render_template("evidence/show.html", pack=pack, message=exc.message), exc.status
