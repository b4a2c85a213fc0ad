"""Rules every moderation decision obeys, whatever the item: permission and four-eyes."""
from services import permissions
from services.errors import Forbidden


def ensure_may_decide(workspace, membership, user, author_id, what="item"):
    """Refuse unless the user may moderate here and (with four-eyes on) is not the item's author."""
    permissions.require("moderation.decide", membership, superadmin=user.is_superadmin)
    if workspace.four_eyes and author_id is not None and author_id == user.id:
        raise Forbidden(f"Four-eyes rule: you cannot approve or reject your own {what}; "
                        "another moderator must decide.")


def may_decide(workspace, membership, user, author_id):
    if not permissions.allowed("moderation.decide", membership, superadmin=user.is_superadmin):
        return False
    return not (workspace.four_eyes and author_id is not None and author_id == user.id)
