"""API: the sender-name registry — list, read, propose names and revisions, archive."""
from flask import g

from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body, use_query
from blueprints.api.schemas.senders import (
    Revision,
    RevisionCreate,
    SenderCreate,
    SenderListQuery,
    SenderName,
    SenderNameList,
)
from services import senders

_NOT_HERE = "No such sender name in this workspace"


def _revision_values(body):
    return {"saddr": body["saddr"], "ton": body.get("ston"), "npi": body.get("snpi"),
            "comment": body.get("comment") or "", "draft": body.get("draft", False)}


@bp.get("/sender-names")
@api_route("senders.view")
@doc("Sender names of the token's workspace with their revisions")
@use_query(SenderListQuery)
@respond(SenderNameList)
def list_sender_names(query):
    rows = senders.list_senders(g.workspace, archived=query.get("archived", False))
    return {"sender_names": [senders.sender_json(s) for s in rows]}


@bp.post("/sender-names")
@api_route("senders.propose")
@doc("Propose a sender name; its revision #1 waits for a moderator (Pending Approval)",
     errors={400: "Invalid SADDR, TON, NPI or name (the code says which)",
             409: "A sender name with this label exists (duplicate_name)"})
@use_body(SenderCreate)
@respond(SenderName, status=201)
def create_sender_name(body):
    revision = senders.propose(g.workspace, g.membership, g.api_user, label=body["name"], **_revision_values(body))
    return senders.sender_json(revision.sender)


@bp.get("/sender-names/<int:sender_id>")
@api_route("senders.view")
@doc("One sender name with its full revision history", errors={404: _NOT_HERE})
@respond(SenderName)
def get_sender_name(sender_id):
    return senders.sender_json(senders.get_sender(g.workspace, sender_id))


@bp.post("/sender-names/<int:sender_id>/revisions")
@api_route("senders.propose")
@doc("Propose a changed SADDR/TON/NPI: a new revision (number+1) in Pending Approval",
     errors={400: "Invalid SADDR, TON or NPI, or nothing changed", 404: _NOT_HERE,
             409: "A revision is already open (revision_open), or the name is archived"})
@use_body(RevisionCreate)
@respond(Revision, status=201)
def create_revision(sender_id, body):
    revision = senders.propose_revision(g.workspace, sender_id, g.membership, g.api_user, **_revision_values(body))
    return senders.revision_json(revision)


@bp.post("/sender-names/<int:sender_id>/archive")
@api_route("senders.archive")
@doc("Archive a sender name (admins): hidden from the campaign wizard; campaigns using it continue",
     errors={403: "Only admins archive sender names", 404: _NOT_HERE, 409: "Already archived"})
@respond(SenderName)
def archive_sender_name(sender_id):
    return senders.sender_json(senders.archive(g.workspace, sender_id, g.membership, g.api_user))
