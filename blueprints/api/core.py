"""API basics: who am I, the audit feed for SIEMs, the OpenAPI document."""
from flask import g, jsonify, request

from blueprints.access import public
from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import openapi_document
from services import audit_log
from services.errors import DomainError


@bp.get("/me")
@api_route("workspace.view")
def me():
    user, membership = g.api_user, g.membership
    return jsonify({
        "id": user.id, "email": user.email, "name": user.name, "is_superadmin": user.is_superadmin,
        "workspace": {"id": g.workspace.id, "slug": g.workspace.slug, "name": g.workspace.name},
        "role": membership.role if membership else None,
        "is_moderator": bool(membership and membership.is_moderator),
        "can_view_numbers": bool(membership and membership.can_view_numbers),
    })


def _event_json(event):
    out = {k: v for k, v in event.items() if k not in ("_id", "ts")}
    out["id"] = event["_id"]
    out["ts"] = event["ts"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


@bp.get("/audit")
@api_route("audit.view")
def audit_feed():
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        return api_error(400, "invalid_limit", "limit must be a whole number between 1 and 500.")
    try:
        filters = audit_log.parse_filters(request.args)
        events, next_cursor = audit_log.search(filters, workspace_id=g.workspace.id,
                                               cursor=request.args.get("cursor"), limit=limit)
    except DomainError as exc:
        return api_error(exc.status, exc.code, exc.message)
    return jsonify({"events": [_event_json(e) for e in events], "next_cursor": next_cursor})


@bp.get("/openapi.json")
@public
def openapi():
    return jsonify(openapi_document())
