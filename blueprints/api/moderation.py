"""API: the moderation queue — list what waits, approve, reject (as the token's owner, with the same
rules as the page: permission, four-eyes, and a 409 `already_decided` for the loser of a race)."""
from flask import g

from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body, use_query
from blueprints.api.schemas.moderation import ModerationItem, ModerationQuery, ModerationQueue, RejectBody
from services import moderation, senders

_DECISION_ERRORS = {
    403: "Not a moderator here, or four-eyes: you cannot decide your own item",
    404: "No such item in this workspace, or an unknown kind",
    409: "already_decided: another moderator decided first (the message says who and when)",
}
_KIND = {"kind": {"type": "string", "enum": list(moderation.KINDS)}}


@bp.get("/moderation")
@api_route("moderation.view")
@doc("Items waiting for a moderator, oldest first, with the count per kind",
     errors={400: "Unknown kind (invalid_kind)", 403: "Role may not see the moderation queue"})
@use_query(ModerationQuery)
@respond(ModerationQueue)
def moderation_queue(query):
    names = [query["kind"]] if query.get("kind") else list(moderation.KINDS)
    items = [moderation.serialize(name, item) for name in names
             for item in moderation.items(g.workspace, name)]
    return {"counts": moderation.counts(g.workspace), "items": items}


def _decided_json(kind_name, item):
    if kind_name == "sender_revision":
        return {"kind": kind_name, **senders.revision_json(item)}
    return moderation.serialize(kind_name, item)


@bp.post("/moderation/<kind>/<int:item_id>/approve")
@api_route("moderation.decide")
@doc("Approve a campaign (it goes on per its lifecycle) or a sender revision (it becomes current)",
     path_schemas=_KIND, errors=_DECISION_ERRORS)
@respond(ModerationItem)
def moderation_approve(kind, item_id):
    return _decided_json(kind, moderation.decide(g.workspace, kind, item_id, "approve", g.membership, g.api_user))


@bp.post("/moderation/<kind>/<int:item_id>/reject")
@api_route("moderation.decide")
@doc("Reject with a note the author will read", path_schemas=_KIND,
     errors={400: "note_required: say why", **_DECISION_ERRORS})
@use_body(RejectBody)
@respond(ModerationItem)
def moderation_reject(kind, item_id, body):
    item = moderation.decide(g.workspace, kind, item_id, "reject", g.membership, g.api_user, note=body["note"])
    return _decided_json(kind, item)
