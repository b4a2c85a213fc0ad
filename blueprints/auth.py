"""Sign-in, sign-out and the account page (password change, own workspaces, join requests).

An account with a second factor is only half signed in after the password: `session["2fa"]`
holds the pending user and `/login/totp` (blueprints/security.py) finishes the sign-in."""
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

import audit
from blueprints import flash_error
from blueprints.access import login_only, public
from extensions import db, limiter
from forms.auth import ChangePasswordForm, ConfirmForm, LoginForm
from models import utcnow
from services import accounts, join_requests, sessions, totp, workspaces
from services.errors import DomainError

bp = Blueprint("auth", __name__)

TOO_MANY_SIGN_INS = "Too many sign-in attempts from your network. Wait a minute and try again."


def refused(exc, template, **context):
    """A refused sign-in step: the page with the message, 401 (503 + Retry-After when busy)."""
    flash_error(exc)
    response = current_app.make_response((render_template(template, **context), exc.status))
    if getattr(exc, "retry_after", None):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def safe_next(target):
    """Only local paths: no scheme, no host, no protocol-relative or backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


@bp.route("/login", methods=["GET", "POST"])
@public
@limiter.limit(lambda: current_app.config["LOGIN_RATE_LIMIT"], methods=["POST"], error_message=TOO_MANY_SIGN_INS)
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or url_for("home.index"))
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(form.email.data, form.password.data)
        except DomainError as exc:
            return refused(exc, "auth/login.html", form=form)
        session.clear()  # new session on sign-in (no fixation)
        if totp.is_enrolled(user):
            # Half signed in: the second step (blueprints/security.py) finishes the sign-in.
            session["2fa"] = {"uid": user.id, "epoch": user.session_epoch, "at": time.time(),
                              "next": safe_next(request.args.get("next"))}
            return redirect(url_for("security.login_totp"))
        login_user(user)
        sessions.start(user)
        return redirect(safe_next(request.args.get("next")) or url_for("home.index"))
    return render_template("auth/login.html", form=form), 400 if form.errors else 200


@bp.post("/logout")
@login_only
def logout():
    audit.record("auth.logout")
    row = sessions.current_row()
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_only
def account():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()  # the User itself: login_user(proxy) would recurse forever
        try:
            accounts.change_password(user, form.current_password.data, form.new_password.data)
        except DomainError as exc:
            flash_error(exc)
        else:
            login_user(user)  # re-issue our session with the new epoch; other sessions end
            sessions.start(user)
            flash("Password changed. Your other sessions were signed out.", "success")
            return redirect(url_for("auth.account"))
    return render_template("auth/account.html", form=form, logout_form=ConfirmForm(),
                           totp_enrolled=totp.is_enrolled(current_user),
                           min_length=accounts.min_password_length(current_user),
                           spaces=workspaces.workspaces_for(current_user),
                           requests=join_requests.requests_of_user(current_user))
