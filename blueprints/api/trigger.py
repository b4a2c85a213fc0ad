"""Trigger API: client systems push numbers (e.g. OTPs) into a running Trigger campaign."""
from flask import current_app, g, request

from blueprints.api import api_error, api_route, bp
from blueprints.api.contract import doc, parse_body, respond
from blueprints.api.schemas.trigger import TriggerPush, TriggerResult
from extensions import limiter
from services import campaigns, trigger
from services.errors import Forbidden

MAX_BODY = 256 * 1024  # 1,000 numbers of 15 digits fit many times over


@bp.post("/campaigns/<int:campaign_id>/recipients")
@api_route("recipients.upload")
@doc("Push up to 1,000 numbers into a Trigger campaign in Sending (sent within the next tick)", body=TriggerPush,
     errors={400: "Not a JSON object (invalid_json) or numbers not a list of strings (invalid_numbers)",
             403: "Not allowed", 404: "No such campaign in the token's workspace",
             409: "not_accepting: not a Trigger campaign in Sending",
             413: "More than 1,000 numbers (too_many_numbers) or body too large (too_large)",
             429: "Rate limit per token (Retry-After)"})
@respond(TriggerResult)
@limiter.limit(lambda: f"{current_app.config['TRIGGER_RATE_PER_MINUTE']} per minute",
               key_func=lambda: f"trigger-token:{g.api_token.id}",
               error_message=lambda: f"More than {current_app.config['TRIGGER_RATE_PER_MINUTE']} requests in a "
                                     "minute with this token; retry after the seconds in Retry-After.")
def push_recipients(campaign_id):
    if request.content_length is None or request.content_length > MAX_BODY:
        return api_error(413, "too_large", f"Send a JSON body of at most {MAX_BODY // 1024} KB "
                                           "(1,000 numbers per call).")
    body = parse_body(TriggerPush)  # after the cheap refusals: the rate and the size
    campaign = campaigns.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)
    if not campaigns.is_owner_or_manager(campaign, g.membership, g.api_user):
        raise Forbidden("Only the campaign's author or a workspace admin can push numbers.")
    return trigger.push_numbers(campaign, body["numbers"])
