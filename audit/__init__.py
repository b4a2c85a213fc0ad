"""The audit trail: `audit.record(...)` is the one call services make for every mutating action.

Builds the event (UUID, actor, role, workspace, UTC milliseconds, object, before/after, IP,
user agent, request id) and hands it to the store, which falls back to a local file when
the document store is down (see audit/store.py). Recording never raises into the caller.
"""
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, has_request_context, request
from flask_login import current_user

from audit.store import AuditStore

log = logging.getLogger("mc.audit")


def get_store() -> AuditStore:
    store: AuditStore | None = current_app.extensions.get("mc_audit")
    if store is None:
        cfg = current_app.config
        store = AuditStore(
            mongo_uri=cfg["MONGO_URI"],
            embedded_dir=cfg["AUDIT_EMBEDDED_DIR"],
            fallback_path=cfg["AUDIT_FALLBACK_PATH"],
            fallback_max_bytes=cfg["AUDIT_FALLBACK_MAX_BYTES"],
            retention_days=cfg["AUDIT_RETENTION_DAYS"],
            logger=log,
        )
        current_app.extensions["mc_audit"] = store
    # The retention may be changed at run time (services/settings.py, registered by create_app): a
    # process started with the old value must not set MongoDB's TTL index back to it.
    retention = current_app.extensions.get("mc_audit_retention")
    if retention is not None:
        store.use_retention(retention())
    return store


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


def _current_actor() -> tuple[int | None, str | None, str | None]:
    if not has_request_context():
        return None, None, None
    user = g.get("api_user") or (current_user if current_user and current_user.is_authenticated else None)
    if user is None:
        return None, None, None
    membership = g.get("membership")
    if membership is not None:
        role = membership.role + ("+is_moderator" if membership.is_moderator else "")
    else:
        role = "superadmin" if user.is_superadmin else None
    return user.id, user.email, role


def record(action: str, *, workspace_id: Any = None, object_type: str | None = None, object_id: Any = None,
           before: Any = None, after: Any = None, note: str | None = None, actor_id: Any = None,
           actor_email: Any = None, actor_role: Any = None, member_of: Any = None) -> dict[str, Any]:
    """Record one audit event. Explicit actor fields override the signed-in user (e.g. failed logins).
    `member_of`: the actor's workspaces, for events that belong to no workspace (sign-ins): the event
    then also shows in the audit log of each of those workspaces."""
    ctx_id, ctx_email, ctx_role = _current_actor()
    if workspace_id is None and has_request_context() and g.get("workspace") is not None:
        workspace_id = g.workspace.id
    now = datetime.now(UTC)
    event = {
        "_id": str(uuid.uuid4()),
        "ts": now.replace(microsecond=now.microsecond // 1000 * 1000),
        "actor_id": actor_id if actor_id is not None else ctx_id,
        "actor_email": actor_email if actor_email is not None else ctx_email,
        "actor_role": actor_role if actor_role is not None else ctx_role,
        "workspace_id": workspace_id,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "before": _jsonable(before),
        "after": _jsonable(after),
        "note": note,
        "ip": request.remote_addr if has_request_context() else None,
        "user_agent": request.user_agent.string[:300] if has_request_context() else None,
        "request_id": g.get("request_id") if has_request_context() else None,
    }
    if member_of:
        event["member_of"] = list(member_of)
    get_store().write(event)
    return event
