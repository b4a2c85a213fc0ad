"""Installation endpoints for super admins' tokens: `PUT /api/v1/admin/workspaces/<workspace_slug>/quota`."""
from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body
from blueprints.api.schemas.admin import Quota, QuotaBody
from services import quotas


# `workspace_slug`, not `slug`: `<slug>` routes act inside the token's workspace (workspace_route).
@bp.put("/admin/workspaces/<workspace_slug>/quota")
@api_route(None, superadmin_only=True)
@doc("Set a workspace's quotas (super admins' tokens only); null removes a quota",
     errors={400: "Not a whole number ≥ 0 or null (invalid_quota), unknown field",
             403: "The token's owner is not a super admin", 404: "No workspace with this slug"})
@use_body(QuotaBody)
@respond(Quota)
def put_quota(workspace_slug, body):
    workspace = quotas.set_quota(workspace_slug, daily_messages=body["daily_messages"],
                                 max_recipients_per_campaign=body["max_recipients_per_campaign"])
    return {"workspace": workspace.slug, **quotas.today(workspace)}
