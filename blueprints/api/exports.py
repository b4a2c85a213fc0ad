"""API exports: start an export of a campaign's delivery records, follow it, download the file.

`POST /api/v1/campaigns/<id>/exports` {"format": "csv"|"txt"} → 202 with the export;
`GET /api/v1/exports/<id>` → state, rows, progress and `download_url` when ready;
`GET /api/v1/exports/<id>/download` → the file (410 `export_expired` after expiry).
"""
from flask import g, jsonify, request, send_file, url_for

from blueprints.api import api_error, api_route, bp
from blueprints.api.spec import error_response
from blueprints.exports import _progress
from services import exports as service


def _document(export):
    out = service.status(export, _progress(export))
    out["status_url"] = url_for("api.get_export", export_id=export.id)
    out["download_url"] = url_for("api.download_export", export_id=export.id) if export.state == "done" else None
    return out


@bp.post("/campaigns/<int:campaign_id>/exports")
@api_route("exports.create")
def create_export(campaign_id):
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return api_error(400, "invalid_json", 'Send a JSON object: {"format": "csv"} or {"format": "txt"}.')
    export = service.request_export(g.workspace, campaign_id, body.get("format"), g.membership, g.api_user)
    response = jsonify(_document(export))
    response.headers["Location"] = url_for("api.get_export", export_id=export.id)
    return response, 202


@bp.get("/exports/<int:export_id>")
@api_route("exports.download")
def get_export(export_id):
    return jsonify(_document(service.get_export(g.workspace, export_id, g.membership, g.api_user)))


@bp.get("/exports/<int:export_id>/download")
@api_route("exports.download")
def download_export(export_id):
    export = service.open_for_download(g.workspace, export_id, g.membership, g.api_user)
    return send_file(export.path, mimetype=service.MIME[export.format], as_attachment=True,
                     download_name=service.download_name(export), conditional=True, max_age=0)


_EXPORT = ("{id, campaign_id, format, state: queued|running|done|failed|expired, rows, unmasked, error, "
           "created_at, finished_at, expires_at, progress, status_url, download_url}")

PATHS = {
    "/api/v1/campaigns/{campaign_id}/exports": {"post": {
        "summary": "Export a campaign's delivery records (queued job); numbers masked unless the token's "
                   "owner may see full numbers",
        "parameters": [{"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["format"],
            "properties": {"format": {"type": "string", "enum": list(service.FORMATS)}}}}}},
        "responses": {"202": {"description": _EXPORT}, "400": error_response("Unknown format or not JSON"),
                      "401": error_response("Missing or invalid token"),
                      "404": error_response("No such campaign in the token's workspace")},
    }},
    "/api/v1/exports/{export_id}": {"get": {
        "summary": "An export's state, rows written and download_url when ready",
        "parameters": [{"name": "export_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": {"description": _EXPORT}, "401": error_response("Missing or invalid token"),
                      "404": error_response("No such export in the token's workspace")},
    }},
    "/api/v1/exports/{export_id}/download": {"get": {
        "summary": "The export file (CSV or tab-separated TXT), streamed",
        "parameters": [{"name": "export_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": {"description": "The file"}, "401": error_response("Missing or invalid token"),
                      "403": error_response("The export holds full numbers the token's owner may not see"),
                      "404": error_response("No such export in the token's workspace"),
                      "409": error_response("Not ready yet"), "410": error_response("Expired: file removed")},
    }},
}
