"""The OpenAPI 3.1 document of /api/v1, generated — never kept by hand.

Every /api/v1 rule of the URL map is described from its view's declarations (`blueprints/api/contract.py`:
`use_body`, `use_query`, `respond`, `doc`) by apispec's MarshmallowPlugin, so the schemas that validate a
request and shape a response are the ones the document shows. The errors every API view can answer
(401 from `@api_route`, 400/413/415 for a body, 404 for an id in the path) are added here once.
"""
import functools
import inspect
import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app

from blueprints.api.schemas import Error
from services.permissions import PERMISSIONS

OPENAPI_VERSION = "3.1.0"
PREFIX = "/api/v1/"
VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
PATH_INT_MAX = 2**31 - 1  # BoundedIntConverter (app.py): a larger id is simply not found
_ERROR = {"$ref": "#/components/schemas/Error"}

# One tag per area (generated clients group their methods by it): name, description.
TAGS = {
    "Account": "The token itself and this document.",
    "Audit": "The workspace's audit trail.",
    "Campaigns": "Campaigns: create, read, and move through their lifecycle (submit, start, pause, resume, "
                 "cancel, archive, restore).",
    "Recipients": "Recipient lists: raw uploads with their progress, the stored recipients, and Trigger pushes.",
    "Sender names": "Sender names (SADDR/TON/NPI) and their moderated revisions.",
    "Moderation": "The moderators' queue: approve or reject campaigns and sender names.",
    "Exports": "Exports of a campaign's delivery records and their download.",
    "Evidence packs": "A campaign's evidence pack: everything about it in one ZIP with a SHA-256 manifest.",
    "Administration": "The installation, for super admins' tokens: workspace quotas.",
}
# The area of each API module (blueprints/api/*.py); the few endpoints of a module that belong
# elsewhere are named in ENDPOINT_TAGS.
MODULE_TAGS = {
    "blueprints.api.core": "Account", "blueprints.api.campaigns": "Campaigns", "blueprints.api.uploads": "Recipients",
    "blueprints.api.trigger": "Recipients", "blueprints.api.senders": "Sender names",
    "blueprints.api.moderation": "Moderation", "blueprints.api.exports": "Exports",
    "blueprints.api.evidence": "Evidence packs", "blueprints.api.admin": "Administration",
}
ENDPOINT_TAGS = {"api.audit_feed": "Audit"}


def _tag(endpoint, view):
    module = getattr(inspect.unwrap(view), "__module__", "")
    tag = ENDPOINT_TAGS.get(endpoint) or MODULE_TAGS.get(module)
    if tag is None:
        raise KeyError(f"{endpoint} ({module}): no OpenAPI tag; add its module to MODULE_TAGS")
    return tag


def _description(view, api, summary):
    """What a client needs beyond the summary, from the view's declarations (so it cannot drift):
    who may call it, what the body is, then any prose the view's `doc(description=…)` adds."""
    parts = [summary.rstrip(".") + "."]
    if api.get("description"):
        parts.append(api["description"])
    action = getattr(view, "_permission", None)
    if not hasattr(view, "_permission"):
        parts.append("Public: no token needed.")
    elif action is None:
        parts.append("Any valid token of a current workspace member.")
    else:
        roles = ", ".join(sorted(PERMISSIONS[action]))
        parts.append(f"Permission `{action}`: roles {roles} (and super admins).")
    if api.get("body"):
        parts.append("The body is a JSON object; unknown fields are refused (invalid_fields).")
    if api.get("query"):
        parts.append("Unknown query parameters are ignored.")
    return "\n\n".join(parts)


def _error(description):
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _responses(view, api, has_path_variables):
    secured = hasattr(view, "_permission")
    default = {}
    if api.get("body") or api.get("query"):
        default[400] = "Invalid input: invalid_json, invalid_fields (error.fields names each) or the field's own code"
    if secured:
        default[401] = "Missing or invalid token"
        default[403] = "The token's role may not use this endpoint, or its owner left the workspace"
    if has_path_variables:
        default[404] = "Not found (or another workspace's)"
    if api.get("body"):
        default[413] = "Body larger than allowed (too_large)"
        default[415] = "Body is not JSON (unsupported_media_type)"
    responses = {str(status): _error(text) for status, text in {**default, **api.get("errors", {})}.items()}
    if "response" in api:
        status, schema, description = api["response"]
        responses[str(status)] = {"description": description.strip() or "OK",
                                  "content": {"application/json": {"schema": schema}}}
    responses.update({str(k): v for k, v in api.get("raw_responses", {}).items()})
    return responses


def _operation(endpoint, view, path_names, fixed):
    api = getattr(view, "_api", {})
    summary = api.get("summary", view.__doc__ or endpoint)
    for name, value in fixed.items():
        summary = summary.replace("{" + name + "}", value).replace("{" + name.capitalize() + "}", value.capitalize())
    parameters = [{"name": name, "in": "path", "required": True, "schema": schema}
                  for name, schema in path_names.items() if name not in fixed]
    parameters += api.get("parameters", [])
    if api.get("query"):
        parameters.append({"in": "query", "schema": api["query"]})
    operation = {"summary": summary, "description": _description(view, api, summary),
                 "operationId": "_".join([endpoint.split(".")[-1], *fixed.values()]),
                 "tags": [_tag(endpoint, view)], "responses": _responses(view, api, bool(path_names))}
    if parameters:
        operation["parameters"] = parameters
    if api.get("body"):
        operation["requestBody"] = {"required": api["body_required"],
                                    "content": {"application/json": {"schema": api["body"]}}}
    elif api.get("request_body"):
        operation["requestBody"] = api["request_body"]
    if not hasattr(view, "_permission"):
        operation["security"] = []
    return operation


def _fill_path_value(fixed, match):
    """A path variable's fixed value, or the variable itself (`{name}`) when it has none."""
    return fixed.get(match.group(2), "{" + match.group(2) + "}")


def _expansions(path_values, names):
    """Every combination of the fixed values of `path_values` (one path per value)."""
    combos: list[dict] = [{}]
    for name in names:
        if name in path_values:
            combos = [{**c, name: value} for c in combos for value in path_values[name]]
    return combos


def build(app):
    spec = APISpec(title="Message Center API", version="1", openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Personal access tokens (Authorization: Bearer …) act with the token "
                                        "owner's role in one workspace. Errors: {\"error\": {\"code\", \"message\", "
                                        "\"fields\"}}. Request bodies refuse unknown fields; query strings ignore "
                                        "unknown parameters."},
                   servers=[{"url": "/"}], security=[{"bearer": []}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "Personal access token (Workspace › API tokens)"})
    spec.components.schema("Error", schema=Error)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        api = getattr(view, "_api", {})
        names = {}
        for converter, name in VARIABLE.findall(rule.rule):
            names[name] = ({"type": "integer", "minimum": 0, "maximum": PATH_INT_MAX} if converter == "int"
                           else api.get("path_schemas", {}).get(name, {"type": "string"}))
        for fixed in _expansions(api.get("path_values", {}), names):
            path = VARIABLE.sub(functools.partial(_fill_path_value, fixed), rule.rule)
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, view, names, fixed)
    for name, description in TAGS.items():
        spec.tag({"name": name, "description": description})
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def openapi_document():
    """The document for the running app (built once: the URL map does not change after start-up)."""
    if "api_openapi" not in current_app.extensions:
        current_app.extensions["api_openapi"] = build(current_app)
    return current_app.extensions["api_openapi"]
