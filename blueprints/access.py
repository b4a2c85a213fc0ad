"""Route access declarations. Every view declares who may reach it; undeclared views are refused.

`@public`, `@login_only`, `@superadmin_only` and `@workspace_route(action)` set `view._access`;
the app's before_request hook (`enforce_access`) refuses any endpoint without one (deny by
default), so adding a route can never silently make it reachable.
"""
import functools
from typing import Any, cast

from flask import abort, current_app, g, request, session
from flask_login import current_user

import audit
from extensions import db, login_manager
from models import Workspace
from services import permissions

UNDECLARED = object()


def _mark(view, access):
    view._access = access
    return view


def public(view):
    return _mark(view, "public")


def login_only(view):
    return _mark(view, "login")


def superadmin_only(view):
    return _mark(view, "superadmin")


def workspace_route(action):
    """Resolve `<slug>` to g.workspace / g.membership and check `action` in the permission table."""
    if action not in permissions.PERMISSIONS:
        raise KeyError(f"unknown permission {action!r}")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, slug, **kwargs):
            load_workspace(slug)
            if not permissions.allowed(action, g.membership, superadmin=current_user.is_superadmin):
                abort(403)
            return view(*args, **kwargs)

        cast(Any, wrapper)._permission = action  # read by the access checks and the API spec
        return _mark(wrapper, f"workspace:{action}")

    return decorate


def load_workspace(slug):
    """Set g.workspace and g.membership; a workspace the user may not see is a 404."""
    workspace = db.session.execute(db.select(Workspace).filter_by(slug=slug)).scalar_one_or_none()
    if workspace is None:
        abort(404)
    membership = current_user.membership_in(workspace.id)
    if membership is None and not current_user.is_superadmin:
        abort(404)
    g.workspace, g.membership = workspace, membership
    if membership is None:
        _audit_superadmin_access(workspace)
    return workspace


def _audit_superadmin_access(workspace):
    # Once per session and workspace: enough to answer "who looked into tenant X", without
    # turning every page view into an audit event.
    seen = session.get("sa_seen", [])
    if workspace.id not in seen:
        audit.record("workspace.superadmin_access", workspace_id=workspace.id,
                     object_type="workspace", object_id=workspace.id)
        session["sa_seen"] = seen + [workspace.id]


def access_of(endpoint):
    """The access an endpoint declares ("public", "login", "superadmin", "workspace:<action>",
    "api:<action>"), or UNDECLARED for an unknown endpoint or a view without a declaration."""
    return getattr(current_app.view_functions.get(endpoint), "_access", UNDECLARED)


def is_public(endpoint):
    return access_of(endpoint) == "public"


def enforce_access():
    """before_request: deny by default, then apply the view's declaration."""
    if request.endpoint is None or request.endpoint == "static":
        return None
    access = access_of(request.endpoint)
    if access is UNDECLARED:
        abort(404)
    if access == "public" or access.startswith("api:"):
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if access == "superadmin" and not current_user.is_superadmin:
        abort(404)
    return None


def can(action):
    """Template helper: may the current user do `action` in the current workspace?"""
    if not current_user.is_authenticated:
        return False
    return permissions.allowed(action, g.get("membership"), superadmin=current_user.is_superadmin)
