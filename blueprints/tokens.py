"""Personal access tokens of the signed-in user in one workspace."""
from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error
from blueprints.access import workspace_route
from forms.auth import ConfirmForm
from forms.workspaces import TokenForm
from services import tokens
from services.errors import DomainError

bp = Blueprint("tokens", __name__, url_prefix="/w/<slug>")


@bp.route("/tokens", methods=["GET", "POST"])
@workspace_route("tokens.manage_own")
def index():
    form, created = TokenForm(), None
    if form.validate_on_submit():
        try:
            _, created = tokens.create_token(current_user, g.workspace, form.name.data)
        except DomainError as exc:
            flash_error(exc)
    return render_template("tokens/index.html", form=form, created=created, confirm=ConfirmForm(),
                           tokens=tokens.tokens_of(current_user, g.workspace))


@bp.post("/tokens/<int:token_id>/revoke")
@workspace_route("tokens.manage_own")
def revoke(token_id):
    if ConfirmForm().validate():
        try:
            tokens.revoke(current_user, g.workspace, token_id)
        except DomainError as exc:
            flash_error(exc)
        else:
            flash("Token revoked; programs using it are refused from now on.", "success")
    return redirect(url_for("tokens.index", slug=g.workspace.slug))
