"""The Monitoring tab: the shipped Grafana dashboards (deploy/grafana/) embedded in an iframe.

Least information: a workspace's tab (`/w/<slug>/monitoring`, admins) embeds only the one-workspace
dashboard with `var-workspace` set to that workspace; the installation-wide dashboards (every
workspace's messages, queues, workers, the Core's channels) are on `/admin/monitoring` for super
admins. Grafana enforces nothing here by itself: give workspace admins' Grafana accounts access
to the mc-workspace dashboard only (docs/operations.md).

Only this response widens the Content-Security-Policy's `frame-src` to GRAFANA_URL's origin;
every other page keeps `frame-src 'self'`. Without GRAFANA_URL the tab explains how to set it up.
"""
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, g, make_response, render_template, request, url_for

from blueprints import CSP
from blueprints.access import superadmin_only, workspace_route

bp = Blueprint("monitoring", __name__)

# uid -> title; the JSON files live in deploy/grafana/dashboards/ with these uids.
DASHBOARDS = {"mc-delivery": "Delivery and ESME channels", "mc-platform": "Queues, jobs and audit"}
WORKSPACE_DASHBOARD = ("mc-workspace", "This workspace")


def grafana_base():
    """GRAFANA_URL without a trailing slash, or None when unset or not http(s)."""
    url = (current_app.config["GRAFANA_URL"] or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def _origin(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _render(dashboards, uid, tab_url, variables=None):
    base = grafana_base()
    src = None
    if base:
        query = {"orgId": 1, "kiosk": "", "refresh": "30s", "theme": "light"}
        query.update({f"var-{k}": v for k, v in (variables or {}).items()})
        src = f"{base}/d/{uid}/?" + urlencode(query)
    tabs = [(key, title, tab_url(key)) for key, title in dashboards.items()]
    response = make_response(render_template("monitoring/index.html", base=base, src=src, uid=uid, tabs=tabs,
                                             title=dashboards[uid],
                                             configured_but_invalid=bool(current_app.config["GRAFANA_URL"])
                                             and not base))
    if base:
        response.headers["Content-Security-Policy"] = CSP.replace("frame-src 'self'",
                                                                  f"frame-src 'self' {_origin(base)}")
    return response


@bp.get("/w/<slug>/monitoring")
@workspace_route("monitoring.view")
def index():
    uid, title = WORKSPACE_DASHBOARD
    return _render({uid: title}, uid, lambda key: url_for("monitoring.index", slug=g.workspace.slug),
                   variables={"workspace": g.workspace.slug})


@bp.get("/admin/monitoring")
@superadmin_only
def installation():
    uid = request.args.get("dashboard", "mc-delivery")
    if uid not in DASHBOARDS:
        uid = "mc-delivery"
    return _render(DASHBOARDS, uid, lambda key: url_for("monitoring.installation", dashboard=key))
