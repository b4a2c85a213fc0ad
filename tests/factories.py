"""Small factories so tests read like the feature: a workspace, a user with a role in it."""
import itertools

from extensions import db
from services import accounts, members, workspaces

PASSWORD = "correct horse battery staple"
_seq = itertools.count(1)


def make_workspace(slug=None, name=None, **kwargs):
    n = next(_seq)
    slug = slug or f"ws{n}"
    return workspaces.create_workspace(slug, name or f"Workspace {slug}", **kwargs)


def make_user(email=None, *, workspace=None, role="author", is_moderator=False, can_view_numbers=False,
              superadmin=False, password=PASSWORD):
    email = email or f"user{next(_seq)}@example.com"
    user = accounts.create_user(email, password, is_superadmin=superadmin)
    if superadmin:
        members.add_member(workspaces.get_by_slug("master"), user, "admin")
    if workspace is not None:
        members.add_member(workspace, user, role, is_moderator=is_moderator, can_view_numbers=can_view_numbers)
    db.session.commit()
    return user
