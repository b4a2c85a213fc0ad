"""Landing redirect and the health endpoints."""
from flask import Blueprint, jsonify, redirect, url_for
from flask_login import current_user

from blueprints.access import login_only, public
from services import health, workspaces

bp = Blueprint("home", __name__)


@bp.get("/")
@login_only
def index():
    if current_user.is_superadmin:  # super admins land in the Master workspace
        return redirect(url_for("workspace.overview", slug=workspaces.master().slug))
    spaces = [w for w in workspaces.workspaces_for(current_user) if not w.is_master]
    if spaces:
        return redirect(url_for("workspace.overview", slug=spaces[0].slug))
    return redirect(url_for("join.index"))


@bp.get("/healthz")
@public
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@public
def readyz():
    checks = health.readiness()  # status words only: this endpoint is public (details go to the log)
    ok = all(state == "ok" for state in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503
