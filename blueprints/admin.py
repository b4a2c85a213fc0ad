"""Super-admin pages: every workspace with its counts, workspace creation, the installation outbox,
system settings, workspace quotas (the form sits on the workspace's settings page)."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error
from blueprints.access import superadmin_only
from forms.workspaces import QuotaForm, SystemSettingForm, WorkspaceForm
from services import invitations, quotas, settings, workspaces
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


@bp.post("/workspaces/<workspace_slug>/quota")
@superadmin_only
def set_quota(workspace_slug):
    form = QuotaForm()
    if form.validate_on_submit():
        try:
            quotas.set_quota(
                workspace_slug,
                daily_messages=quotas.parse_field("daily_messages", form.daily_messages.data),
                max_recipients_per_campaign=quotas.parse_field("max_recipients_per_campaign",
                                                               form.max_recipients_per_campaign.data))
        except DomainError as exc:
            flash_error(exc)
        else:
            flash("Quotas saved.", "success")
    else:
        flash("Quotas not saved: " + "; ".join(e for errors in form.errors.values() for e in errors), "error")
    workspace = workspaces.get_by_slug(workspace_slug)
    return redirect(url_for("workspace.settings", slug=workspace.slug) + "#quotas")
