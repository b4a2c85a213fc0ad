"""Blueprints: routes only — parse input, call one service, render."""
import contextlib

from flask import current_app, flash, request, url_for

from services.errors import DomainError, NotFound

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
        evidence,
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
                   stoplist, senders, moderation, campaigns, exports, evidence, monitoring, diagnostics, metrics, api):
        app.register_blueprint(module.bp)


def flash_error(exc: DomainError):
    flash(exc.message, "error")


class refusals_go_to(contextlib.ContextDecorator):  # lower case: used like a function, @… or with …
    """Where a page goes after a refusal: a DomainError escaping the view (as a decorator) or the
    block (as `with`) carries `redirect_to` = url_for(endpoint) with the request's view arguments
    that endpoint takes, overridden by `values` (query arguments, `_anchor`). app.py's handler
    flashes the message there (a Forbidden too); JSON callers get the JSON error. A NotFound stays
    the 404 page unless `missing_too` (a page whose unknown ids are a flash, like the members page).
    Nothing is caught here: the error only learns its destination."""

    def __init__(self, endpoint: str, *, missing_too: bool = False, **values: object) -> None:
        self.endpoint, self.missing_too, self.values = endpoint, missing_too, values

    def __enter__(self) -> "refusals_go_to":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if isinstance(exc, DomainError) and exc.redirect_to is None and (
                self.missing_too or not isinstance(exc, NotFound)):
            exc.redirect_to = self.url()

    def url(self) -> str:
        takes = set().union(*(rule.arguments for rule in current_app.url_map.iter_rules(self.endpoint)))
        args = {k: v for k, v in (request.view_args or {}).items() if k in takes}
        return url_for(self.endpoint, **{**args, **self.values})
