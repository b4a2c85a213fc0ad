"""The workspace home's "needs attention" figures (members, pending joins and invitations, recent
activity); the dashboard's campaign and delivery figures live in services/dashboard.py."""
import logging

from sqlalchemy import func

import audit
from extensions import db
from models import Invitation, JoinRequest, Membership, utcnow
from services import quotas

log = logging.getLogger("mc.overview")


def workspace_summary(workspace, *, with_activity, recent_limit=8):
    """Counts for the home page; the recent audit events (actors' e-mails, actions) only when
    `with_activity` — the reader may see the audit log (`audit.view`)."""
    # Three counts, one round trip (the home page is the most visited page).
    members, pending_invitations, pending_joins = db.session.execute(db.select(
        db.select(func.count(Membership.id)).where(Membership.workspace_id == workspace.id).scalar_subquery(),
        db.select(func.count(Invitation.id)).where(
            Invitation.workspace_id == workspace.id, Invitation.state == "pending",
            Invitation.expires_at > utcnow()).scalar_subquery(),
        db.select(func.count(JoinRequest.id)).where(
            JoinRequest.workspace_id == workspace.id, JoinRequest.state == "pending").scalar_subquery())).one()
    recent = None
    if with_activity:
        try:
            recent, _ = audit.get_store().find(workspace_id=workspace.id, limit=recent_limit)
        except Exception as exc:  # noqa: BLE001 - the audit store being down must not take the home page with it
            log.warning("recent activity unavailable: %s: %s", type(exc).__name__, exc)
            recent = None
    return {"members": members, "pending_invitations": pending_invitations, "pending_joins": pending_joins,
            "recent_events": recent, "quota": quotas.today(workspace)}
