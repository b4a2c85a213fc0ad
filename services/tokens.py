"""Personal access tokens: shown once at creation, stored as a SHA-256 digest, with a lifetime,
revocable by their owner and by the workspace's admins, audited.

A token dies (`revoked_at`, `revoked_reason`) when its owner changes the password or signs out
everywhere, when its owner is removed from the workspace or their role or flags there change, and
when an admin revokes it; it is refused after `expires_at`, and while its owner must enrol a second
factor and has not (TOTP_REQUIRED_FOR_ADMINS). `authenticate_bearer` is the one check every API
call goes through; its refusals are `TokenRefused` errors with a code.
"""
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

import audit
from extensions import affected_rows, db
from models import ApiToken, User, utcnow
from services import permissions, secrets, totp
from services.errors import DomainError, NotFound

LAST_USED_RESOLUTION_SECONDS = 60

# Why a token ended: the code stored in `revoked_reason` and the words the tokens page shows.
REVOKED_BY_OWNER = "owner"
REVOKED_BY_ADMIN = "admin"
PASSWORD_CHANGED = "password_changed"
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
REMOVED_FROM_WORKSPACE = "removed_from_workspace"
ROLE_CHANGED = "role_changed"
REASONS = {
    REVOKED_BY_OWNER: "revoked by its owner",
    REVOKED_BY_ADMIN: "revoked by an admin",
    PASSWORD_CHANGED: "ended by a password change",
    SIGNED_OUT_EVERYWHERE: "ended by “sign out everywhere”",
    REMOVED_FROM_WORKSPACE: "ended by removal from the workspace",
    ROLE_CHANGED: "ended by a role change",
    "revoked": "revoked",  # tokens revoked before reasons were recorded (migration 0011)
}


class TokenRefused(DomainError):
    """A presented token that exists but may not be used (expired, revoked, owner not allowed)."""

    def __init__(self, message, code):
        super().__init__(message, code=code, status=401)


def default_days():
    return current_app.config["TOKEN_DEFAULT_DAYS"]


def max_days():
    return current_app.config["TOKEN_MAX_DAYS"]


def lifetime_days(value):
    """The lifetime in days from a form, the CLI or a caller: a whole number from 1 to TOKEN_MAX_DAYS;
    None or an empty string means TOKEN_DEFAULT_DAYS."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default_days()
    message = f"Choose a lifetime of 1 to {max_days()} days, as a whole number."
    if isinstance(value, bool):
        raise DomainError(message, code="invalid_days")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 6:
            raise DomainError(message, code="invalid_days")
        value = int(text)
    if not isinstance(value, int) or not 1 <= value <= max_days():
        raise DomainError(message, code="invalid_days")
    return value


def create_token(user, workspace, name, *, days=None, password_hash_seen=None):
    """A new token of `user` in `workspace` for `days` (default TOKEN_DEFAULT_DAYS); returns
    (row, token) — the token itself exists only in this return value. The web page re-checks the
    password first (services/accounts.py `issue_api_token`) and passes the hash it checked as
    `password_hash_seen`: a password change that committed in between refuses the token (and one
    that commits after this insert ends it), so no token outlives the password it was made with."""
    name = (name or "").strip()
    if not name:
        raise DomainError("Give the token a name that says where it is used.", code="invalid_name")
    days = lifetime_days(days)
    if not user.is_superadmin and user.membership_in(workspace.id) is None:
        raise DomainError(f"{user.email} is not a member of {workspace.slug}.", code="not_member", status=403)
    token = secrets.new_token("mc")
    now = utcnow()
    row = ApiToken(user_id=user.id, workspace_id=workspace.id, name=name[:80], prefix=token[:10],
                   token_hash=secrets.digest(token), created_at=now, expires_at=now + timedelta(days=days))
    db.session.add(row)
    db.session.flush()
    if password_hash_seen is not None:
        # After the insert, under the owner's row lock (PostgreSQL; SQLite's writer lock is held):
        # a password change either committed before — seen here — or its UPDATE sees this token.
        current = db.session.execute(db.select(User.password_hash).where(User.id == user.id)
                                     .with_for_update()).scalar_one()
        if current != password_hash_seen:
            db.session.rollback()
            raise DomainError("Your password was changed meanwhile; create the token again with the new "
                              "password.", code="password_changed", status=409)
    db.session.commit()
    audit.record("tokens.created", workspace_id=workspace.id, object_type="api_token", object_id=row.id,
                 actor_id=user.id, actor_email=user.email,
                 after={"name": row.name, "prefix": row.prefix, "expires_at": row.expires_at, "days": days})
    return row, token


def state(row, now=None):
    """'live', 'expired' or 'revoked' (for pages)."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at <= (now or utcnow()):
        return "expired"
    return "live"


def reason_text(row):
    return REASONS.get(row.revoked_reason or "", "revoked") if row.revoked_at is not None else ""


def tokens_of(user, workspace):
    return list(db.session.execute(db.select(ApiToken).filter_by(user_id=user.id, workspace_id=workspace.id)
                                   .order_by(ApiToken.created_at.desc())).scalars())


def workspace_tokens(workspace):
    """Every token of the workspace with its owner (the admins' list), live ones first."""
    return list(db.session.execute(
        db.select(ApiToken).join(User, User.id == ApiToken.user_id).where(ApiToken.workspace_id == workspace.id)
        .order_by(ApiToken.revoked_at.is_not(None), User.email, ApiToken.created_at.desc())).scalars())


def _revoke_row(row, reason, **audit_fields):
    # Conditional: a token revoked twice at once is recorded (and audited) once.
    won = affected_rows(db.session.execute(update(ApiToken).where(ApiToken.id == row.id, ApiToken.revoked_at.is_(None))
                             .values(revoked_at=utcnow(), revoked_reason=reason)))
    db.session.commit()
    if won:
        audit.record("tokens.revoked", workspace_id=row.workspace_id, object_type="api_token", object_id=row.id,
                     before={"revoked": False},
                     after={"revoked": True, "reason": reason, "owner": row.user.email, "name": row.name},
                     **audit_fields)
    return bool(won)


def revoke(user, workspace, token_id):
    """The owner revokes one of their own tokens in this workspace."""
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.workspace_id != workspace.id:
        raise NotFound("This token does not exist.")
    _revoke_row(row, REVOKED_BY_OWNER)


def revoke_as_admin(workspace, membership, token_id, *, superadmin=False):
    """A workspace admin (or a super admin) revokes any token of this workspace."""
    permissions.require("tokens.manage_members", membership, superadmin=superadmin)
    row = db.session.get(ApiToken, token_id)
    if row is None or row.workspace_id != workspace.id:
        raise NotFound("This token does not exist.")
    _revoke_row(row, REVOKED_BY_ADMIN)
    return row


def end_tokens_of(user_id, reason, *, workspace_id=None):
    """Revoke every live token of a user (in one workspace, or everywhere) because of `reason`.

    Commits — together with whatever the caller changed in this transaction (the new password hash,
    the removed membership), so the change and the end of the tokens land at once — and audits one
    `tokens.revoked` event per token in its workspace. Returns the number of tokens ended."""
    conditions = [ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)]
    if workspace_id is not None:
        conditions.append(ApiToken.workspace_id == workspace_id)
    ended = db.session.execute(update(ApiToken).where(*conditions)
                               .values(revoked_at=utcnow(), revoked_reason=reason)
                               .returning(ApiToken.id, ApiToken.workspace_id, ApiToken.name)).all()
    db.session.commit()
    for token_id, ws_id, name in ended:
        audit.record("tokens.revoked", workspace_id=ws_id, object_type="api_token", object_id=token_id,
                     before={"revoked": False}, after={"revoked": True, "reason": reason, "name": name})
    return len(ended)


def authenticate_bearer(token):
    """The live token row for a presented bearer token; None when no such token exists.

    Raises TokenRefused (401, with a code) for a token that exists but may not be used:
    `token_revoked`, `token_expired`, `account_inactive`, `totp_enrolment_required`."""
    if not token or not token.startswith("mc_"):
        return None
    row = db.session.execute(db.select(ApiToken).filter_by(token_hash=secrets.digest(token))).scalar_one_or_none()
    if row is None or not secrets.matches(token, row.token_hash):
        return None
    now = utcnow()
    if row.revoked_at is not None:
        raise TokenRefused(f"This token was {reason_text(row)}; create a new one on the API tokens page.",
                           "token_revoked")
    if row.expires_at <= now:
        raise TokenRefused("This token has expired; create a new one on the API tokens page.", "token_expired")
    user = row.user
    if not user.is_active:
        raise TokenRefused("The token's owner account is deactivated.", "account_inactive")
    membership = user.membership_in(row.workspace_id)
    if not user.is_superadmin and (membership is None or membership.created_at > row.created_at):
        # Removal revokes the tokens; this also refuses a token that predates a later re-admission.
        raise TokenRefused("The token's owner is no longer a member of its workspace.", "token_revoked")
    if totp.required_for(user) and not totp.is_enrolled(user):
        raise TokenRefused("The token's owner must set up two-step sign-in (required for admins) before "
                           "their tokens work again.", "totp_enrolment_required")
    # "Last used" to the minute is enough, and one write per call would contend with bulk work.
    if row.last_used_at is None or row.last_used_at < now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS):
        db.session.execute(update(ApiToken).where(ApiToken.id == row.id).values(last_used_at=now))
        db.session.commit()
    return row
