"""Personal access tokens: shown once at creation, stored as a SHA-256 digest, revocable, audited."""
from datetime import timedelta

import audit
from extensions import db
from models import ApiToken, utcnow
from services import secrets
from services.errors import DomainError, NotFound

LAST_USED_RESOLUTION_SECONDS = 60


def create_token(user, workspace, name):
    name = (name or "").strip()
    if not name:
        raise DomainError("Give the token a name that says where it is used.", code="invalid_name")
    if not user.is_superadmin and user.membership_in(workspace.id) is None:
        raise DomainError(f"{user.email} is not a member of {workspace.slug}.", code="not_member", status=403)
    token = secrets.new_token("mc")
    row = ApiToken(user_id=user.id, workspace_id=workspace.id, name=name[:80], prefix=token[:10],
                   token_hash=secrets.digest(token))
    db.session.add(row)
    db.session.commit()
    audit.record("tokens.created", workspace_id=workspace.id, object_type="api_token", object_id=row.id,
                 actor_id=user.id, actor_email=user.email, after={"name": row.name, "prefix": row.prefix})
    return row, token


def tokens_of(user, workspace):
    return list(db.session.execute(db.select(ApiToken).filter_by(user_id=user.id, workspace_id=workspace.id)
                                   .order_by(ApiToken.created_at.desc())).scalars())


def revoke(user, workspace, token_id):
    row = db.session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.workspace_id != workspace.id:
        raise NotFound("This token does not exist.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.session.commit()
        audit.record("tokens.revoked", workspace_id=workspace.id, object_type="api_token", object_id=row.id,
                     before={"revoked": False}, after={"revoked": True})


def authenticate_bearer(token):
    """The live token row for a presented bearer token, or None."""
    if not token or not token.startswith("mc_"):
        return None
    row = db.session.execute(db.select(ApiToken).filter_by(token_hash=secrets.digest(token))).scalar_one_or_none()
    if row is None or row.revoked_at is not None or not secrets.matches(token, row.token_hash):
        return None
    if not row.user.is_active:
        return None
    now = utcnow()
    # "Last used" to the minute is enough, and one write per call would contend with bulk work.
    if row.last_used_at is None or row.last_used_at < now - timedelta(seconds=LAST_USED_RESOLUTION_SECONDS):
        row.last_used_at = now
        db.session.commit()
    return row
