"""Blueprints: routes only — parse input, call one service, render."""
import importlib

from flask import flash

from services.errors import DomainError

# The Content-Security-Policy of every page (app.py sets it; the monitoring page widens frame-src).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'; object-src 'none'")

# One line per area; each module exposes `bp`.
BLUEPRINT_MODULES = (
    "blueprints.home",
    "blueprints.auth",
    "blueprints.security",
    "blueprints.admin",
    "blueprints.workspace",
    "blueprints.members",
    "blueprints.invitations",
    "blueprints.join",
    "blueprints.audit_log",
    "blueprints.tokens",
    "blueprints.uploads",
    "blueprints.stoplist",
    "blueprints.senders",
    "blueprints.moderation",
    "blueprints.campaigns",
    "blueprints.exports",
    "blueprints.evidence",
    "blueprints.monitoring",
    "blueprints.diagnostics",
    "blueprints.metrics",
    "blueprints.api",
)


def register_blueprints(app):
    for name in BLUEPRINT_MODULES:
        app.register_blueprint(importlib.import_module(name).bp)


def flash_error(exc: DomainError):
    flash(exc.message, "error")
