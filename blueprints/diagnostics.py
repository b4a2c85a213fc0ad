"""Diagnostics: technical health of the installation (Core, schemas, audit store, queues, workers,
periodic jobs, client certificate) and the pre-flight checklists of large campaigns — per
workspace (`/w/<slug>/diagnostics`, admins) and system-wide (`/admin/diagnostics`, super admins)."""
from flask import Blueprint, g, jsonify, render_template, request

from blueprints.access import superadmin_only, workspace_route
from services import diagnostics

bp = Blueprint("diagnostics", __name__)


def _render(workspace_id, scope):
    report = diagnostics.system_report()
    # The checklists reuse this page's probes instead of calling the Core again per campaign.
    checklists = [(c, diagnostics.preflight(c, core=report["core"], workers=report["workers"],
                                            audit=report["audit"]))
                  for c in diagnostics.large_campaigns(workspace_id)]
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json":
        return jsonify({"core": report["core"], "schema": report["schema"], "audit": report["audit"],
                        "queues": report["queues"]["queues"], "certificate": {
                            k: (v.isoformat() if hasattr(v, "isoformat") else v)
                            for k, v in report["certificate"].items()},
                        "preflight": {c.id: items for c, items in checklists}})
    return render_template("diagnostics/index.html", report=report, checklists=checklists, scope=scope,
                           threshold=diagnostics.preflight_threshold(), worst=diagnostics.worst)


@bp.get("/w/<slug>/diagnostics")
@workspace_route("diagnostics.view")
def workspace():
    return _render(g.workspace.id, "workspace")


@bp.get("/admin/diagnostics")
@superadmin_only
def installation():
    return _render(None, "installation")
