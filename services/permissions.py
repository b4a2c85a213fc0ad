"""The one permission table: which workspace role may perform which action.

Views declare an action with `@workspace_route(action)`; templates ask `can(action)`;
services call `require(action, membership)`. Nobody compares role names anywhere else.
Super admins may do everything in every workspace.
"""
from models import Membership
from services.errors import Forbidden

# Pseudo-roles granted by membership flags.
FLAGGED_MODERATOR = "author+is_moderator"
NUMBER_VIEWER = "can_view_numbers"

ALL_ROLES = frozenset({"author", "moderator", "admin"})
MODERATORS = frozenset({"moderator", "admin", FLAGGED_MODERATOR})
ADMINS = frozenset({"admin"})
CAMPAIGN_AUTHORS = frozenset({"author", "admin"})

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
    "tokens.manage_members": ADMINS,      # list and revoke every member's tokens of the workspace
    "senders.view": ALL_ROLES,
    "senders.propose": ALL_ROLES,
    "senders.archive": ADMINS,
    "moderation.view": MODERATORS,
    "moderation.decide": MODERATORS,
    "campaigns.view": ALL_ROLES,          # authors see their own campaigns only
    "campaigns.view_all": MODERATORS,     # everyone's campaigns in the workspace
    "campaigns.create": CAMPAIGN_AUTHORS,
    "campaigns.manage_all": ADMINS,       # act on campaigns of other authors
    "recipients.upload": CAMPAIGN_AUTHORS,
    "numbers.view_full": frozenset({NUMBER_VIEWER}),
    "stoplist.manage": ADMINS,
    "exports.create": ALL_ROLES,
    "exports.download": ALL_ROLES,
    "monitoring.view": ADMINS,
    "diagnostics.view": ADMINS,
}


def roles_of(membership: Membership | None) -> frozenset[str]:
    """The set of table roles a membership holds (its role plus the moderator flag)."""
    if membership is None:
        return frozenset()
    roles = {membership.role}
    if membership.role == "author" and membership.is_moderator:
        roles.add(FLAGGED_MODERATOR)
    if membership.can_view_numbers:
        roles.add(NUMBER_VIEWER)
    return frozenset(roles)


def allowed(action: str, membership: Membership | None, *, superadmin: bool = False) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown permission {action!r}")
    if superadmin:
        return True
    return bool(PERMISSIONS[action] & roles_of(membership))


def require(action: str, membership: Membership | None, *, superadmin: bool = False) -> None:
    if not allowed(action, membership, superadmin=superadmin):
        raise Forbidden("You do not have permission to do this in this workspace.")
