"""Rules every moderation decision obeys, whatever the item: permission and four-eyes.

Four-eyes (a workspace setting, on by default) covers everyone who shaped the item, not only its
author: `contributors` maps user id → what they did (services/contributors.py for campaigns;
proposer and submitter for sender revisions). Pages ask `may_decide` before offering a button;
services call `ensure_may_decide`, which refuses with a message naming what the person did.
"""
from collections.abc import Mapping

from models import Membership, User, Workspace
from services import permissions
from services.contributors import PHRASES
from services.errors import Forbidden


class FourEyes(Forbidden):
    code = "four_eyes"


def ensure_may_decide(workspace: Workspace, membership: Membership | None, user: User,
                      contributors: Mapping[int, str], what: str = "item") -> None:
    """Refuse unless the user may moderate here and (with four-eyes on) did not shape the item."""
    permissions.require("moderation.decide", membership, superadmin=user.is_superadmin)
    if workspace.four_eyes and user.id in contributors:
        done = PHRASES.get(contributors[user.id], contributors[user.id])
        raise FourEyes(f"Four-eyes rule: you {done} this {what}, so you can neither approve nor reject it; "
                       "another moderator must decide.")


def may_decide(workspace, membership, user, contributors):
    if not permissions.allowed("moderation.decide", membership, superadmin=user.is_superadmin):
        return False
    return not (workspace.four_eyes and user.id in contributors)


def revision_contributors(revision):
    """{user_id: action} for a sender revision: who proposed it and who sent it to moderation."""
    found = {}
    if revision.submitted_by_id is not None:
        found[revision.submitted_by_id] = "submitted"
    if revision.created_by_id is not None:
        found[revision.created_by_id] = "proposed"
    return found
