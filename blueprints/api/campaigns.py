"""API: campaigns — create (all wizard fields at once), list with the page's filters, read, and the
lifecycle actions. Same services and rules as the pages: an illegal change answers 409
`illegal_transition`, a missing permission 403, another workspace's id 404, a wrong field 400
`invalid_fields` naming it."""
from flask import g

from blueprints.api import api_route, bp
from blueprints.api.contract import InvalidInput, doc, respond, use_body, use_query
from blueprints.api.schemas.campaigns import (
    Campaign,
    CampaignCreate,
    CampaignListQuery,
    CampaignPage,
    CampaignRestore,
    CampaignRetry,
    RetryCreated,
)
from services import campaign_queries as queries
from services import campaigns as lifecycle
from services import retry
from services.campaign_drafts import persistence as drafts
from services.errors import NotFound

API_ACTIONS = ("submit", "start", "pause", "resume", "cancel", "archive")  # and restore, with its own body

_ACTION_ERRORS = {403: "Not your campaign, or four-eyes", 404: "No such campaign visible to you",
                  409: "illegal_transition, changed_meanwhile or owner_required"}


@bp.get("/campaigns")
@api_route("campaigns.view")
@doc("Campaigns with the list page's filters (authors see their own)",
     errors={400: "Bad filter (invalid_<parameter>) or page out of range (page_out_of_range)"})
@use_query(CampaignListQuery)
@respond(CampaignPage)
def list_campaigns(query):
    filters = queries.parse_filters(query)
    if filters.errors:
        key, message = next(iter(filters.errors.items()))
        raise InvalidInput(message, {key: [message]}, code=f"invalid_{key}")
    rows, has_next = queries.list_campaigns(g.workspace, g.membership, g.api_user, filters)
    return {"campaigns": rows, "page": filters.page, "has_next": has_next}


@bp.post("/campaigns")
@api_route("campaigns.create")
@doc("Create a draft campaign (status New) with every wizard field at once",
     errors={400: "invalid_fields: error.fields names each wrong field", 403: "Role may not create campaigns"})
@use_body(CampaignCreate)
@respond(Campaign, status=201)
def create_campaign(body):
    return drafts.create_complete(g.workspace, g.membership, g.api_user, body)


@bp.get("/campaigns/<int:campaign_id>")
@api_route("campaigns.view")
@doc("One campaign: status, moderation, counters, the text's encoding (GSM-7/UCS-2) and segments",
     errors={404: "No such campaign visible to you"})
@respond(Campaign)
def get_campaign(campaign_id):
    return lifecycle.get_campaign(g.workspace, campaign_id, g.membership, g.api_user)


@bp.post("/campaigns/<int:campaign_id>/<action>")
@api_route("campaigns.view")
@doc("{Action} the campaign (the transition table's rules)", path_values={"action": API_ACTIONS},
     errors=_ACTION_ERRORS)
@respond(Campaign)
def campaign_action(campaign_id, action):
    if action not in API_ACTIONS:
        raise NotFound(f"Unknown action {action!r}; use one of {', '.join(API_ACTIONS)} or restore.")
    return lifecycle.perform(g.workspace, campaign_id, action, g.membership, g.api_user)


@bp.post("/campaigns/<int:campaign_id>/restore")
@api_route("campaigns.view")
@doc("Restore an archived campaign — body {owner_id} when the author is no longer a member",
     errors=_ACTION_ERRORS)
@use_body(CampaignRestore, required=False)
@respond(Campaign)
def restore_campaign(campaign_id, body):
    if body.get("owner_id") is not None:
        return lifecycle.restore_with_owner(g.workspace, campaign_id, body["owner_id"], g.membership, g.api_user)
    return lifecycle.perform(g.workspace, campaign_id, "restore", g.membership, g.api_user)


@bp.post("/campaigns/<int:campaign_id>/retry")
@api_route("campaigns.view")
@doc("Send again to failed numbers: a new draft linked to this finished campaign, holding the recipients "
     "whose last state is a failure of the class `which` (never a delivered one)",
     errors={400: "invalid_fields: `which` is not temporary, failed or expired",
             403: "Not your campaign", 404: "No such campaign visible to you",
             409: "illegal_transition (not finished) or nothing_to_retry (no recipient in that class)"})
@use_body(CampaignRetry)
@respond(RetryCreated, status=201)
def retry_campaign(campaign_id, body):
    draft, recipients = retry.retry_failed(g.workspace, campaign_id, body["which"], g.membership, g.api_user)
    return {"id": draft.id, "recipients": recipients}
