"""Workspace home and settings."""
from flask import Blueprint, flash, g, redirect, render_template, url_for

from blueprints import flash_error
from blueprints.access import workspace_route
from forms.workspaces import WorkspaceSettingsForm
from services import overview as overview_service
from services import workspaces
from services.errors import DomainError

bp = Blueprint("workspace", __name__, url_prefix="/w/<slug>")


@bp.get("/")
@workspace_route("workspace.view")
def overview():
    return render_template("workspace/overview.html", summary=overview_service.workspace_summary(g.workspace))


@bp.route("/settings", methods=["GET", "POST"])
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
    return render_template("workspace/settings.html", form=form)
