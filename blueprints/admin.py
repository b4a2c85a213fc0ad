"""Super-admin pages: every workspace with its counts, workspace creation, the installation outbox."""
from flask import Blueprint, flash, redirect, render_template, url_for

from blueprints import flash_error
from blueprints.access import superadmin_only
from forms.workspaces import WorkspaceForm
from services import invitations, workspaces
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
