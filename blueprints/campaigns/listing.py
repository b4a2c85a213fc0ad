"""The campaigns list: filters (period, status, mode, ID / sender search, archived), sortable
Sender / Start / Created columns, bounded pagination."""
from flask import flash, g, render_template, request
from flask_login import current_user

from blueprints.access import workspace_route
from blueprints.campaigns import bp
from models.campaigns import MODES, STATUSES
from services import campaign_queries
from services.errors import DomainError


@bp.get("")
@workspace_route("campaigns.view")
def index():
    filters = campaign_queries.parse_filters(request.args)
    for message in filters.errors.values():
        flash(message, "error")
    try:
        rows, has_next = campaign_queries.list_campaigns(g.workspace, g.membership, current_user, filters)
    except DomainError as exc:
        flash(exc.message, "error")
        rows, has_next = [], False
    return render_template("campaigns/index.html", rows=rows, has_next=has_next, filters=filters,
                           statuses=STATUSES, modes=MODES)
