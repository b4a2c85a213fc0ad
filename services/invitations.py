"""Invitations: an admin invites an e-mail address with a role; the single-use link token is stored hashed.

States: pending → accepted | revoked; a pending invitation past `expires_at` reads as expired.
Accepting is a conditional UPDATE on `state = 'pending'`, so a link can be used exactly once.
"""
import re
from datetime import timedelta

from flask import current_app, url_for
from sqlalchemy import update

import audit
from extensions import affected_rows, db
from models import ROLES, Invitation, utcnow
from services import accounts, members, secrets
from services.errors import Conflict, DomainError, NotFound
from services.mail import MailNotSent, outbox, send_mail

# An invitation link in a mail body: the token is `inv_` + URL-safe base64 (secrets.new_token).
_LINK_TOKEN = re.compile(r"/invite/(inv_[A-Za-z0-9_-]+)")


def list_invitations(workspace):
    return list(db.session.execute(db.select(Invitation).where(Invitation.workspace_id == workspace.id)
                                   .order_by(Invitation.created_at.desc())).scalars())


def invite(workspace, email, role, invited_by):
    email = accounts.normalise_email(email)
    if not email or "@" not in email:
        raise DomainError("Enter a valid e-mail address.", code="invalid_email")
    if role not in ROLES:
        raise DomainError("Choose author, moderator or admin.", code="invalid_role")
    existing = accounts.find_user(email)
    if existing is not None and existing.membership_in(workspace.id):
        raise DomainError(f"{email} is already a member of this workspace.", code="exists", status=409)
    now = utcnow()
    pending = db.session.execute(db.select(Invitation).where(
        Invitation.workspace_id == workspace.id, Invitation.email == email, Invitation.state == "pending",
        Invitation.expires_at > now)).scalar_one_or_none()
    if pending is not None:
        raise DomainError(f"{email} already has a pending invitation; revoke it to send a new one.",
                          code="exists", status=409)
    token = secrets.new_token("inv")
    invitation = Invitation(workspace_id=workspace.id, email=email, role=role, token_hash=secrets.digest(token),
                            invited_by_id=invited_by.id, created_at=now,
                            expires_at=now + timedelta(days=current_app.config["INVITATION_DAYS"]))
    db.session.add(invitation)
    db.session.commit()  # the link must work as soon as the mail is out
    try:
        send_mail(email, f"You are invited to {workspace.name} on Message Center",
                  _invitation_body(workspace, role, invited_by, accept_url(token), invitation.expires_at),
                  workspace_id=workspace.id)
    except MailNotSent as exc:
        # Nobody can receive the link: drop the invitation so the admin can simply try again.
        db.session.delete(invitation)
        db.session.commit()
        raise DomainError(f"The invitation for {email} was not sent: {exc.message}", code=exc.code,
                          status=exc.status) from exc
    audit.record("invitations.created", workspace_id=workspace.id, object_type="invitation",
                 object_id=invitation.id, after={"email": email, "role": role})
    return invitation, token


def accept_url(token):
    base = current_app.config["PUBLIC_URL"]
    path = url_for("invitations.accept", token=token)
    return f"{base}{path}" if base else url_for("invitations.accept", token=token, _external=True)


def _invitation_body(workspace, role, invited_by, link, expires_at):
    return (f"Hello,\n\n{invited_by.email} invited you to the workspace \"{workspace.name}\" on Message Center "
            f"as {role}.\n\nOpen this link to accept (it works once, until {expires_at:%Y-%m-%d %H:%M} UTC):\n\n"
            f"{link}\n\nIf you did not expect this invitation, ignore this mail.\n")


def revoke(workspace, invitation_id):
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.workspace_id != workspace.id:
        raise NotFound("This invitation does not exist in this workspace.")
    done = affected_rows(db.session.execute(
        update(Invitation).where(Invitation.id == invitation.id, Invitation.state == "pending")
        .values(state="revoked", decided_at=utcnow())))
    db.session.commit()
    if not done:
        raise Conflict(f"This invitation is already {invitation.state}; only pending invitations can be revoked.")
    audit.record("invitations.revoked", workspace_id=workspace.id, object_type="invitation",
                 object_id=invitation.id, before={"state": "pending"}, after={"state": "revoked"})


def find_by_token(token):
    """The invitation for a link token, or NotFound with a message that says what to do."""
    invitation = db.session.execute(
        db.select(Invitation).filter_by(token_hash=secrets.digest(token or ""))).scalar_one_or_none()
    if invitation is None:
        raise NotFound("This invitation link is not valid. Ask the workspace admin for a new invitation.")
    state = invitation.effective_state(utcnow())
    if state != "pending":
        raise Conflict(f"This invitation is {state} and can no longer be used. "
                       "Ask the workspace admin for a new invitation.")
    return invitation


def accept(token, *, current_user=None, password=None, name=""):
    """Accept: add the membership to the signed-in account with the invited address, or create the account."""
    invitation = find_by_token(token)
    user = accounts.find_user(invitation.email)
    if user is not None:
        if current_user is None or current_user.id != user.id:
            raise DomainError(f"Sign in as {invitation.email} to accept this invitation.", code="sign_in_required",
                              status=403)
    elif current_user is not None:
        # Creating B's account while signed in as A would leave A signed in and B's new account unused.
        raise DomainError(f"You are signed in as {current_user.email}. Sign out, then open the link again to "
                          f"create the account for {invitation.email}.", code="sign_out_required", status=409)
    else:
        user = accounts.create_user(invitation.email, password or "", name=name)
    claimed = affected_rows(db.session.execute(update(Invitation).where(Invitation.id == invitation.id,
                                                          Invitation.state == "pending")
                                 .values(state="accepted", decided_at=utcnow())))
    if not claimed:
        db.session.rollback()
        raise Conflict("This invitation has just been used or revoked.")
    membership = members.add_member(invitation.workspace, user, invitation.role)
    db.session.commit()
    audit.record("invitations.accepted", workspace_id=invitation.workspace_id, object_type="invitation",
                 object_id=invitation.id, actor_id=user.id, actor_email=user.email,
                 before={"state": "pending"}, after={"state": "accepted"})
    members.record_added(membership, f"invitation {invitation.id}")
    return user, invitation.workspace


def outbox_for_display(workspace_id=None, limit=100):
    """The outbox as the admins' page shows it: an invitation link works there only while its
    invitation is pending; once revoked, accepted or expired its token is replaced by the state,
    so the page no longer shows a secret that still means something (and the link is refused)."""
    mails = outbox(workspace_id, limit)
    tokens = {t for m in mails for t in _LINK_TOKEN.findall(m.body)}
    states = {}
    if tokens:
        digests = {secrets.digest(t): t for t in tokens}
        now = utcnow()
        for invitation in db.session.execute(db.select(Invitation).where(
                Invitation.token_hash.in_(list(digests)))).scalars():
            states[digests[invitation.token_hash]] = invitation.effective_state(now)

    def live(match):
        state = states.get(match.group(1), "unknown")
        return match.group(0) if state == "pending" else f"/invite/[link no longer valid: invitation {state}]"

    return [{"subject": m.subject, "recipient": m.recipient, "created_at": m.created_at,
             "body": _LINK_TOKEN.sub(live, m.body)} for m in mails]
