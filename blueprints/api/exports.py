"""API exports: start an export of a campaign's delivery records, follow it, download the file.

`POST /api/v1/campaigns/<id>/exports` {"format": "csv"|"txt"} → 202 with the export;
`GET /api/v1/exports/<id>` → state, rows, progress and `download_url` when ready;
`GET /api/v1/exports/<id>/download` → the file (410 `export_expired` after expiry).
"""
from flask import g, url_for

from blueprints.api import api_route, bp
from blueprints.api.contract import doc, respond, use_body
from blueprints.api.schemas.exports import Export, ExportCreate
from blueprints.exports import _progress
from models.states import ExportState
from services import exports as service


def _document(export):
    out = service.status(export, _progress(export))
    out["status_url"] = url_for("api.get_export", export_id=export.id)
    done = export.state == ExportState.DONE
    out["download_url"] = url_for("api.download_export", export_id=export.id) if done else None
    return out


@bp.post("/campaigns/<int:campaign_id>/exports")
@api_route("exports.create")
@doc("Export a campaign's delivery records (queued job); numbers masked unless the token's owner may see "
     "full numbers", errors={400: "Unknown format (bad_format) or not a JSON object",
                             404: "No such campaign in the token's workspace"})
@use_body(ExportCreate)
@respond(Export, status=202)
def create_export(campaign_id, body):
    export = service.request_export(g.workspace, campaign_id, body["format"], g.membership, g.api_user)
    return _document(export), {"Location": url_for("api.get_export", export_id=export.id)}


@bp.get("/exports/<int:export_id>")
@api_route("exports.download")
@doc("An export's state, rows written and download_url when ready",
     errors={404: "No such export in the token's workspace"})
@respond(Export)
def get_export(export_id):
    return _document(service.get_export(g.workspace, export_id, g.membership, g.api_user))


_FILE = {"schema": {"type": "string", "format": "binary"}}


@bp.get("/exports/<int:export_id>/download")
@api_route("exports.download")
@doc("The export file (CSV or tab-separated TXT), streamed",
     errors={403: "The export holds full numbers the token's owner may not see",
             404: "No such export in the token's workspace", 409: "Not ready yet",
             410: "Expired: file removed (export_expired)"},
     responses={200: {"description": "The file", "content": {mime: _FILE for mime in service.MIME.values()}}})
def download_export(export_id):
    export = service.open_for_download(g.workspace, export_id, g.membership, g.api_user)
    return service.file_response(export)
