"""Signed-in sessions: one row per browser, listed on the account page and revocable.

The session cookie carries a random session id (`session["sid"]`); only its SHA-256 digest is
stored. A row is active while it is not revoked, belongs to the user's current `session_epoch`
(a password change, a second-factor change or a role change bumps the epoch and so ends every
older session) and was seen within the idle timeout. `check()` runs before every request and
signs out a browser whose row is no longer active; `start()` is called at every sign-in, so the
session id changes at login (and, through the epoch, at every privilege change).

A session belongs to the browser that signed in: the row keeps its User-Agent, and a request that
presents the session cookie with another User-Agent (a cookie copied to another browser) ends the
session for both — the row is revoked and the replay audited (`auth.session_replayed`). The IP
address is not bound: it changes legitimately (mobile networks, VPNs).
"""
import secrets as _random
from datetime import timedelta

from flask import current_app, g, request, session
from sqlalchemy import update

import audit
from extensions import affected_rows, db
from models import UserSession, utcnow
from services import settings, tokens
from services.errors import NotFound
from services.secrets import digest

SESSION_KEY = "sid"


def _touch_seconds():
    return current_app.config["SESSION_TOUCH_SECONDS"]


def _user_agent():
    return request.user_agent.string[:300]  # the column's width


def start(user):
    """Register the browser that just signed in (call after `login_user`); returns the row."""
    previous = session.pop(SESSION_KEY, None)
    if previous:  # the id changes; the old one cannot be replayed
        db.session.execute(update(UserSession).where(UserSession.sid_digest == digest(previous),
                                                     UserSession.revoked_at.is_(None))
                           .values(revoked_at=utcnow()))
    sid = _random.token_urlsafe(32)
    now = utcnow()
    row = UserSession(user_id=user.id, sid_digest=digest(sid), epoch=user.session_epoch or 0,
                      user_agent=_user_agent(), ip=(request.remote_addr or "")[:64],
                      created_at=now, last_seen_at=now)
    db.session.add(row)
    db.session.commit()
    session[SESSION_KEY] = sid
    return row


def current_row():
    sid = session.get(SESSION_KEY)
    if not sid:
        return None
    return db.session.execute(db.select(UserSession).filter_by(sid_digest=digest(sid))).scalar_one_or_none()


def is_active(row, user, now=None):
    now = now or utcnow()
    idle = timedelta(minutes=settings.value("IDLE_TIMEOUT_MINUTES"), seconds=_touch_seconds())
    return (row is not None and row.user_id == user.id and row.revoked_at is None
            and row.epoch == (user.session_epoch or 0) and row.last_seen_at > now - idle)


def check(user):
    """True when this browser's session is still valid. A signed-in browser without a session id
    (signed in by a flow that predates this table) is registered instead of being refused."""
    if not session.get(SESSION_KEY):
        start(user)
        return True
    row = current_row()
    if not is_active(row, user):
        return False
    if row.user_agent != _user_agent():
        _end_replayed(row)
        return False
    # What touch() needs later in this request, kept so that it does not read the row again.
    g.session_seen = (row.id, row.last_seen_at)
    return True


def _end_replayed(row):
    """The session cookie came from another browser: the session ends here and in the browser that
    signed in (conditional UPDATE: concurrent replays end and audit it once)."""
    ended = affected_rows(db.session.execute(
        update(UserSession).where(UserSession.id == row.id, UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())))
    db.session.commit()
    if ended:
        audit.record("auth.session_replayed", object_type="user_session", object_id=row.id,
                     before={"user_agent": row.user_agent, "ip": row.ip},
                     after={"user_agent": _user_agent(), "ip": (request.remote_addr or "")[:64], "revoked": True},
                     note="session cookie presented by another browser (User-Agent differs); session ended")


def touch(user):
    """Update 'last seen' at most every SESSION_TOUCH_SECONDS (not one write per request)."""
    seen = g.pop("session_seen", None)
    if seen is None:
        row = current_row()
        if row is None or row.user_id != user.id:
            return
        seen = (row.id, row.last_seen_at)
    row_id, last_seen_at = seen
    now = utcnow()
    if last_seen_at < now - timedelta(seconds=_touch_seconds()):
        db.session.execute(update(UserSession).where(UserSession.id == row_id)
                           .values(last_seen_at=now, ip=(request.remote_addr or "")[:64]))
        db.session.commit()


def active_sessions(user):
    rows = db.session.execute(db.select(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None),
        UserSession.epoch == (user.session_epoch or 0)).order_by(UserSession.last_seen_at.desc())).scalars().all()
    now = utcnow()
    return [row for row in rows if is_active(row, user, now)]


def revoke(user, session_id):
    """Sign out one of the user's own sessions (another user's id is simply not found)."""
    row = db.session.get(UserSession, session_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None:
        raise NotFound("This session does not exist or has already ended.")
    row.revoked_at = utcnow()
    db.session.commit()
    audit.record("auth.session_revoked", object_type="user_session", object_id=row.id,
                 before={"user_agent": row.user_agent, "ip": row.ip})


def end_other_sessions(user):
    """After a privilege change of `user` (role, flags): every other session of theirs ends; when
    the change is made from their own browser, that session continues under a new id."""
    from flask import has_request_context
    from flask_login import current_user, login_user

    user.session_epoch = (user.session_epoch or 0) + 1
    own = has_request_context() and getattr(current_user, "is_authenticated", False) and current_user.id == user.id
    db.session.execute(update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
                       .values(revoked_at=utcnow()))
    db.session.commit()
    if own:
        login_user(user)  # the new epoch in this browser's cookie
        start(user)       # and a new session id


def revoke_all(user):
    """Sign out everywhere: every session of the user ends, this one included, and every API token."""
    ended = affected_rows(db.session.execute(update(UserSession).where(UserSession.user_id == user.id,
                                                         UserSession.revoked_at.is_(None))
                               .values(revoked_at=utcnow())))
    user.session_epoch = (user.session_epoch or 0) + 1
    tokens.end_tokens_of(user.id, tokens.SIGNED_OUT_EVERYWHERE)  # commits the new epoch with it
    audit.record("auth.sessions_revoked_all", object_type="user", object_id=user.id, after={"sessions": ended})
    return ended
