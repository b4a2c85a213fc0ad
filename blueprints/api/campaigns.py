"""API: campaigns — create (all wizard fields at once), list with the page's filters, read, and the
lifecycle actions. Same services and rules as the pages: an illegal change answers 409
`illegal_transition`, a missing permission 403, another workspace's id 404."""
from flask import g, jsonify, request

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from services import campaign_drafts as drafts
from services import campaign_queries as queries
from services import campaigns as lifecycle
from services import segments
from services.errors import DomainError

API_ACTIONS = ("submit", "start", "pause", "resume", "cancel", "archive", "restore")


def _when(value):
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def campaign_json(c, detail=False):
    first, last = drafts.api_start_window(c)
    out = {
        "id": c.id, "name": c.name, "mode": c.mode, "status": c.status, "moderation": c.moderation,
        "sender_revision_id": c.sender_revision_id, "text": c.message_text,
        "smpp": {k: getattr(c, k) for k in ("saddr", "ston", "snpi", "dton", "dnpi")},
        "daily_limit": c.daily_limit, "auto_start": c.auto_start, "start_at": _when(c.start_at),
        "window_start": first, "window_end": last, "ignore_daily_window": c.ignore_daily_window,
        "archived_at": _when(c.archived_at), "created_at": _when(c.created_at),
        "failure_reason": c.failure_reason, "pause_reason": c.pause_reason,
        "author": c.author.email if c.author else None,
        "counters": {"recipients": c.recipients_count, "queued": c.queued_count, "sent": c.sent_count,
                     "delivered": c.delivered_count, "failed": c.failed_count, "in_flight": c.inflight_count},
    }
    if detail:
        info = segments.count(c.message_text)
        out.update(encoding=info.encoding, segments=info.segments, wizard_step=c.wizard_step,
                   moderation_note=c.moderation_note, submitted_at=_when(c.submitted_at),
                   started_at=_when(c.started_at), finished_at=_when(c.finished_at))
    return out


def _invalid(exc):
    body = {"error": {"code": exc.code, "message": exc.message}}
    if getattr(exc, "fields", None):
        body["error"]["fields"] = exc.fields
    return jsonify(body), exc.status


@bp.get("/campaigns")
@api_route("campaigns.view")
def list_campaigns():
    filters = queries.parse_filters(request.args)
    if filters.errors:
        key, message = next(iter(filters.errors.items()))
        return api_error(400, f"invalid_{key}", message)
    rows, has_next = queries.list_campaigns(g.workspace, g.membership, g.api_user, filters)
    return jsonify({"campaigns": [campaign_json(c) for c in rows], "page": filters.page, "has_next": has_next})


@bp.post("/campaigns")
@api_route("campaigns.create")
def create_campaign():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return api_error(400, "invalid_json", "Send a JSON object with at least mode, name, sender_revision_id "
                                              "and text.")
    try:
        campaign = drafts.create_complete(g.workspace, g.membership, g.api_user, body)
    except drafts.InvalidFields as exc:
        return _invalid(exc)
    return jsonify(campaign_json(campaign, detail=True)), 201


@bp.get("/campaigns/<int:campaign_id>")
@api_route("campaigns.view")
def get_campaign(campaign_id):
    campaign = lifecycle.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    return jsonify(campaign_json(campaign, detail=True))


@bp.post("/campaigns/<int:campaign_id>/<action>")
@api_route("campaigns.view")
def campaign_action(campaign_id, action):
    if action not in API_ACTIONS:
        return api_error(404, "not_found", f"Unknown action {action!r}; use one of {', '.join(API_ACTIONS)}.")
    body = request.get_json(silent=True) or {}
    owner_id = body.get("owner_id") if isinstance(body, dict) else None
    try:
        if action == "restore" and owner_id is not None:
            campaign = lifecycle.restore_with_owner(g.workspace, campaign_id, owner_id, g.membership, g.api_user)
        else:
            campaign = lifecycle.perform(g.workspace, campaign_id, action, g.membership, g.api_user)
    except DomainError as exc:
        return api_error(exc.status, exc.code, exc.message)
    return jsonify(campaign_json(campaign, detail=True))


_ID = {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_SMPP = {"type": "object", "description": "Overrides; each defaults to the sender revision (dton/dnpi: 1/1)",
         "properties": {"saddr": {"type": "string"}, "ston": {"type": "integer", "minimum": 0, "maximum": 6},
                        "snpi": {"type": "integer", "enum": [0, 1, 3, 4, 6, 8, 9, 10, 14, 18]},
                        "dton": {"type": "integer", "minimum": 0, "maximum": 6},
                        "dnpi": {"type": "integer", "enum": [0, 1, 3, 4, 6, 8, 9, 10, 14, 18]}}}
_FIELDS = {
    "name": {"type": "string", "maxLength": 120},
    "mode": {"type": "string", "enum": ["OnDemand", "OnTime", "Spread", "Trigger"]},
    "sender_revision_id": {"type": "integer", "description": "An approved, current sender revision"},
    "text": {"type": "string", "description": "At most 10 SMS parts (1530 GSM-7 / 670 UCS-2 units)"},
    "smpp": _SMPP,
    "daily_limit": {"type": ["integer", "null"], "minimum": 1},
    "auto_start": {"type": "boolean", "default": True},
    "start_at": {"type": ["string", "null"], "format": "date-time",
                 "description": "OnTime: future; without an offset it is in the workspace time zone"},
    "window_start": {"type": ["string", "null"], "format": "date", "description": "Spread: first day"},
    "window_end": {"type": ["string", "null"], "format": "date", "description": "Spread: last day (≥ first)"},
    "ignore_daily_window": {"type": "boolean", "description": "Trigger only"},
}
_DOC = ("Campaign: the request fields plus id, status, moderation, archived_at, created_at, author, "
        "failure_reason and pause_reason (why the system failed or paused it, else null), "
        "counters {recipients, queued, sent, delivered, failed, in_flight}")
_FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
    ("from", "created on or after, YYYY-MM-DD (workspace time zone)"), ("to", "created on or before, YYYY-MM-DD"),
    ("status", "New, Building, Pending, Sending, Paused, Done, Cancelled, Failed or Expired"),
    ("mode", "OnDemand, OnTime, Spread or Trigger"), ("q", "campaign id, or part of the SADDR"),
    ("archived", "empty: hide archived; 1: archived only; all: both"),
    ("sort", "created (default), sender or start"), ("dir", "desc (default) or asc"),
    ("page", "1-200, 50 per page"))]

PATHS = {
    "/api/v1/campaigns": {
        "get": {"summary": "Campaigns with the list page's filters (authors see their own)",
                "parameters": _FILTERS,
                "responses": {"200": {"description": "{campaigns: [" + _DOC + "], page, has_next}"},
                              "400": error_response("Bad filter or page out of range"),
                              "401": error_response("Missing or invalid token")}},
        "post": {"summary": "Create a draft campaign (status New) with every wizard field at once",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["mode", "name", "sender_revision_id", "text"],
                     "properties": _FIELDS}}}},
                 "responses": {"201": {"description": _DOC + ", encoding, segments"},
                               "400": error_response("invalid_fields: error.fields names each wrong field"),
                               "401": error_response("Missing or invalid token"),
                               "403": error_response("Role may not create campaigns")}},
    },
    "/api/v1/campaigns/{campaign_id}": {
        "get": {"summary": "One campaign: status, moderation, counters, the text's encoding (GSM-7/UCS-2) "
                           "and segments", "parameters": [_ID],
                "responses": {"200": {"description": _DOC + ", encoding, segments"},
                              "401": error_response("Missing or invalid token"),
                              "404": error_response("No such campaign visible to you")}},
    },
    **{f"/api/v1/campaigns/{{campaign_id}}/{action}": {"post": {
        "summary": f"{action.capitalize()} the campaign (the transition table's rules)"
                   + (" — body {owner_id} when the author is no longer a member" if action == "restore" else ""),
        "parameters": [_ID],
        "responses": {"200": {"description": _DOC},
                      "401": error_response("Missing or invalid token"),
                      "403": error_response("Not your campaign, or four-eyes"),
                      "404": error_response("No such campaign visible to you"),
                      "409": error_response("illegal_transition, changed_meanwhile or owner_required")}}}
      for action in API_ACTIONS},
}
