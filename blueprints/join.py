"""Self-service join: ask to join a workspace by its slug and follow your requests."""
from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from blueprints import flash_error
from blueprints.access import login_only
from forms.workspaces import JoinForm
from services import join_requests
from services.errors import DomainError

bp = Blueprint("join", __name__)


@bp.route("/join", methods=["GET", "POST"])
@login_only
def index():
    form = JoinForm()
    if form.validate_on_submit():
        try:
            join = join_requests.request_to_join(current_user, form.slug.data, form.message.data)
        except DomainError as exc:
            flash_error(exc)
        else:
            flash(f"Request sent to the admins of {join.workspace.name}.", "success")
            return redirect(url_for("join.index"))
    return render_template("join/index.html", form=form, requests=join_requests.requests_of_user(current_user))
