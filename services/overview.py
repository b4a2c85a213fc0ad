"""The workspace home: what needs attention in this workspace, read from small aggregate queries."""
from sqlalchemy import func

import audit
from extensions import db
from models import Invitation, JoinRequest, Membership, utcnow


def workspace_summary(workspace):
    role_counts = dict(db.session.execute(
        db.select(Membership.role, func.count(Membership.id)).where(Membership.workspace_id == workspace.id)
        .group_by(Membership.role)).all())
    pending_invitations = db.session.scalar(db.select(func.count(Invitation.id)).where(
        Invitation.workspace_id == workspace.id, Invitation.state == "pending", Invitation.expires_at > utcnow()))
    pending_joins = db.session.scalar(db.select(func.count(JoinRequest.id)).where(
        JoinRequest.workspace_id == workspace.id, JoinRequest.state == "pending"))
    recent, _ = audit.get_store().find(workspace_id=workspace.id, limit=8)
    return {
        "members": sum(role_counts.values()),
        "roles": {role: role_counts.get(role, 0) for role in ("admin", "moderator", "author")},
        "pending_invitations": pending_invitations,
        "pending_joins": pending_joins,
        "recent_events": recent,
    }
