"""Blueprints: routes only — parse input, call one service, render."""
import importlib

from flask import flash

from services.errors import DomainError

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
