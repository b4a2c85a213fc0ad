"""The Overview dashboards (workspace home and the super admin's all-workspaces view), their Live
Pulse JSON, and workspace settings."""
from flask import Blueprint, flash, g, jsonify, redirect, render_template, url_for

from blueprints import flash_error
from blueprints.access import can, superadmin_only, workspace_route
from forms.workspaces import QuotaForm, WorkspaceSettingsForm
from services import charts, dashboard, quotas, timefmt, workspaces
from services import overview as overview_service
from services.errors import DomainError

bp = Blueprint("workspace", __name__)


def _zone():
    return g.workspace.timezone if g.get("workspace") is not None else "UTC"


def _render_dashboard(workspace_ids, **context):
    data = dashboard.dashboard(workspace_ids, tz_name=_zone())
    return render_template("workspace/overview.html", data=data,
                           ring_svg=charts.ring(data["ring"], title="Delivery across active campaigns"),
                           funnel_svg=charts.funnel(data["funnel"]),
                           hourly_svg=charts.hourly(data["hourly"], zone_label=timefmt.zone_label(_zone())),
                           **context)


@bp.get("/w/<slug>/")
@workspace_route("workspace.view")
def overview():
    summary = overview_service.workspace_summary(g.workspace, with_activity=can("audit.view"))
    return _render_dashboard([g.workspace.id], summary=summary,
                             pulse_url=url_for("workspace.pulse", slug=g.workspace.slug))


@bp.get("/w/<slug>/pulse.json")
@workspace_route("workspace.view")
def pulse():
    return jsonify(dashboard.live_pulse([g.workspace.id], tz_name=_zone()))


@bp.get("/admin/overview")
@superadmin_only
def installation_overview():
    return _render_dashboard(None, summary=None, pulse_url=url_for("workspace.installation_pulse"))


@bp.get("/admin/pulse.json")
@superadmin_only
def installation_pulse():
    return jsonify(dashboard.live_pulse(None))


@bp.route("/w/<slug>/settings", methods=["GET", "POST"])
@workspace_route("workspace.settings")
def settings():
    form = WorkspaceSettingsForm(obj=g.workspace)
    if not form.is_submitted():
        form.sending_window.data = g.workspace.sending_window
    if form.validate_on_submit():
        try:
            workspaces.update_settings(g.workspace, name=form.name.data, timezone=form.timezone.data,
                                       sending_window=form.sending_window.data, four_eyes=form.four_eyes.data)
        except DomainError as exc:
            flash_error(exc)
        else:
            flash("Settings saved.", "success")
            return redirect(url_for("workspace.settings", slug=g.workspace.slug))
    quota_form = QuotaForm(daily_messages=_blank(g.workspace.quota_daily_messages),
                           max_recipients_per_campaign=_blank(g.workspace.quota_max_recipients))
    return render_template("workspace/settings.html", form=form, quota_form=quota_form,
                           quota=quotas.today(g.workspace))


def _blank(number):
    return "" if number is None else str(number)
