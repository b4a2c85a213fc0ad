"""Accepting an invitation from its link (public: the invitee may not have an account yet)."""
from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_login import current_user, login_user

from blueprints import flash_error
from blueprints.access import public
from forms.auth import AcceptInvitationForm, ConfirmForm
from services import accounts, invitations, sessions
from services.errors import DomainError

bp = Blueprint("invitations", __name__)


@bp.route("/invite/<token>", methods=["GET", "POST"])
@public
def accept(token):
    invitation = invitations.find_by_token(token)  # an unusable link: its own page (link_refused)
    existing = accounts.find_user(invitation.email)
    form = ConfirmForm() if existing else AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            user, workspace = invitations.accept(
                token, current_user=current_user if current_user.is_authenticated else None,
                password=getattr(form, "password", None) and form.password.data,
                name=getattr(form, "name", None) and form.name.data or "")
        except DomainError as exc:
            flash_error(exc)
        else:
            if not current_user.is_authenticated:
                session.clear()  # a new session for the new account (no fixation), as on /login
                login_user(user)
                sessions.start(user)
            flash(f"Welcome to {workspace.name}.", "success")
            return redirect(url_for("workspace.overview", slug=workspace.slug))
    return render_template("invitations/accept.html", invitation=invitation, existing=existing, form=form,
                           token=token, password_min=accounts.min_password_length())


@bp.errorhandler(DomainError)
def link_refused(exc):
    """An invitation link that is unknown, used, revoked or expired: a page saying so (not the
    generic 404), with the refusal's status."""
    return render_template("invitations/invalid.html", message=exc.message), exc.status
