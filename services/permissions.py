"""The one permission table: which workspace role may perform which action.

Views declare an action with `@workspace_route(action)`; templates ask `can(action)`;
services call `require(action, membership)`. Nobody compares role names anywhere else.
Super admins may do everything in every workspace.
"""
from services.errors import Forbidden

# Pseudo-role: an author whose membership carries the is_moderator flag.
FLAGGED_MODERATOR = "author+is_moderator"

ALL_ROLES = frozenset({"author", "moderator", "admin"})
MODERATORS = frozenset({"moderator", "admin", FLAGGED_MODERATOR})
ADMINS = frozenset({"admin"})

PERMISSIONS = {
    "workspace.view": ALL_ROLES,
    "workspace.settings": ADMINS,
    "members.view": ADMINS,
    "members.manage": ADMINS,
    "invitations.manage": ADMINS,
    "join_requests.manage": ADMINS,
    "outbox.view": ADMINS,
    "audit.view": ADMINS,
    "tokens.manage_own": ALL_ROLES,
    # Later areas (sender names, moderation, campaigns) add their actions here.
    "moderation.decide": MODERATORS,
}


def roles_of(membership):
    """The set of table roles a membership holds (its role plus the moderator flag)."""
    if membership is None:
        return frozenset()
    roles = {membership.role}
    if membership.role == "author" and membership.is_moderator:
        roles.add(FLAGGED_MODERATOR)
    return frozenset(roles)


def allowed(action, membership, *, superadmin=False):
    if action not in PERMISSIONS:
        raise KeyError(f"unknown permission {action!r}")
    if superadmin:
        return True
    return bool(PERMISSIONS[action] & roles_of(membership))


def require(action, membership, *, superadmin=False):
    if not allowed(action, membership, superadmin=superadmin):
        raise Forbidden("You do not have permission to do this in this workspace.")
