"""Personal access tokens: the signed-in user's own tokens in one workspace (create with a lifetime
and the password, revoke), and for the workspace's admins every member's tokens (revoke)."""
from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error, refusals_go_to
from blueprints.access import can, workspace_route
from forms.auth import ConfirmForm
from forms.workspaces import TokenForm
from services import accounts, tokens
from services.errors import DomainError

bp = Blueprint("tokens", __name__, url_prefix="/w/<slug>")


@bp.route("/tokens", methods=["GET", "POST"])
@workspace_route("tokens.manage_own")
def index():
    form, created, status = TokenForm(), None, 200
    if form.validate_on_submit():
        try:
            _, created = accounts.issue_api_token(current_user._get_current_object(), g.workspace, form.name.data,
                                                  form.days.data, form.password.data)
        except DomainError as exc:
            flash_error(exc)
            status = exc.status
    elif form.errors:
        status = 400
    members_tokens = tokens.workspace_tokens(g.workspace) if can("tokens.manage_members") else None
    return render_template("tokens/index.html", form=form, created=created, confirm=ConfirmForm(),
                           tokens=tokens.tokens_of(current_user, g.workspace), members_tokens=members_tokens,
                           token_state=tokens.state, reason_text=tokens.reason_text,
                           max_days=tokens.max_days()), status


@bp.post("/tokens/<int:token_id>/revoke")
@workspace_route("tokens.manage_own")
@refusals_go_to("tokens.index", missing_too=True)
def revoke(token_id):
    if ConfirmForm().validate():
        tokens.revoke(current_user, g.workspace, token_id)
        flash("Token revoked; programs using it are refused from now on.", "success")
    return redirect(url_for("tokens.index", slug=g.workspace.slug))


@bp.post("/tokens/<int:token_id>/revoke-member")
@workspace_route("tokens.manage_members")
def revoke_member(token_id):
    if ConfirmForm().validate():
        row = tokens.revoke_as_admin(g.workspace, g.membership, token_id, superadmin=current_user.is_superadmin)
        flash(f"Token “{row.name}” of {row.user.email} revoked; programs using it are refused from now on.",
              "success")
    return redirect(url_for("tokens.index", slug=g.workspace.slug))
