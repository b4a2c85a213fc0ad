"""Application factory. Importing this module has no side effects; `create_app()` wires everything."""
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Flask, flash, g, jsonify, redirect, render_template, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from blueprints import CSP, register_blueprints
from blueprints.access import can, enforce_access
from blueprints.api.contract import error_fields
from blueprints.exports import export_helpers
from blueprints.nav import workspace_nav
from blueprints.security import check_session, gdpr_helpers, require_second_factor, touch_session
from cli import register_cli
from config import load_config
from extensions import csrf, db, limiter, login_manager, migrate
from models import User, states, utcnow
from services import private_files, settings, timefmt
from services.errors import DomainError, Forbidden, NotFound
from services.passwords import SignInBusy

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every log record (\"-\" outside requests)."""

    def filter(self, record):
        from flask import has_request_context

        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class BoundedIntConverter(IntegerConverter):
    # Only 0..2**31-1 match at all: a larger id that matched and then failed `max` made Werkzeug answer
    # 405 (not 404) on a path that other methods share (GET /api/v1/campaigns/<huge>/recipients).
    regex = (r"(?:\d{1,9}|1\d{9}|20\d{8}|21[0-3]\d{7}|214[0-6]\d{6}|2147[0-3]\d{5}|21474[0-7]\d{4}"
             r"|214748[0-2]\d{3}|2147483[0-5]\d{2}|21474836[0-3]\d|214748364[0-7])")

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


class IdleTimeoutSessions(SecureCookieSessionInterface):
    """The session cookie lives for the idle timeout in force now (a run-time setting,
    services/settings.py), not the one the process started with."""

    def get_expiration_time(self, app, session):
        if session.permanent:
            return datetime.now(UTC) + timedelta(minutes=settings.value("IDLE_TIMEOUT_MINUTES"))
        return None


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(load_config(config))
    if app.config["PROXY_FIX_HOPS"]:
        # Behind nginx: trust X-Forwarded-For/-Proto from that many proxies (client IP, https).
        # X-Forwarded-Host only when PROXY_FIX_TRUST_HOST says the proxy sets it: otherwise any
        # client could choose the host of generated links (invitation mails, redirects).
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["PROXY_FIX_HOPS"]
        # Flask's documented way to wrap the WSGI app (mypy: "cannot assign to a method").
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops if app.config["PROXY_FIX_TRUST_HOST"] else 0)

    # Secrets out of files: the data directory is 0700, a SQLite database 0600 (services/private_files.py).
    private_files.private_dir(app.config["MC_DATA_DIR"])

    # `<int:…>` ids beyond a database integer are simply not found (404), never a driver overflow.
    app.url_map.converters["int"] = BoundedIntConverter
    _configure_logging(app)
    db.init_app(app)
    with app.app_context():
        private_files.protect_sqlite(db.engine)
    migrate.init_app(app, db, directory="migrations")
    csrf.init_app(app)
    limiter.init_app(app)
    _configure_login(app)

    register_blueprints(app)
    register_cli(app)
    # The audit store asks for the retention in force (audit/ sits below services/ in the layers).
    app.extensions["mc_audit_retention"] = lambda: settings.value("AUDIT_RETENTION_DAYS")
    app.session_interface = IdleTimeoutSessions()
    _register_request_hooks(app)
    _register_error_handlers(app)
    return app


def _configure_logging(app):
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"))
    root = logging.getLogger("mc")
    if not any(isinstance(h, logging.StreamHandler) for h in root.handlers):
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def _configure_login(app):
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in to continue."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id):
        # The id carries the session epoch: a password change bumps it and ends other sessions.
        uid, _, epoch = str(user_id).partition(":")
        if not uid.isdigit():
            return None
        user = db.session.get(User, int(uid))
        if user is None or str(user.session_epoch) != epoch:
            return None
        return user


def _register_request_hooks(app):
    """Every request hook and context processor of the app, in one place and in this order.

    before_request, in order:
      1. assign_request_id — first, even ahead of the hooks the extensions registered in init_app
         (CSRF check, rate limit), so everything after it (and its log lines, error pages) carries the id;
      2. check_session — a revoked / expired signed-in session is ended (and told) before anything else;
      3. require_second_factor — an admin without a required second factor goes to enrolment;
      4. idle_timeout — the session is made permanent (refreshed lifetime = idle timeout); after
         check_session, whose `session.clear()` would drop the flag;
      5. enforce_access — deny by default, then the view's declaration (blueprints/access.py).
    after_request runs in the reverse order of registration: security_headers, then touch_session.
    Blueprints register no app-wide hooks of their own.
    """
    def assign_request_id():
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex

    def idle_timeout():
        # A permanent session whose lifetime is refreshed on every request = idle timeout.
        session.permanent = True

    app.before_request_funcs.setdefault(None, []).insert(0, assign_request_id)
    for hook in (check_session, require_second_factor, idle_timeout, enforce_access):
        app.before_request(hook)

    def security_headers(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.is_secure:
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if current_user and getattr(current_user, "is_authenticated", False):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    app.after_request(touch_session)
    app.after_request(security_headers)

    def template_helpers():
        nav = workspace_nav(app.view_functions, can) if g.get("workspace") is not None else []
        return {"can": can, "now": utcnow, "current_workspace": g.get("workspace"),
                "current_membership": g.get("membership"), "workspace_nav": nav}

    for processor in (template_helpers, gdpr_helpers, export_helpers):
        app.context_processor(processor)
    # Templates compare with the named states (`c.status == Status.NEW`), never with string literals.
    app.jinja_env.globals.update(states.TEMPLATE_NAMES)
    _register_time_filters(app)


def _is_api():
    return request.path.startswith("/api/")


def _page_zone():
    """The time zone pages show times in: the current workspace's, else UTC (issue 17)."""
    workspace = g.get("workspace")
    return getattr(workspace, "timezone", None) or "UTC"


def _register_time_filters(app):
    """Jinja filters over services/timefmt.py: every page writes times through these (macros.html `when`)."""
    app.add_template_filter(timefmt.html_datetime, "html_datetime")
    app.add_template_filter(lambda dt, **kw: timefmt.clock(dt, _page_zone(), **kw), "localclock")
    app.add_template_filter(lambda dt: timefmt.relative(dt), "relative")
    app.add_template_filter(lambda dt: timefmt.day_clock(dt, _page_zone()), "dayclock")
    app.add_template_filter(timefmt.duration, "duration")
    app.add_template_global(lambda: timefmt.zone_label(_page_zone()), "page_zone")


def _wants_json():
    # HTML wins a tie (`Accept: */*` from curl or a probe): only a client that prefers JSON gets it.
    return _is_api() or (
        request.accept_mimetypes.best_match(["text/html", "application/json"]) == "application/json"
    )


def _local_referrer():
    """The page a form was posted from, when it is a page of this site (path and query only)."""
    ref = urlsplit(request.referrer or "")
    if ref.netloc != request.host or not ref.path.startswith("/") or ref.path.startswith("//"):
        return None
    return ref.path + (f"?{ref.query}" if ref.query else "")


def _register_error_handlers(app):
    from flask_limiter.errors import RateLimitExceeded
    from flask_wtf.csrf import CSRFError

    messages = {
        400: "The request could not be understood.",
        403: "You do not have permission to do this.",
        404: "There is nothing here — the page or object does not exist, or you cannot see it.",
        405: "This action is not available here.",
        413: "The upload or form is larger than allowed here.",
        429: "Too many requests. Wait a moment and try again.",
        500: "Something went wrong on our side. The error was logged with the request id below.",
    }
    codes = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             413: "too_large", 429: "throttled", 500: "internal_error"}

    def render_error(status, message=None, code=None):
        message = message or messages.get(status, "Error")
        code = code or codes.get(status, "error")
        if _wants_json():
            return jsonify({"error": {"code": code, "message": message}}), status
        return render_template("errors/error.html", status=status, message=message), status

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        app.logger.warning("CSRF refused: %s", exc.description)
        if exc.description == "The CSRF token has expired." and not _wants_json():
            # A form left open past WTF_CSRF_TIME_LIMIT: back to the page it came from, saying so.
            minutes = app.config["WTF_CSRF_TIME_LIMIT"] // 60
            flash(f"This form was open for more than {minutes} minutes and has expired, so nothing was saved. "
                  "Please fill it in again.", "error")
            return redirect(_local_referrer() or "/", 303)
        return render_error(400, "The form expired or was not sent from this site. Reload the page and try again.",
                            "csrf_failed")

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc):
        # Flask-Limiter adds Retry-After (RATELIMIT_HEADERS_ENABLED) to this response.
        return render_error(429, exc.description, "rate_limited")

    @app.errorhandler(SignInBusy)
    def signin_busy(exc):
        response, status = render_error(503, exc.message, exc.code)
        response = app.make_response((response, status))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    _register_domain_errors(app, render_error)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return render_error(exc.code or 500, None if exc.code in messages else exc.description)

    @app.errorhandler(Exception)
    def unhandled(exc):
        app.logger.exception("unhandled error")
        db.session.rollback()
        return render_error(500)


def _register_domain_errors(app, render_error):
    # Domain errors from services, mapped once (views catch only to re-render a form with field
    # errors):
    #   NotFound (another workspace's or an unknown object) -> the 404 page (a flash where the view
    #     says so: refusals_go_to(…, missing_too=True));
    #   Forbidden -> the 403 page saying why, or, when the view names the page a refusal goes to
    #     (`redirect_to`, blueprints.refusals_go_to), a flash there, like any other refusal;
    #   any other DomainError (Conflict, IllegalTransition, …) -> for a page a flash on the page the
    #     error names, or else on the page the form was posted from; for a JSON client the JSON error.
    # The API answers every one of them in its JSON shape, with the service's message and `fields`.
    @app.errorhandler(NotFound)
    def domain_not_found(exc):
        return _refusal(exc, lambda: render_error(404))

    @app.errorhandler(Forbidden)
    def domain_forbidden(exc):
        return _refusal(exc, lambda: render_error(403, exc.message, exc.code))

    @app.errorhandler(DomainError)
    def domain_refused(exc):
        return _refusal(exc, lambda: (jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status)
                        if _wants_json() else _flash_refusal(exc))


def _refusal(exc, otherwise):
    """The API's JSON error; a flash on the page the error names; or `otherwise()`."""
    db.session.rollback()
    if _is_api():
        error = {"code": exc.code, "message": exc.message}
        fields = error_fields(exc)
        if fields:
            error["fields"] = fields
        return jsonify({"error": error}), exc.status
    if exc.redirect_to and not _wants_json():
        return _flash_refusal(exc)
    return otherwise()


def _flash_refusal(exc):
    flash(exc.message, "error")
    if exc.redirect_to:
        return redirect(exc.redirect_to)
    return redirect(_local_referrer() or "/", 303)
