"""Two-step sign-in (set-up at /account/totp, second step at /login/totp), the list of signed-in
sessions with "sign out everywhere" (/account/sessions), and GDPR mode on a workspace's settings.

Two hooks run before every request: `check_session` signs out a browser whose session was revoked
or ended by an epoch change; `require_second_factor` sends an admin without a second factor to the
set-up page when the installation requires one (TOTP_REQUIRED_FOR_ADMINS).
"""
import time

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from blueprints import refusals_go_to
from blueprints.access import is_public, login_only, public, workspace_route
from blueprints.auth import TOO_MANY_SIGN_INS, refused
from extensions import limiter
from forms.auth import (
    ConfirmForm,
    GdprEnableForm,
    SecondFactorForm,
    TotpConfirmForm,
    TotpDisableForm,
)
from services import accounts, gdpr, sessions
from services import totp as totp_service
from services.errors import DomainError

bp = Blueprint("security", __name__)

PENDING_SECONDS = 300  # the second step must follow the password within five minutes
# Reachable by an admin who has not set up the required second factor yet.
ENROLMENT_ENDPOINTS = {"security.totp", "security.totp_start", "security.totp_confirm", "auth.logout", "static"}


# --- hooks ---------------------------------------------------------------------------------------

def _is_api():
    return request.path.startswith("/api/")


def check_session():
    """before_request (registered in app.py): a revoked or expired signed-in session ends here."""
    if request.endpoint in (None, "static") or _is_api() or not current_user.is_authenticated:
        return None
    if sessions.check(current_user._get_current_object()):
        g.session_checked = True
        return None
    logout_user()
    session.clear()
    flash("Your session has ended. Please sign in again.", "info")
    if is_public(request.endpoint):
        return None
    return redirect(url_for("auth.login"))


def require_second_factor():
    """before_request (registered in app.py): admins without a required second factor set it up first."""
    if (request.endpoint in (None,) or request.endpoint in ENROLMENT_ENDPOINTS or _is_api()
            or not current_user.is_authenticated):
        return None
    user = current_user._get_current_object()
    if totp_service.required_for(user) and not totp_service.is_enrolled(user):
        if is_public(request.endpoint) and request.method == "GET" and request.endpoint != "auth.login":
            return None  # health checks, invitation pages
        flash("This installation requires two-step sign-in for admins. Set it up to continue.", "info")
        return redirect(url_for("security.totp"))
    return None


def touch_session(response):
    """after_request (registered in app.py): a checked session's last-seen time moves on."""
    if g.get("session_checked") and request.method == "GET" and response.status_code == 200:
        sessions.touch(current_user._get_current_object())
    return response


# --- second step of the sign-in ------------------------------------------------------------------

def _pending():
    pending = session.get("2fa")
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop("2fa", None)
        return None
    return pending


@bp.route("/login/totp", methods=["GET", "POST"])
@public
@limiter.limit(lambda: current_app.config["TOTP_RATE_LIMIT"], methods=["POST"], error_message=TOO_MANY_SIGN_INS)
def login_totp():
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    pending = _pending()
    if pending is None:
        flash("Sign in with your password first (the second step expires after five minutes).", "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    if form.validate_on_submit():
        try:
            user = accounts.complete_second_factor(pending["uid"], form.code.data)
        except DomainError as exc:
            return refused(exc, "security/login_totp.html", form=form)
        if user.session_epoch != pending.get("epoch"):
            session.clear()  # the password changed meanwhile: start again
            return redirect(url_for("auth.login"))
        target = pending.get("next")
        session.clear()  # new session (no fixation)
        login_user(user)
        sessions.start(user)
        return redirect(target or url_for("home.index"))
    return render_template("security/login_totp.html", form=form), 400 if form.errors else 200


# --- set-up ----------------------------------------------------------------------------------------

def _user():
    return current_user._get_current_object()


def _reissue(user):
    """After a privilege change of this account: this browser gets a new session id and epoch."""
    login_user(user)
    sessions.start(user)


@bp.get("/account/totp", endpoint="totp")
@login_only
def totp_page():
    user = _user()
    enrolled = totp_service.is_enrolled(user)
    secret = None if enrolled else totp_service.pending_secret(user)
    qr = uri = None
    if secret:
        uri = totp_service.provisioning_uri(user, secret)
        qr = totp_service.qr_data_uri(uri)
    return render_template("security/totp.html", enrolled=enrolled, secret=secret, qr=qr, uri=uri,
                           start_form=ConfirmForm(), confirm_form=TotpConfirmForm(), disable_form=TotpDisableForm(),
                           regenerate_form=SecondFactorForm(), required=totp_service.required_for(user),
                           codes_left=totp_service.remaining_recovery_codes(user) if enrolled else 0,
                           password_min=accounts.min_password_length(),
                           totp_min=totp_service.totp_min_password_length())


@bp.post("/account/totp/start")
@login_only
@refusals_go_to("security.totp")
def totp_start():
    if ConfirmForm().validate_on_submit():
        totp_service.begin_enrolment(_user())
    return redirect(url_for("security.totp"))


def _show_codes(codes, what):
    return render_template("security/recovery_codes.html", codes=codes, what=what)


@bp.post("/account/totp/confirm")
@login_only
@refusals_go_to("security.totp")
def totp_confirm():
    form = TotpConfirmForm()
    if form.validate_on_submit():
        user = _user()
        codes = totp_service.confirm_enrolment(user, form.code.data)
        _reissue(user)
        return _show_codes(codes, "Two-step sign-in is on.")
    return redirect(url_for("security.totp"))


@bp.post("/account/totp/recovery-codes")
@login_only
@refusals_go_to("security.totp")
def totp_regenerate():
    form = SecondFactorForm()
    if form.validate_on_submit():
        codes = totp_service.regenerate_recovery_codes(_user(), form.code.data)
        return _show_codes(codes, "New recovery codes: the old ones no longer work.")
    return redirect(url_for("security.totp"))


@bp.post("/account/totp/disable")
@login_only
@refusals_go_to("security.totp")
def totp_disable():
    form = TotpDisableForm()
    if form.validate_on_submit():
        user = _user()
        totp_service.disable(user, form.password.data, form.code.data, form.new_password.data or None)
        _reissue(user)
        flash("Two-step sign-in is off. Your other sessions were signed out.", "success")
        return redirect(url_for("auth.account"))
    return redirect(url_for("security.totp"))


# --- sessions --------------------------------------------------------------------------------------

@bp.get("/account/sessions")
@login_only
def sessions_page():
    current = sessions.current_row()
    return render_template("security/sessions.html", rows=sessions.active_sessions(_user()),
                           current_id=current.id if current else None, form=ConfirmForm())


@bp.post("/account/sessions/<int:session_id>/revoke")
@login_only
def revoke_session(session_id):
    if ConfirmForm().validate_on_submit():
        sessions.revoke(_user(), session_id)  # another user's or an unknown session: the 404 page (app.py)
        flash("That session is signed out.", "success")
    return redirect(url_for("security.sessions_page"))


@bp.post("/account/sessions/revoke-all")
@login_only
def revoke_all_sessions():
    if ConfirmForm().validate_on_submit():
        sessions.revoke_all(_user())
        logout_user()
        session.clear()
        flash("You are signed out everywhere, including this browser.", "info")
        return redirect(url_for("auth.login"))
    return redirect(url_for("security.sessions_page"))


# --- GDPR mode on the workspace settings page ------------------------------------------------------

def gdpr_helpers():
    """Context processor (registered in app.py): the GDPR card of the workspace settings page."""
    def gdpr_settings():
        workspace = g.get("workspace")
        return gdpr.settings_for(workspace) if workspace is not None else None

    def gdpr_form():
        form = GdprEnableForm()
        if form.retention_days.data is None:
            form.retention_days.data = gdpr.default_retention_days()
        return form

    return {"gdpr_settings": gdpr_settings, "gdpr_form": gdpr_form}


@bp.post("/w/<slug>/settings/gdpr")
@workspace_route("workspace.settings")
@refusals_go_to("workspace.settings")
def enable_gdpr():
    form = GdprEnableForm()
    if form.validate_on_submit():
        gdpr.enable(g.workspace, _user(), form.retention_days.data)
        flash("GDPR mode is on. Numbers of finished campaigns will be anonymised after the retention period.",
              "success")
    else:
        for errors in form.errors.values():
            for error in errors:
                flash(error, "error")
    return redirect(url_for("workspace.settings", slug=g.workspace.slug))
