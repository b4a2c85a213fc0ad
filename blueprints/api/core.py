"""API basics: who am I, the audit feed for SIEMs, the OpenAPI document."""
from flask import g, jsonify

from blueprints.access import public
from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_query
from blueprints.api.schemas.core import AuditPage, AuditQuery, Me
from blueprints.api.spec import openapi_document
from services import audit_log


@bp.get("/me")
@api_route("workspace.view")
@doc("The token's owner, workspace and role")
@respond(Me)
def me():
    user, membership = g.api_user, g.membership
    return {
        "id": user.id, "email": user.email, "name": user.name, "is_superadmin": user.is_superadmin,
        "workspace": {"id": g.workspace.id, "slug": g.workspace.slug, "name": g.workspace.name},
        "role": membership.role if membership else None,
        "is_moderator": bool(membership and membership.is_moderator),
        "can_view_numbers": bool(membership and membership.can_view_numbers),
    }


def _event_json(event):
    out = {k: v for k, v in event.items() if k not in ("_id", "ts")}
    out["id"] = event["_id"]
    out["ts"] = event["ts"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return out


@bp.get("/audit")
@api_route("audit.view")
@doc("Audit events of the token's workspace, newest first (admins)",
     errors={400: "Bad filter, date (invalid_date), cursor (invalid_cursor) or limit (invalid_limit)",
             403: "Role may not read the audit log"})
@use_query(AuditQuery)
@respond(AuditPage)
def audit_feed(query):
    filters = audit_log.parse_filters(query)
    events, next_cursor = audit_log.search(filters, workspace_id=g.workspace.id, cursor=query.get("cursor"),
                                           limit=query["limit"])
    return {"events": [_event_json(e) for e in events], "next_cursor": next_cursor}


@bp.get("/openapi.json")
@public
@doc("This document (OpenAPI 3.1, generated from the API's marshmallow schemas)",
     responses={200: {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}})
def openapi():
    return jsonify(openapi_document())
