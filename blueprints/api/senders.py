"""API: the sender-name registry — list, read, propose names and revisions, archive."""
from flask import g, jsonify, request

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from services import senders


def _body():
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else None


def _text(value):
    """JSON strings as they are; numbers (a numeric SADDR sent unquoted) as digits; anything else empty."""
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, (str, int)) else ""


def _bad_body():
    return api_error(400, "invalid_json", "Send a JSON object, e.g. {\"name\": \"Acme\", \"saddr\": \"ACME\"}.")


@bp.get("/sender-names")
@api_route("senders.view")
def list_sender_names():
    archived = request.args.get("archived", "").lower() in ("1", "true", "yes")
    return jsonify({"sender_names": [senders.sender_json(s) for s in senders.list_senders(g.workspace,
                                                                                           archived=archived)]})


@bp.post("/sender-names")
@api_route("senders.propose")
def create_sender_name():
    body = _body()
    if body is None:
        return _bad_body()
    revision = senders.propose(g.workspace, g.membership, g.api_user, label=_text(body.get("name")),
                               saddr=_text(body.get("saddr")), ton=body.get("ston"), npi=body.get("snpi"),
                               comment=_text(body.get("comment")), draft=bool(body.get("draft")))
    return jsonify(senders.sender_json(revision.sender)), 201


@bp.get("/sender-names/<int:sender_id>")
@api_route("senders.view")
def get_sender_name(sender_id):
    return jsonify(senders.sender_json(senders.get_sender(g.workspace, sender_id)))


@bp.post("/sender-names/<int:sender_id>/revisions")
@api_route("senders.propose")
def create_revision(sender_id):
    body = _body()
    if body is None:
        return _bad_body()
    revision = senders.propose_revision(g.workspace, sender_id, g.membership, g.api_user,
                                        saddr=_text(body.get("saddr")), ton=body.get("ston"), npi=body.get("snpi"),
                                        comment=_text(body.get("comment")), draft=bool(body.get("draft")))
    return jsonify(senders.revision_json(revision)), 201


@bp.post("/sender-names/<int:sender_id>/archive")
@api_route("senders.archive")
def archive_sender_name(sender_id):
    return jsonify(senders.sender_json(senders.archive(g.workspace, sender_id, g.membership, g.api_user)))


_ID = {"name": "sender_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_REVISION_FIELDS = {
    "saddr": {"type": "string", "description": "Alphanumeric up to 11 GSM characters, or up to 15 digits"},
    "ston": {"type": "integer", "description": "Source TON 0-6; default 5 (alphanumeric) or 1 (numeric)"},
    "snpi": {"type": "integer", "description": "Source NPI; default 0 (alphanumeric) or 1 (numeric)"},
    "comment": {"type": "string", "description": "For the moderator, up to 500 characters"},
    "draft": {"type": "boolean", "description": "Save as a draft instead of submitting (default false)"},
}
_REVISION_DOC = ("A revision: id, number, saddr, ston, snpi, comment, state "
                 "(draft|pending|approved|rejected|archived), note (the moderator's), created_by, decided_by, "
                 "timestamps")
_SENDER_DOC = ("A sender name: id, name, archived, current_revision (highest-numbered approved), "
               "open_revision (draft or pending), revisions")

PATHS = {
    "/api/v1/sender-names": {
        "get": {"summary": "Sender names of the token's workspace with their revisions",
                "parameters": [{"name": "archived", "in": "query", "schema": {"type": "boolean"},
                                "description": "true: list the archived names instead"}],
                "responses": {"200": {"description": "{sender_names: [" + _SENDER_DOC + "]}"},
                              "401": error_response("Missing or invalid token")}},
        "post": {"summary": "Propose a sender name; its revision #1 waits for a moderator (Pending Approval)",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["name", "saddr"],
                     "properties": {"name": {"type": "string", "description": "Label, up to 80 characters"},
                                    **_REVISION_FIELDS}}}}},
                 "responses": {"201": {"description": _SENDER_DOC},
                               "400": error_response("Invalid SADDR, TON, NPI or name (code says which)"),
                               "401": error_response("Missing or invalid token"),
                               "409": error_response("A sender name with this label exists (duplicate_name)")}},
    },
    "/api/v1/sender-names/{sender_id}": {
        "get": {"summary": "One sender name with its full revision history", "parameters": [_ID],
                "responses": {"200": {"description": _SENDER_DOC},
                              "401": error_response("Missing or invalid token"),
                              "404": error_response("No such sender name in this workspace")}},
    },
    "/api/v1/sender-names/{sender_id}/revisions": {
        "post": {"summary": "Propose a changed SADDR/TON/NPI: a new revision (number+1) in Pending Approval",
                 "parameters": [_ID],
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["saddr"], "properties": _REVISION_FIELDS}}}},
                 "responses": {"201": {"description": _REVISION_DOC},
                               "400": error_response("Invalid SADDR, TON or NPI, or nothing changed"),
                               "401": error_response("Missing or invalid token"),
                               "404": error_response("No such sender name in this workspace"),
                               "409": error_response("A revision is already open (revision_open), or the name "
                                                     "is archived")}},
    },
    "/api/v1/sender-names/{sender_id}/archive": {
        "post": {"summary": "Archive a sender name (admins): hidden from the campaign wizard; campaigns "
                            "using it continue", "parameters": [_ID],
                 "responses": {"200": {"description": _SENDER_DOC},
                               "401": error_response("Missing or invalid token"),
                               "403": error_response("Only admins archive sender names"),
                               "404": error_response("No such sender name in this workspace"),
                               "409": error_response("Already archived")}},
    },
}
