"""Members and roles of a workspace. The last admin can be neither removed nor demoted.

Removing a member, or changing their role or flags, ends their API tokens in that workspace: a
token never carries more than what was granted when it was created, and a new grant is a
deliberate new token."""
import audit
from extensions import db
from models import ROLES, Membership, User, Workspace
from services import sessions, tokens
from services.errors import DomainError, NotFound


def list_members(workspace):
    return list(db.session.execute(
        db.select(Membership).join(User).where(Membership.workspace_id == workspace.id).order_by(User.email)).scalars())


def superadmins_for(workspace):
    """The Master workspace's Members page lists the installation's super admins ([] elsewhere)."""
    if not workspace.is_master:
        return []
    return list(db.session.execute(db.select(User).where(User.is_superadmin.is_(True)).order_by(User.email)).scalars())


def get_member(workspace, membership_id):
    membership = db.session.get(Membership, membership_id)
    if membership is None or membership.workspace_id != workspace.id:
        raise NotFound("This member does not exist in this workspace.")
    return membership


def _admin_count(workspace_id):
    # Lock the workspace row so two concurrent demotions cannot both see "another admin exists".
    db.session.execute(db.select(Workspace.id).where(Workspace.id == workspace_id).with_for_update())
    return db.session.scalar(db.select(db.func.count(Membership.id)).where(
        Membership.workspace_id == workspace_id, Membership.role == "admin"))


def add_member(workspace, user, role, *, is_moderator=False, can_view_numbers=False, source="manual"):
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}.", code="invalid_role")
    existing = user.membership_in(workspace.id)
    if existing is not None:
        return existing
    membership = Membership(workspace_id=workspace.id, user_id=user.id, role=role,
                            is_moderator=bool(is_moderator) and role == "author",
                            can_view_numbers=bool(can_view_numbers))
    db.session.add(membership)
    db.session.flush()
    user.memberships.append(membership)
    return membership


def record_added(membership, source):
    audit.record("members.added", workspace_id=membership.workspace_id, object_type="membership",
                 object_id=membership.id, after={"user": membership.user.email, **membership.snapshot()},
                 note=source)


def change_member(workspace, membership_id, *, role, is_moderator, can_view_numbers):
    membership = get_member(workspace, membership_id)
    if role not in ROLES:
        raise DomainError(f"Unknown role {role!r}; choose author, moderator or admin.", code="invalid_role")
    before = membership.snapshot()
    if membership.role == "admin" and role != "admin" and _admin_count(workspace.id) <= 1:
        raise DomainError("This is the last admin of the workspace; make someone else admin first.",
                          code="last_admin", status=409)
    membership.role = role
    membership.is_moderator = bool(is_moderator) and role == "author"  # the flag only means something on authors
    membership.can_view_numbers = bool(can_view_numbers)
    after = membership.snapshot()
    if before == after:
        return membership
    # A privilege change: their tokens here end in the transaction that changes the role (so no token
    # ever acts with the new role), their other sessions end and this one rotates.
    tokens.end_tokens_of(membership.user_id, tokens.ROLE_CHANGED, workspace_id=workspace.id)
    sessions.end_other_sessions(membership.user)
    audit.record("members.changed", workspace_id=workspace.id, object_type="membership", object_id=membership.id,
                 before={"user": membership.user.email, **before}, after={"user": membership.user.email, **after})
    return membership


def remove_member(workspace, membership_id):
    membership = get_member(workspace, membership_id)
    if membership.role == "admin" and _admin_count(workspace.id) <= 1:
        raise DomainError("This is the last admin of the workspace and cannot be removed.",
                          code="last_admin", status=409)
    before = {"user": membership.user.email, **membership.snapshot()}
    user_id = membership.user_id
    db.session.delete(membership)
    tokens.end_tokens_of(user_id, tokens.REMOVED_FROM_WORKSPACE, workspace_id=workspace.id)  # commits the removal
    audit.record("members.removed", workspace_id=workspace.id, object_type="membership", object_id=membership_id,
                 before=before)
