"""The Monitoring tab: the shipped Grafana dashboards (deploy/grafana/) embedded in an iframe.

Only this response widens the Content-Security-Policy's `frame-src` to GRAFANA_URL's origin;
every other page keeps `frame-src 'self'`. Without GRAFANA_URL the tab explains how to set it up.
"""
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, g, make_response, render_template, request

from blueprints.access import workspace_route

bp = Blueprint("monitoring", __name__, url_prefix="/w/<slug>")

# uid -> title; the JSON files live in deploy/grafana/dashboards/ with these uids.
DASHBOARDS = {"mc-delivery": "Delivery and ESME channels", "mc-platform": "Queues, jobs and audit"}


def grafana_base():
    """GRAFANA_URL without a trailing slash, or None when unset or not http(s)."""
    url = (current_app.config.get("GRAFANA_URL") or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def _origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@bp.get("/monitoring")
@workspace_route("monitoring.view")
def index():
    base = grafana_base()
    uid = request.args.get("dashboard", "mc-delivery")
    if uid not in DASHBOARDS:
        uid = "mc-delivery"
    src = None
    if base:
        src = f"{base}/d/{uid}/?" + urlencode({"orgId": 1, "kiosk": "", "refresh": "30s", "theme": "light"})
    response = make_response(render_template("monitoring/index.html", base=base, src=src, uid=uid,
                                             dashboards=DASHBOARDS,
                                             configured_but_invalid=bool(current_app.config.get("GRAFANA_URL"))
                                             and not base))
    if base:
        from app import CSP

        response.headers["Content-Security-Policy"] = CSP.replace("frame-src 'self'",
                                                                  f"frame-src 'self' {_origin(base)}")
    return response
