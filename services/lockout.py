"""The account lockout: every check of an account's secret — the password at sign-in, the TOTP or
recovery code of the second step, and the password or code re-checks of a signed-in user (password
change, turning TOTP off, new recovery codes, API token creation) — claims an attempt first and
verifies second.

The claim is one conditional UPDATE that counts the attempt as a failure in advance and refuses
while the account is locked; the LOCKOUT_THRESHOLD-th claim sets the lock itself. So however many
requests arrive at once, on any number of web processes, at most LOCKOUT_THRESHOLD verifications
run per lock window and everything after them is refused without looking at the secret. (The old
code read the row, verified, then counted: 30 parallel guesses were all verified.)

Settling: a completed sign-in resets the counter; any other success (the password step of a
two-step sign-in, a re-check) gives its own claim back; a failure keeps it, and the failure that
holds the threshold-th claim confirms the lock for LOCKOUT_SECONDS from that moment (audited once
as `auth.locked`). A claim whose request dies mid-check stays counted; a lock always ends, and the
first claim after it starts counting from one again.
"""
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, literal, or_, update

import audit
from extensions import affected_rows, db
from models import Membership, User, utcnow
from models.base import UTCDateTime
from services import passwords, settings


@dataclass(frozen=True)
class Claim:
    """One counted attempt on an account: `number` is the counter after this claim."""

    user_id: int
    email: str
    number: int
    password_hash: str
    is_active: bool


def member_of(user_id):
    """The workspaces the user is a member of now: sign-in events are recorded with them, so each
    workspace's audit log shows its members' sign-ins and nobody else's."""
    if user_id is None:
        return []
    return sorted(db.session.scalars(db.select(Membership.workspace_id).where(Membership.user_id == user_id)))


def record(action, user_id, email, **fields):
    """An auth.* audit event about an account, visible in the audit log of each of its workspaces."""
    audit.record(action, actor_id=user_id, actor_email=email, member_of=member_of(user_id), **fields)


def claim(*, user_id=None, email=None):
    """Count one attempt on the account (by id or normalised e-mail) unless it is locked.

    Returns the Claim, or None when there is no such account or it is locked (the caller cannot
    tell which, and must not behave differently). Commits: the claim is visible to every process
    before the secret is checked, and no transaction stays open during the check."""
    db.session.commit()  # no read snapshot held: on SQLite the UPDATE then waits for the write lock
    now = utcnow()
    threshold = settings.value("LOCKOUT_THRESHOLD")
    until = now + timedelta(seconds=settings.value("LOCKOUT_SECONDS"))
    # A lock that has ended (locked_until in the past) starts a new count at one.
    count = case((User.locked_until.is_not(None), 1), else_=User.failed_logins + 1)
    key = User.id == user_id if user_id is not None else User.email == email
    statement = (
        update(User)
        .where(key, or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(failed_logins=count,
                locked_until=case((count >= threshold, literal(until, UTCDateTime())), else_=None))
        .returning(User.id, User.email, User.failed_logins, User.password_hash, User.is_active_account)
        .execution_options(synchronize_session=False)
    )
    row = db.session.execute(statement).one_or_none()
    db.session.commit()
    return None if row is None else Claim(*row)


def signed_in(attempt):
    """A completed sign-in: the counter starts again and any lock is gone."""
    db.session.execute(update(User).where(User.id == attempt.user_id)
                       .values(failed_logins=0, locked_until=None, last_login_at=utcnow())
                       .execution_options(synchronize_session=False))
    db.session.commit()


def give_back(attempt):
    """A success that is not a completed sign-in: this claim no longer counts, and a lock that only
    this claim had reached is lifted (the secret was right)."""
    threshold = settings.value("LOCKOUT_THRESHOLD")
    remaining = User.failed_logins - 1
    db.session.execute(update(User).where(User.id == attempt.user_id, User.failed_logins > 0)
                       .values(failed_logins=remaining,
                               locked_until=case((remaining >= threshold, User.locked_until), else_=None))
                       .execution_options(synchronize_session=False))
    db.session.commit()


def failed(attempt, action, note):
    """A wrong secret: the claim stays counted. The failure holding the threshold-th claim confirms
    the lock (LOCKOUT_SECONDS from now). Records `action` (and `auth.locked`); True when it locked."""
    threshold, seconds = settings.value("LOCKOUT_THRESHOLD"), settings.value("LOCKOUT_SECONDS")
    locked = False
    if attempt.number >= threshold:
        until = utcnow() + timedelta(seconds=seconds)
        locked = affected_rows(db.session.execute(
            update(User).where(User.id == attempt.user_id, User.failed_logins >= threshold,
                               User.locked_until.is_not(None))
            .values(locked_until=until).execution_options(synchronize_session=False))) == 1
        db.session.commit()
        if locked:
            record("auth.locked", attempt.user_id, attempt.email, object_type="user", object_id=attempt.user_id,
                   after={"locked_until": until})
            note += f"; account locked for {seconds} s"
    record(action, attempt.user_id, attempt.email, note=note)
    return locked


# What a failed re-check tells the user (password change, turning off the second factor).
WRONG_CURRENT_PASSWORD = ("Your current password is not correct. After three wrong attempts the account is "
                          "locked for a minute.")


def verify_password_for(user_id, password, *, purpose):
    """The one password re-check for a signed-in user (`purpose` names it in the audit: "change
    password", "turn off two-step sign-in", "create API token"). Counted by the lockout like a
    sign-in; False for a wrong password and while the account is locked. Raises SignInBusy."""
    return verified_hash_for(user_id, password, purpose=purpose) is not None


def verified_hash_for(user_id, password, *, purpose):
    """`verify_password_for`, answering with the stored hash the password was checked against (None
    when refused): a caller that must not act on a password changed meanwhile compares it later."""
    with passwords.verification_slot():
        attempt = claim(user_id=user_id)
        if attempt is None:
            passwords.dummy_verify(password or "")
            ok = False
        else:
            ok = passwords.verify_password(attempt.password_hash, password or "")
    if attempt is None:
        user = db.session.get(User, user_id)
        record("auth.reauth_refused", user_id, user.email if user else None, note=f"{purpose}: account locked")
    elif ok:
        give_back(attempt)
    else:
        failed(attempt, "auth.reauth_failed", f"{purpose}: wrong password")
    return attempt.password_hash if ok else None


def check_for(user_id, check, *, purpose):
    """Run `check()` (e.g. a TOTP or recovery code check of a signed-in user) under the lockout:
    its result when truthy, None when it failed or the account is locked. Raises SignInBusy."""
    with passwords.verification_slot():
        attempt = claim(user_id=user_id)
        result = check() if attempt is not None else None
    if attempt is None:
        user = db.session.get(User, user_id)
        record("auth.reauth_refused", user_id, user.email if user else None, note=f"{purpose}: account locked")
    elif result:
        give_back(attempt)
    else:
        failed(attempt, "auth.reauth_failed", f"{purpose}: wrong code")
    return result or None
