"""Trigger API: client systems push numbers (e.g. OTPs) into a running Trigger campaign."""
from flask import current_app, g, jsonify, request

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from extensions import limiter
from services import campaigns, trigger
from services.errors import Forbidden

MAX_BODY = 256 * 1024  # 1,000 numbers of 15 digits fit many times over


@bp.post("/campaigns/<int:campaign_id>/recipients")
@api_route("recipients.upload")
@limiter.limit(lambda: f"{current_app.config['TRIGGER_RATE_PER_MINUTE']} per minute",
               key_func=lambda: f"trigger-token:{g.api_token.id}",
               error_message=lambda: f"More than {current_app.config['TRIGGER_RATE_PER_MINUTE']} requests in a "
                                     "minute with this token; retry after the seconds in Retry-After.")
def push_recipients(campaign_id):
    if request.content_length is None or request.content_length > MAX_BODY:
        return api_error(413, "too_large", f"Send a JSON body of at most {MAX_BODY // 1024} KB "
                                           "(1,000 numbers per call).")
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # absurdly nested JSON: the parser gives up before we could
        body = None
    if not isinstance(body, dict) or "numbers" not in body:
        return api_error(400, "invalid_json", 'Send a JSON object: {"numbers": ["+491701234567", …]}.')
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    if not campaigns.is_owner_or_manager(campaign, g.membership, g.api_user):
        raise Forbidden("Only the campaign's author or a workspace admin can push numbers.")
    return jsonify(trigger.push_numbers(campaign, body["numbers"]))


PATHS = {
    "/api/v1/campaigns/{campaign_id}/recipients": {"post": {
        "summary": "Push up to 1,000 numbers into a Trigger campaign in Sending (sent within the next tick)",
        "parameters": [{"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["numbers"], "additionalProperties": False,
            "properties": {"numbers": {"type": "array", "minItems": 1, "maxItems": 1000,
                                       "items": {"type": "string", "maxLength": 32}}}}}}},
        "responses": {
            "200": {"description": "{accepted, duplicates: [index], stop_listed: [index], rejected: [{index, reason}]}",
                    "content": {"application/json": {"schema": {"type": "object", "required": ["accepted"],
                                "properties": {"accepted": {"type": "integer"},
                                               "duplicates": {"type": "array", "items": {"type": "integer"}},
                                               "stop_listed": {"type": "array", "items": {"type": "integer"}},
                                               "rejected": {"type": "array", "items": {"type": "object"}}}}}}},
            "400": error_response("Not a JSON object with numbers"),
            "401": error_response("Missing or invalid token"), "403": error_response("Not allowed"),
            "404": error_response("No such campaign in the token's workspace"),
            "409": error_response("not_accepting: not a Trigger campaign in Sending"),
            "413": error_response("More than 1,000 numbers or body too large"),
            "429": error_response("Rate limit per token (Retry-After)")},
    }},
}
