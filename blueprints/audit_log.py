"""The audit log pages: per workspace for admins, across workspaces for super admins."""
from typing import Any

from flask import Blueprint, g, render_template, request, url_for

from blueprints.access import superadmin_only, workspace_route
from extensions import db
from models import Workspace
from services import audit_log
from services.errors import DomainError

bp = Blueprint("audit_log", __name__)


def _render(workspace_id, all_workspaces):
    error, events, next_cursor = None, [], None
    try:
        filters = audit_log.parse_filters(request.args)
        events, next_cursor = audit_log.search(filters, workspace_id=workspace_id, all_workspaces=all_workspaces,
                                               cursor=request.args.get("cursor"))
    except DomainError as exc:
        error = exc.message
    names = dict(db.session.execute(db.select(Workspace.id, Workspace.slug)).all()) if all_workspaces else {}
    next_url = None
    if next_cursor:
        view_args: dict[str, Any] = request.view_args or {}
        params: dict[str, Any] = {k: v for k, v in request.args.items() if k != "cursor"}
        next_url = url_for(request.endpoint or "", **view_args, **params, cursor=next_cursor)
    return render_template("audit/index.html", events=events, next_url=next_url, error=error,
                           args=request.args, workspace_names=names), 400 if error else 200


@bp.get("/w/<slug>/audit")
@workspace_route("audit.view")
def workspace_log():
    return _render(g.workspace.id, False)


@bp.get("/admin/audit")
@superadmin_only
def installation_log():
    return _render(None, True)
