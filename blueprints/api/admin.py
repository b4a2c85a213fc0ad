"""Installation endpoints for super admins' tokens: `PUT /api/v1/admin/workspaces/<slug>/quota`."""
from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body
from blueprints.api.schemas.admin import Quota, QuotaBody
from services import quotas


@bp.put("/admin/workspaces/<slug>/quota")
@api_route(None, superadmin_only=True)
@doc("Set a workspace's quotas (super admins' tokens only); null removes a quota",
     errors={400: "Not a whole number ≥ 0 or null (invalid_quota), unknown field",
             403: "The token's owner is not a super admin", 404: "No workspace with this slug"})
@use_body(QuotaBody)
@respond(Quota)
def put_quota(slug, body):
    workspace = quotas.set_quota(slug, daily_messages=body["daily_messages"],
                                 max_recipients_per_campaign=body["max_recipients_per_campaign"])
    return {"workspace": workspace.slug, **quotas.today(workspace)}
