"""Self-service join: a signed-in user asks to join a workspace by slug; its admins decide."""
from sqlalchemy import update

import audit
from extensions import affected_rows, db
from models import ROLES, JoinRequest, Workspace, utcnow
from services import members
from services.errors import Conflict, DomainError, NotFound


def request_to_join(user, slug, message):
    wanted = (slug or "").strip().lower()
    workspace = db.session.execute(db.select(Workspace).filter_by(slug=wanted)).scalar_one_or_none()
    if workspace is None or workspace.is_master:
        raise NotFound(f"No workspace with the slug {slug!r}. Check the spelling with the workspace admin.")
    if user.membership_in(workspace.id):
        raise DomainError(f"You are already a member of {workspace.name}.", code="exists", status=409)
    pending = db.session.execute(db.select(JoinRequest.id).filter_by(
        workspace_id=workspace.id, user_id=user.id, state="pending")).first()
    if pending:
        raise DomainError("You already asked to join this workspace; wait for an admin's decision.",
                          code="exists", status=409)
    join = JoinRequest(workspace_id=workspace.id, user_id=user.id, message=(message or "").strip()[:500])
    db.session.add(join)
    db.session.commit()
    audit.record("join_requests.created", workspace_id=workspace.id, object_type="join_request", object_id=join.id,
                 after={"user": user.email, "message": join.message})
    return join


def requests_of_user(user):
    return list(db.session.execute(db.select(JoinRequest).filter_by(user_id=user.id)
                                   .order_by(JoinRequest.created_at.desc())).scalars())


def pending_for(workspace):
    return list(db.session.execute(db.select(JoinRequest).filter_by(workspace_id=workspace.id, state="pending")
                                   .order_by(JoinRequest.created_at)).scalars())


def _get(workspace, request_id):
    join = db.session.get(JoinRequest, request_id)
    if join is None or join.workspace_id != workspace.id:
        raise NotFound("This join request does not exist in this workspace.")
    return join


def _decide(join, decider, **values):
    done = affected_rows(db.session.execute(
        update(JoinRequest).where(JoinRequest.id == join.id, JoinRequest.state == "pending")
        .values(decided_by_id=decider.id, decided_at=utcnow(), **values)))
    if not done:
        db.session.rollback()
        db.session.refresh(join)
        who = join.decided_by.email if join.decided_by else "someone"
        raise Conflict(f"This request was already {join.state} by {who}.")


def approve(workspace, request_id, role, decider):
    if role not in ROLES:
        raise DomainError("Choose author, moderator or admin.", code="invalid_role")
    join = _get(workspace, request_id)
    _decide(join, decider, state="approved", role=role)
    membership = members.add_member(workspace, join.user, role)
    db.session.commit()
    audit.record("join_requests.approved", workspace_id=workspace.id, object_type="join_request", object_id=join.id,
                 before={"state": "pending"}, after={"state": "approved", "role": role, "user": join.user.email})
    members.record_added(membership, f"join request {join.id}")


def reject(workspace, request_id, note, decider):
    note = (note or "").strip()
    if not note:
        raise DomainError("Write a note for the user saying why the request is rejected.", code="note_required")
    join = _get(workspace, request_id)
    _decide(join, decider, state="rejected", note=note[:500])
    db.session.commit()
    audit.record("join_requests.rejected", workspace_id=workspace.id, object_type="join_request", object_id=join.id,
                 before={"state": "pending"}, after={"state": "rejected", "user": join.user.email}, note=note)
