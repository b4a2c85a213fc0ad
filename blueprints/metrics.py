"""`/metrics` for Prometheus: a bearer token (METRICS_TOKEN) when set, otherwise loopback only
(and never a request that came through a proxy).

Declared public for the session-based access hook; the view does its own check so a scraper
needs no user account. Compare in constant time; never reveal whether the token was close.
"""
import hmac
from typing import Any, cast

from flask import Blueprint, Response, abort, current_app, request

from blueprints.access import public
from services import metrics

bp = Blueprint("metrics", __name__)
LOOPBACK = {"127.0.0.1", "::1"}


def _allowed():
    token = current_app.config["METRICS_TOKEN"]
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
    # Behind nginx every peer is the loopback: a proxied request (it carries X-Forwarded-For or
    # X-Real-IP) is not a local scraper, so without a token it is refused.
    proxied = request.headers.get("X-Forwarded-For") or request.headers.get("X-Real-IP")
    return request.remote_addr in LOOPBACK and not proxied


@bp.get("/metrics")
@public
def scrape():
    if not _allowed():
        abort(403 if current_app.config["METRICS_TOKEN"] else 404)
    # content_type, not mimetype: Flask appends "; charset=utf-8" to a mimetype (it said it twice).
    return Response(metrics.render(cast(Any, current_app)._get_current_object()),
                    content_type="text/plain; version=0.0.4; charset=utf-8",
                    headers={"Cache-Control": "no-store"})
