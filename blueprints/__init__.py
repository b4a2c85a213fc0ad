"""Blueprints: routes only — parse input, call one service, render."""
from flask import flash

from services.errors import DomainError


def register_blueprints(app):
    from blueprints import admin, api, audit_log, auth, home, invitations, join, members, tokens, workspace

    for module in (home, auth, admin, workspace, members, invitations, join, audit_log, tokens, api):
        app.register_blueprint(module.bp)


def flash_error(exc: DomainError):
    flash(exc.message, "error")
