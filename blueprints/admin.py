"""Super-admin pages: every workspace with its counts, workspace creation, the installation outbox,
system settings."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error
from blueprints.access import superadmin_only
from forms.workspaces import SystemSettingForm, WorkspaceForm
from services import invitations, settings, workspaces
from services.errors import DomainError

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/", methods=["GET", "POST"])
@superadmin_only
def index():
    form = WorkspaceForm()
    if form.validate_on_submit():
        try:
            workspace = workspaces.create_workspace(form.slug.data, form.name.data, form.timezone.data,
                                                    form.sending_window.data)
        except DomainError as exc:
            flash_error(exc)
        else:
            flash(f"Workspace {workspace.name} created. Invite its first admin from the members page.", "success")
            return redirect(url_for("members.index", slug=workspace.slug))
    return render_template("admin/index.html", form=form, rows=workspaces.workspaces_overview())


@bp.get("/outbox")
@superadmin_only
def outbox():
    return render_template("members/outbox.html", mails=invitations.outbox_for_display(), scope="installation")


@bp.route("/settings", methods=["GET", "POST"])
@superadmin_only
def system_settings():
    form = SystemSettingForm()
    if form.validate_on_submit():
        try:
            if form.reset.data:
                settings.reset(form.key.data, actor_id=current_user.id)
                flash(f"{form.key.data} uses its default (or the environment) again.", "success")
            else:
                settings.change(form.key.data, form.value.data or "", actor_id=current_user.id)
                flash(f"{form.key.data} saved; every process uses it within "
                      f"{settings.propagation_seconds():g} seconds.", "success")
        except DomainError as exc:
            flash_error(exc)
        else:
            return redirect(url_for("admin.system_settings"))
    elif form.is_submitted():
        flash("Choose a setting and a value.", "error")
    return render_template("admin/settings.html", rows=settings.overview(), form=form,
                           propagation=settings.propagation_seconds())
