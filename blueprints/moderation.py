"""The moderation queue page (tabs Campaigns and Sender revisions), its polling endpoint and the
approve/reject actions. Works on any kind of item through services/moderation.py."""
from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from werkzeug.routing import BuildError

from blueprints import refusals_go_to
from blueprints.access import workspace_route
from forms.auth import ConfirmForm
from models.states import CampaignStatus
from services import moderation

bp = Blueprint("moderation", __name__, url_prefix="/w/<slug>")

POLL_SECONDS = 3


def _campaign_url(campaign_id):
    # The campaign pages come with the campaigns area; link only once they exist.
    if "campaigns.detail" not in current_app.view_functions:
        return None
    try:
        return url_for("campaigns.detail", slug=g.workspace.slug, campaign_id=campaign_id)
    except BuildError:
        return None


def _rows(kind, items):
    """What each queue row needs, computed here so the row macro needs no request context; whether
    Approve/Reject is offered comes from the service (permission and four-eyes over contributors)."""
    rights = moderation.decision_rights(g.workspace, g.membership, current_user, kind.name, items)
    rows = {}
    for item in items:
        if kind.name == "campaign":
            link = _campaign_url(item.id)
        else:
            link = url_for("senders.detail", slug=g.workspace.slug, sender_id=item.sender_id)
        decidable, shaped = rights[item.id]
        rows[item.id] = {"kind": kind.name, "item": item, "data": kind.serialize(item), "link": link,
                         "decidable": decidable, "own": shaped,
                         "approve_url": _decision_url(kind.name, "approve", item.id),
                         "reject_url": _decision_url(kind.name, "reject", item.id)}
    return rows


def _decision_url(kind_name, decision, item_id):
    if kind_name == "campaign":
        return url_for(f"moderation.{decision}_campaign", slug=g.workspace.slug, campaign_id=item_id)
    return url_for(f"moderation.{decision}_revision", slug=g.workspace.slug, revision_id=item_id)


@bp.get("/moderation")
@workspace_route("moderation.view")
def index():
    kind = moderation.kind_for_tab(request.args.get("tab"))
    items = moderation.items(g.workspace, kind.name)
    return render_template("moderation/index.html", kind=kind, kinds=list(moderation.KINDS.values()),
                           counts=moderation.counts(g.workspace), rows=list(_rows(kind, items).values()),
                           limit=moderation.QUEUE_LIMIT, poll_seconds=POLL_SECONDS)


@bp.get("/moderation/queue.json")
@workspace_route("moderation.view")
def queue_state():
    """Polled every few seconds by static/js/moderation.js: counts per tab, the ids still waiting in
    this tab, and the rendered rows of ids the page does not show yet (`known` = ids it shows)."""
    kind = moderation.kind_for_tab(request.args.get("tab"))
    known = {int(v) for v in request.args.get("known", "").split(",") if v.strip().isdigit()}
    items = moderation.items(g.workspace, kind.name)
    row_macro = get_template_attribute("moderation/_rows.html", "row")
    rows = _rows(kind, [i for i in items if i.id not in known])
    return jsonify({
        "kind": kind.name, "counts": moderation.counts(g.workspace), "ids": [i.id for i in items],
        "rows": {str(item_id): str(row_macro(row)) for item_id, row in rows.items()},
    })


def _back(kind_name):
    return redirect(url_for("moderation.index", slug=g.workspace.slug, tab=moderation.get_kind(kind_name).tab))


def _decide(kind_name, item_id, decision):
    note = request.form.get("note", "")
    seen = request.form.get("seen") or None  # the submission the row showed (campaigns)
    if not ConfirmForm().validate():  # CSRF is checked globally; this keeps the form contract explicit
        return _back(kind_name)
    # Another workspace's or an unknown item: the 404 page; a refusal: a flash on the queue's tab (app.py).
    with refusals_go_to("moderation.index", tab=moderation.get_kind(kind_name).tab):
        item = moderation.decide(g.workspace, kind_name, item_id, decision, g.membership, current_user, note=note,
                                 seen=seen)
    flash(_done_message(kind_name, item, decision), "success")
    return _back(kind_name)


def _done_message(kind_name, item, decision):
    if kind_name == "campaign":
        if decision == "reject":
            return f"Rejected campaign “{item.name}”; it is back with its author as New, with your note."
        if item.status == CampaignStatus.SENDING:
            return f"Approved campaign “{item.name}”; it is sending now."
        start = "a manual start" if not item.auto_start else f"its {item.mode} start"
        return f"Approved campaign “{item.name}”; it waits for {start}."
    if decision == "reject":
        return (f"Rejected revision #{item.number} of “{item.sender.label}” ({item.saddr}); the author sees "
                "your note on the sender name's page.")
    return (f"Approved revision #{item.number} of “{item.sender.label}”: {item.saddr} is now its current SADDR "
            "for new campaigns.")


@bp.post("/moderation/campaigns/<int:campaign_id>/approve")
@workspace_route("moderation.decide")
def approve_campaign(campaign_id):
    return _decide("campaign", campaign_id, "approve")


@bp.post("/moderation/campaigns/<int:campaign_id>/reject")
@workspace_route("moderation.decide")
def reject_campaign(campaign_id):
    return _decide("campaign", campaign_id, "reject")


@bp.post("/moderation/sender-revisions/<int:revision_id>/approve")
@workspace_route("moderation.decide")
def approve_revision(revision_id):
    return _decide("sender_revision", revision_id, "approve")


@bp.post("/moderation/sender-revisions/<int:revision_id>/reject")
@workspace_route("moderation.decide")
def reject_revision(revision_id):
    return _decide("sender_revision", revision_id, "reject")
