"""The JSON API under /api/v1/: personal access tokens, JSON errors with a code, an OpenAPI spec.

`@api_route(action)` authenticates `Authorization: Bearer <token>`, acts with the token owner's
role in the token's workspace and checks `action` in the permission table. Request and response
bodies are declared with the schemas of `blueprints/api/schemas/` through the decorators of
`blueprints/api/contract.py`; /api/v1/openapi.json is generated from them (`spec.py`).
"""
import functools
from typing import Any, cast

from flask import Blueprint, g, jsonify, request

from blueprints.access import _mark
from extensions import csrf
from services import permissions, tokens

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # token-authenticated, never cookie-authenticated


def api_error(status, code, message, fields=None):
    """The one shape of every API error; `fields` (name → messages) when the input was wrong."""
    error = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    return jsonify({"error": error}), status


def api_route(action, *, superadmin_only=False):
    """`superadmin_only`: installation endpoints (no workspace role suffices; declared `api:None`)."""
    if action is not None and action not in permissions.PERMISSIONS:
        raise KeyError(f"unknown permission {action!r}")

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
            try:
                row = tokens.authenticate_bearer(presented.strip()) if scheme.lower() == "bearer" else None
            except tokens.TokenRefused as exc:  # expired, revoked, owner must enrol TOTP…
                return api_error(exc.status, exc.code, exc.message)
            if row is None:
                return api_error(401, "unauthorized", "Send a valid personal access token: "
                                                      "Authorization: Bearer <token>.")
            g.api_user, g.api_token, g.workspace = row.user, row, row.workspace
            g.membership = row.user.membership_in(row.workspace_id)
            superadmin = row.user.is_superadmin
            if g.membership is None and not superadmin:
                return api_error(403, "forbidden", "The token's owner is no longer a member of its workspace.")
            if superadmin_only and not superadmin:
                return api_error(403, "forbidden", "Only a super admin's token may use this endpoint.")
            if action and not permissions.allowed(action, g.membership, superadmin=superadmin):
                return api_error(403, "forbidden", f"Your role may not use this endpoint ({action}).")
            # A DomainError escaping the view is answered by app.py's handler, in api_error's shape.
            return view(*args, **kwargs)

        cast(Any, wrapper)._permission = action  # read by the access checks and the API spec
        return _mark(wrapper, f"api:{action}")

    return decorate


# One module per area; each registers its routes on `bp` (spec.py documents them from their declarations).
# They are imported here, below `bp` and `api_route`, because each imports those two from this module
# (E402: an import after the code it needs, on purpose), and in this order, which is the order their
# routes are registered in (isort would sort them).
# isort: off
from blueprints.api import core  # noqa: E402
from blueprints.api import uploads  # noqa: E402
from blueprints.api import senders  # noqa: E402
from blueprints.api import moderation  # noqa: E402
from blueprints.api import campaigns  # noqa: E402
from blueprints.api import trigger  # noqa: E402
from blueprints.api import exports  # noqa: E402
from blueprints.api import evidence  # noqa: E402
from blueprints.api import admin  # noqa: E402
# isort: on

API_MODULES = (core, uploads, senders, moderation, campaigns, trigger, exports, evidence, admin)
