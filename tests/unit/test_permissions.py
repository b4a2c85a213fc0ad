"""The permission table (services/permissions.py): the one place that says which role may do what."""
import pytest

from models import ROLES, Membership
from services import permissions
from services.errors import DomainError, Forbidden

# Membership roles plus the pseudo-roles the table derives from membership flags.
PSEUDO_ROLES = {getattr(permissions, name) for name in ("FLAGGED_MODERATOR", "NUMBER_VIEWER") if hasattr(permissions, name)}
KNOWN_ROLES = frozenset(ROLES) | PSEUDO_ROLES


def member(role, is_moderator=False):
    # A transient membership row: the table only looks at role and the moderator flag.
    return Membership(role=role, is_moderator=is_moderator)


def test_every_action_maps_to_a_non_empty_subset_of_known_roles():
    assert permissions.PERMISSIONS, "the table is empty"
    for action, roles in permissions.PERMISSIONS.items():
        assert isinstance(roles, (set, frozenset)), action
        assert roles, f"{action} is granted to nobody"
        assert roles <= KNOWN_ROLES, f"{action} names unknown roles {set(roles) - KNOWN_ROLES}"


def test_the_table_roles_are_the_membership_roles():
    assert frozenset(ROLES) == permissions.ALL_ROLES


def test_admins_may_manage_the_workspace():
    for action in ("workspace.settings", "members.view", "members.manage", "invitations.manage", "audit.view"):
        assert permissions.allowed(action, member("admin")), action


def test_flagged_author_may_decide_moderation_but_a_plain_author_may_not():
    assert permissions.allowed("moderation.decide", member("author", is_moderator=True))
    assert not permissions.allowed("moderation.decide", member("author"))
    assert permissions.allowed("moderation.decide", member("moderator"))


def test_moderator_flag_only_adds_what_the_table_grants_flagged_authors():
    plain, flagged = member("author"), member("author", is_moderator=True)
    gained = {a for a in permissions.PERMISSIONS
              if permissions.allowed(a, flagged) and not permissions.allowed(a, plain)}
    assert "moderation.decide" in gained
    assert all(permissions.FLAGGED_MODERATOR in permissions.PERMISSIONS[a] for a in gained)
    assert not any(permissions.allowed(a, plain) and not permissions.allowed(a, flagged) for a in permissions.PERMISSIONS)


def test_authors_do_not_manage_members_or_settings():
    for action in ("members.manage", "members.view", "workspace.settings", "audit.view", "invitations.manage"):
        assert not permissions.allowed(action, member("author", is_moderator=True)), action
        assert not permissions.allowed(action, member("moderator")), action


def test_roles_of_reports_the_flag_only_for_authors():
    assert permissions.roles_of(member("author", is_moderator=True)) == {"author", permissions.FLAGGED_MODERATOR}
    assert permissions.roles_of(member("moderator", is_moderator=True)) == {"moderator"}
    assert permissions.roles_of(None) == frozenset()


# Loops rather than parametrisation: every test pays the suite's per-test table cleaning.

def test_superadmin_is_allowed_everything_even_without_membership():
    for action in permissions.PERMISSIONS:
        assert permissions.allowed(action, None, superadmin=True), action
        assert permissions.allowed(action, member("author"), superadmin=True), action


def test_no_membership_means_no_permission():
    for action in permissions.PERMISSIONS:
        assert not permissions.allowed(action, None), action


def test_unknown_action_raises_key_error():
    with pytest.raises(KeyError):
        permissions.allowed("campaigns.launch_missiles", member("admin"))
    with pytest.raises(KeyError):
        permissions.allowed("campaigns.launch_missiles", None, superadmin=True)
    with pytest.raises(KeyError):
        permissions.require("campaigns.launch_missiles", member("admin"))


def test_require_raises_forbidden_when_refused_and_passes_when_allowed():
    with pytest.raises(Forbidden) as refused:
        permissions.require("members.manage", member("author"))
    assert isinstance(refused.value, DomainError)
    assert refused.value.status == 403 and refused.value.code == "forbidden"
    assert permissions.require("members.manage", member("admin")) is None
    assert permissions.require("members.manage", None, superadmin=True) is None


def test_workspace_route_refuses_an_unknown_action_at_declaration_time():
    from blueprints.access import workspace_route

    with pytest.raises(KeyError):
        workspace_route("no.such.action")
