"""API: the moderation queue — list what waits, approve, reject (as the token's owner, with the same
rules as the page: permission, four-eyes, and a 409 `already_decided` for the loser of a race)."""
from flask import g, jsonify, request

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from services import moderation, senders


@bp.get("/moderation")
@api_route("moderation.view")
def moderation_queue():
    wanted = request.args.get("kind")
    if wanted and wanted not in moderation.KINDS:
        return api_error(400, "invalid_kind", f"kind must be one of: {', '.join(moderation.KINDS)}.")
    names = [wanted] if wanted else list(moderation.KINDS)
    items = [moderation.serialize(name, item) for name in names
             for item in moderation.items(g.workspace, name)]
    return jsonify({"counts": moderation.counts(g.workspace), "items": items})


def _decided_json(kind_name, item):
    if kind_name == "sender_revision":
        return {"kind": kind_name, **senders.revision_json(item)}
    return moderation.serialize(kind_name, item)


@bp.post("/moderation/<kind>/<int:item_id>/approve")
@api_route("moderation.decide")
def moderation_approve(kind, item_id):
    item = moderation.decide(g.workspace, kind, item_id, "approve", g.membership, g.api_user)
    return jsonify(_decided_json(kind, item))


@bp.post("/moderation/<kind>/<int:item_id>/reject")
@api_route("moderation.decide")
def moderation_reject(kind, item_id):
    body = request.get_json(silent=True)
    note = body.get("note") if isinstance(body, dict) else None
    item = moderation.decide(g.workspace, kind, item_id, "reject", g.membership, g.api_user,
                             note=note if isinstance(note, str) else None)
    return jsonify(_decided_json(kind, item))


_PARAMS = [{"name": "kind", "in": "path", "required": True,
            "schema": {"type": "string", "enum": ["campaign", "sender_revision"]}},
           {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"},
            "description": "The campaign's or the sender revision's id"}]
_DECISION_ERRORS = {
    "401": error_response("Missing or invalid token"),
    "403": error_response("Not a moderator here, or four-eyes: you cannot decide your own item"),
    "404": error_response("No such item in this workspace, or an unknown kind"),
    "409": error_response("already_decided: another moderator decided first (the message says who and when)"),
}

PATHS = {
    "/api/v1/moderation": {"get": {
        "summary": "Items waiting for a moderator, oldest first, with the count per kind",
        "parameters": [{"name": "kind", "in": "query", "schema": {"type": "string",
                                                                   "enum": ["campaign", "sender_revision"]},
                        "description": "only this kind (default: both)"}],
        "responses": {"200": {"description": "{counts: {campaign, sender_revision}, items: [{kind, id, …; "
                                             "sender revisions carry saddr}]}"},
                      "400": error_response("Unknown kind"), "401": error_response("Missing or invalid token"),
                      "403": error_response("Role may not see the moderation queue")},
    }},
    "/api/v1/moderation/{kind}/{item_id}/approve": {"post": {
        "summary": "Approve a campaign (it goes on per its lifecycle) or a sender revision (it becomes current)",
        "parameters": _PARAMS, "responses": {"200": {"description": "The decided item"}, **_DECISION_ERRORS},
    }},
    "/api/v1/moderation/{kind}/{item_id}/reject": {"post": {
        "summary": "Reject with a note the author will read",
        "parameters": _PARAMS,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["note"], "properties": {"note": {"type": "string", "maxLength": 500}}}}}},
        "responses": {"200": {"description": "The decided item"},
                      "400": error_response("note_required: say why"), **_DECISION_ERRORS},
    }},
}
