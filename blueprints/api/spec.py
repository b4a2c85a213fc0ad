"""The OpenAPI 3.1 document of /api/v1, merged from each API module's `PATHS`
(a test checks that every API route is described)."""
import importlib

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(description):
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


CORE_PATHS = {
    "/api/v1/me": {"get": {
        "summary": "The token's owner, workspace and role",
        "responses": {"200": {"description": "Identity"}, "401": _err("Missing or invalid token")},
    }},
    "/api/v1/audit": {"get": {
        "summary": "Audit events of the token's workspace, newest first (admins)",
        "parameters": [
            {"name": n, "in": "query", "schema": {"type": "string"}, "description": d} for n, d in (
                ("actor", "e-mail substring"), ("action", "action prefix, e.g. members."),
                ("object_type", "e.g. membership"), ("object_id", "object id"),
                ("since", "YYYY-MM-DD or ISO-8601"), ("until", "YYYY-MM-DD or ISO-8601"),
                ("cursor", "next_cursor of the previous page"), ("limit", "1-500, default 100"))
        ],
        "responses": {"200": {"description": "{events: [...], next_cursor}"},
                      "400": _err("Bad filter or cursor"), "401": _err("Missing or invalid token"),
                      "403": _err("Role may not read the audit log")},
    }},
    "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1"}}}},
}


def error_response(description):
    return _err(description)


def _all_paths():
    from blueprints.api import API_MODULES

    paths = {path: dict(ops) for path, ops in CORE_PATHS.items()}
    for name in API_MODULES:
        for path, operations in getattr(importlib.import_module(name), "PATHS", {}).items():
            paths.setdefault(path, {}).update(operations)  # several modules may share a path
    return paths


def openapi_document():
    return {
        "openapi": "3.1.0",
        "info": {"title": "Message Center API", "version": "1"},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": _all_paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Personal access token (Workspace › API tokens)"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}},
        },
    }
