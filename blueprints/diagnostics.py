"""Diagnostics: technical health of the installation (Core, schemas, audit store, queues, workers,
periodic jobs, client certificate) and the pre-flight checklists of large campaigns — per
workspace (`/w/<slug>/diagnostics`, admins) and system-wide (`/admin/diagnostics`, super admins).

Least information: the workspace page (admins, and super admins looking into a workspace) shows the
Core's status and the pre-flight of the workspace's own campaigns; hosts, PIDs, paths, queues and
workers are on the installation page only (super admins)."""
from flask import Blueprint, g, jsonify, render_template, request

from blueprints.access import superadmin_only, workspace_route
from services import diagnostics

bp = Blueprint("diagnostics", __name__)


def _jsonable(row):
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _render(workspace_id, scope):
    full = scope == "installation"
    if full:
        report = diagnostics.system_report()
        # The checklists reuse this page's probes instead of calling the Core again per campaign.
        checklists = [(c, diagnostics.preflight(c, core=report["core"], workers=report["workers"],
                                                audit=report["audit"], detailed=True))
                      for c in diagnostics.large_campaigns(workspace_id)]
    else:
        report = diagnostics.workspace_report(workspace_id)
        checklists = diagnostics.campaign_checklists(workspace_id, core=report["core"])
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "application/json":
        body = {"core": report["core"], "trigger_lane": report["trigger_lane"],
                "preflight": {c.id: items for c, items in checklists}}
        if full:
            body.update({"schema": report["schema"], "audit": report["audit"], "queues": report["queues"]["queues"],
                         "certificate": _jsonable(report["certificate"]),
                         "audit_seals": _seal_json(report["audit_seals"])})
        return jsonify(body)
    return render_template("diagnostics/index.html", report=report, checklists=checklists, scope=scope,
                           threshold=diagnostics.preflight_threshold(), worst=diagnostics.worst)


def _seal_json(status):
    return {"seal": _jsonable(status["seal"]) if status["seal"] else None,
            "verification": _jsonable(status["verification"]) if status["verification"] else None,
            "warnings": status["warnings"], "ok": status["ok"]}


@bp.get("/w/<slug>/diagnostics")
@workspace_route("diagnostics.view")
def workspace():
    return _render(g.workspace.id, "workspace")


@bp.get("/admin/diagnostics")
@superadmin_only
def installation():
    return _render(None, "installation")
