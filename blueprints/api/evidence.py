"""API evidence packs: ask for a campaign's pack, follow it, download the ZIP.

`POST /api/v1/campaigns/<id>/evidence` → 202 {"id", "status_url", …};
`GET /api/v1/evidence/<id>` → {"state", "download_url", "sha256", …};
`GET /api/v1/evidence/<id>/download` → the ZIP (410 `export_expired` after expiry).
Moderators, admins and super admins only (`evidence.create`).
"""
from flask import g, url_for

from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body
from blueprints.api.schemas.evidence import EvidenceCreate, EvidencePack
from models.states import ExportState
from services import evidence as service


def _document(pack):
    out = service.status(pack)
    out["status_url"] = url_for("api.get_evidence", pack_id=pack.id)
    out["download_url"] = url_for("api.download_evidence", pack_id=pack.id) if pack.state == ExportState.DONE else None
    return out


@bp.post("/campaigns/<int:campaign_id>/evidence")
@api_route("evidence.create")
@doc("Build a campaign's evidence pack (queued job): the campaign as approved, who did what, uploads, "
     "delivery totals, audit events with their seal ids, recipients (masked unless the token's owner may "
     "see full numbers) and a manifest of SHA-256s",
     errors={403: "Role may not build evidence packs", 404: "No such campaign in the token's workspace"})
@use_body(EvidenceCreate, required=False)
@respond(EvidencePack, status=202)
def create_evidence(campaign_id, body):
    pack = service.request_pack(g.workspace, campaign_id, g.membership, g.api_user)
    return _document(pack), {"Location": url_for("api.get_evidence", pack_id=pack.id)}


@bp.get("/evidence/<int:pack_id>")
@api_route("evidence.create")
@doc("An evidence pack's state, and its download_url and sha256 when ready",
     errors={404: "No such evidence pack in the token's workspace"})
@respond(EvidencePack)
def get_evidence(pack_id):
    return _document(service.get_pack(g.workspace, pack_id, g.membership, g.api_user))


@bp.get("/evidence/<int:pack_id>/download")
@api_route("evidence.create")
@doc("The evidence pack (ZIP), streamed",
     errors={403: "The pack holds full numbers the token's owner may not see",
             404: "No such evidence pack in the token's workspace", 409: "Not ready yet",
             410: "Expired: file removed (export_expired)"},
     responses={200: {"description": "The ZIP", "content": {service.MIME: {"schema": {"type": "string",
                                                                                       "format": "binary"}}}}})
def download_evidence(pack_id):
    pack = service.open_for_download(g.workspace, pack_id, g.membership, g.api_user)
    return service.send(pack)
