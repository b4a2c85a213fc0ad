"""Blueprints: routes only — parse input, call one service, render."""
from flask import flash

from services.errors import DomainError

# The Content-Security-Policy of every page (app.py sets it; the monitoring page widens frame-src).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'; object-src 'none'")



def register_blueprints(app):
    """Register every area's `bp`, one line per area, in this order."""
    # Imported here, not at the top: each area imports `flash_error` or `CSP` from this package,
    # so the package must be complete first (and app.py can read CSP without loading every view).
    from blueprints import (
        admin,
        api,
        audit_log,
        auth,
        campaigns,
        diagnostics,
        exports,
        home,
        invitations,
        join,
        members,
        metrics,
        moderation,
        monitoring,
        security,
        senders,
        stoplist,
        tokens,
        uploads,
        workspace,
    )

    for module in (home, auth, security, admin, workspace, members, invitations, join, audit_log, tokens, uploads,
                   stoplist, senders, moderation, campaigns, exports, monitoring, diagnostics, metrics, api):
        app.register_blueprint(module.bp)


def flash_error(exc: DomainError):
    flash(exc.message, "error")
