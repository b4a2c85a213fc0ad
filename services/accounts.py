"""Accounts: sign-in with database-backed lockout, user creation and password changes."""
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

import audit
from extensions import db
from models import User, utcnow
from services import passwords, tokens, totp
from services.errors import DomainError

SIGN_IN_REFUSED = "Invalid e-mail or password, or the account is temporarily locked. Try again in a minute."
SECOND_FACTOR_REFUSED = "Invalid code, or the account is temporarily locked. Try again in a minute."


def normalise_email(email):
    return (email or "").strip().lower()


def find_user(email):
    return db.session.execute(db.select(User).filter_by(email=normalise_email(email))).scalar_one_or_none()


def authenticate(email, password):
    """Return the user on success, else raise DomainError with one message for every failure.

    Unknown user, wrong password and locked account are indistinguishable to the caller. The
    failure counter is incremented with an atomic UPDATE, so concurrent attempts on several
    web processes cannot lose a count.
    """
    email = normalise_email(email)
    user = find_user(email)
    now = utcnow()
    password_ok = passwords.verify_password(user.password_hash if user else None, password)

    if user is None:
        audit.record("auth.login_failed", actor_email=email, note="unknown account")
        raise DomainError(SIGN_IN_REFUSED, code="sign_in_refused", status=401)
    if user.locked_until and user.locked_until > now:
        audit.record("auth.login_failed", actor_id=user.id, actor_email=user.email, note="account locked")
        raise DomainError(SIGN_IN_REFUSED, code="sign_in_refused", status=401)
    if not password_ok or not user.is_active:
        _count_failure(user, now)
        raise DomainError(SIGN_IN_REFUSED, code="sign_in_refused", status=401)

    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    if totp.is_enrolled(user):
        # The failure counter is NOT reset here: only a complete sign-in resets it, so knowing the
        # password does not buy fresh guesses at the second factor.
        db.session.commit()
        audit.record("auth.password_ok", actor_id=user.id, actor_email=user.email, note="second factor required")
        return user
    _signed_in(user, now)
    audit.record("auth.login", actor_id=user.id, actor_email=user.email)
    return user


def _signed_in(user, now):
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    db.session.commit()


def complete_second_factor(user_id, code):
    """The second step of a sign-in: a TOTP or recovery code. Failures count towards the same
    lockout as wrong passwords; a locked account is refused with the same message."""
    user = db.session.get(User, user_id)
    now = utcnow()
    if user is None or not user.is_active:
        raise DomainError(SECOND_FACTOR_REFUSED, code="sign_in_refused", status=401)
    if user.locked_until and user.locked_until > now:
        audit.record("auth.login_failed", actor_id=user.id, actor_email=user.email, note="account locked (second factor)")
        raise DomainError(SECOND_FACTOR_REFUSED, code="sign_in_refused", status=401)
    method = totp.verify(user, code)
    if method is None:
        _count_failure(user, now, note="wrong second-factor code")
        raise DomainError(SECOND_FACTOR_REFUSED, code="sign_in_refused", status=401)
    _signed_in(user, now)
    audit.record("auth.login", actor_id=user.id, actor_email=user.email, note=f"second factor: {method}")
    return user


def _count_failure(user, now, note=None):
    threshold = current_app.config["LOCKOUT_THRESHOLD"]
    db.session.execute(update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1))
    db.session.commit()
    db.session.refresh(user)
    note = note or ("wrong password" if user.is_active else "inactive account")
    if user.failed_logins >= threshold:
        until = now + timedelta(seconds=current_app.config["LOCKOUT_SECONDS"])
        db.session.execute(update(User).where(User.id == user.id).values(locked_until=until, failed_logins=0))
        db.session.commit()
        audit.record("auth.locked", actor_id=user.id, actor_email=user.email,
                     object_type="user", object_id=user.id, after={"locked_until": until})
        note += f"; account locked for {current_app.config['LOCKOUT_SECONDS']} s"
    audit.record("auth.login_failed", actor_id=user.id, actor_email=user.email, note=note)


def min_password_length(user=None):
    """15 for a password-only account, 8 once a second factor is enrolled (NIST 800-63B rev. 4)."""
    if user is not None and user.id is not None and totp.is_enrolled(user):
        return totp.totp_min_password_length()
    return current_app.config["PASSWORD_MIN_LENGTH"]


def check_password_policy(password, email=None, *, user=None, min_length=None):
    min_length = min_length if min_length is not None else min_password_length(user)
    errors = passwords.policy_errors(password, email=email, min_length=min_length)
    if errors:
        raise DomainError(" ".join(errors), code="weak_password")


def create_user(email, password, *, name="", is_superadmin=False, enforce_policy=True):
    email = normalise_email(email)
    if not email or "@" not in email:
        raise DomainError("Enter a valid e-mail address.", code="invalid_email")
    if find_user(email) is not None:
        raise DomainError(f"An account for {email} already exists.", code="exists", status=409)
    if enforce_policy:
        check_password_policy(password, email)
    user = User(email=email, name=name or email.split("@")[0], password_hash=passwords.hash_password(password),
                is_superadmin=is_superadmin)
    db.session.add(user)
    db.session.flush()
    return user


def check_current_password(user, password):
    """The password re-check before a sensitive change of the signed-in account (password change,
    API token creation)."""
    if not passwords.verify_password(user.password_hash, password):
        raise DomainError("Your current password is not correct.", code="wrong_password")


def change_password(user, current_password, new_password):
    check_current_password(user, current_password)
    check_password_policy(new_password, user.email, user=user)
    user.password_hash = passwords.hash_password(new_password)
    user.session_epoch = (user.session_epoch or 0) + 1  # ends the user's other sessions
    tokens.end_tokens_of(user.id, tokens.PASSWORD_CHANGED)  # commits the new password with it
    audit.record("auth.password_changed", object_type="user", object_id=user.id)


def issue_api_token(user, workspace, name, days, password):
    """A new API token from the tokens page: a new credential, so the password is asked again.
    Returns (row, token) as `tokens.create_token` does."""
    days = tokens.lifetime_days(days)  # a wrong lifetime is refused before the password is tried
    check_current_password(user, password)
    # The hash just checked (after any rehash by the check): create_token refuses the token if the
    # stored one differs by the time the token is inserted.
    return tokens.create_token(user, workspace, name, days=days, password_hash_seen=user.password_hash)
