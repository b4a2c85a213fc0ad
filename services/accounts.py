"""Accounts: sign-in (claimed by the lockout in services/lockout.py before any check), user creation
and password changes."""
from sqlalchemy import update

import audit
from extensions import db
from models import User
from services import lockout, passwords, settings, tokens, totp
from services.errors import DomainError

SIGN_IN_REFUSED = "Invalid e-mail or password, or the account is temporarily locked. Try again in a minute."
SECOND_FACTOR_REFUSED = "Invalid code, or the account is temporarily locked. Try again in a minute."


def normalise_email(email):
    return (email or "").strip().lower()


def find_user(email):
    return db.session.execute(db.select(User).filter_by(email=normalise_email(email))).scalar_one_or_none()


def authenticate(email, password):
    """Return the user on success, else raise DomainError with one message for every failure.

    Unknown user, wrong password and locked account are indistinguishable to the caller, in the
    message and in the cost (each is one argon2 verification). The attempt is claimed before the
    password is checked (services/lockout.py), so a burst of parallel guesses gets at most
    LOCKOUT_THRESHOLD verifications. Raises SignInBusy (503) when no verification slot is free.
    """
    email = normalise_email(email)
    with passwords.verification_slot():
        attempt = lockout.claim(email=email)
        if attempt is None:
            passwords.dummy_verify(password)
            password_ok = False
        else:
            password_ok = passwords.verify_password(attempt.password_hash, password)
            if password_ok and attempt.is_active and passwords.needs_rehash(attempt.password_hash):
                _rehash(attempt.user_id, password)

    if attempt is None:
        user = find_user(email)
        if user is None:
            audit.record("auth.login_failed", actor_email=email, note="unknown account")
        else:
            lockout.record("auth.login_refused", user.id, user.email, note="account locked")
        raise DomainError(SIGN_IN_REFUSED, code="sign_in_refused", status=401)
    if not password_ok or not attempt.is_active:
        lockout.failed(attempt, "auth.login_failed", "wrong password" if attempt.is_active else "inactive account")
        raise DomainError(SIGN_IN_REFUSED, code="sign_in_refused", status=401)

    user = db.session.get_one(User, attempt.user_id)
    if totp.is_enrolled(user):
        # Only a complete sign-in resets the counter: the right password gives its own claim back,
        # so knowing it buys no fresh guesses at the second factor.
        lockout.give_back(attempt)
        lockout.record("auth.password_ok", user.id, user.email, note="second factor required")
        return user
    lockout.signed_in(attempt)
    lockout.record("auth.login", user.id, user.email)
    return user


def _rehash(user_id, password):
    """The stored hash uses other argon2 parameters than the shipped ones: store a new one."""
    db.session.execute(update(User).where(User.id == user_id).values(password_hash=passwords.hash_password(password))
                       .execution_options(synchronize_session=False))
    db.session.commit()
    audit.record("auth.password_rehashed", actor_id=user_id, object_type="user", object_id=user_id,
                 note="argon2 parameters changed")


def complete_second_factor(user_id, code):
    """The second step of a sign-in: a TOTP or recovery code. It claims an attempt on the same
    counter as passwords before the code is checked; a locked account is refused with the same
    message, without checking the code."""
    with passwords.verification_slot():
        attempt = lockout.claim(user_id=user_id)
        user = db.session.get(User, user_id)
        method = totp.verify(user, code) if attempt is not None and attempt.is_active else None
    if attempt is None:
        if user is not None:
            lockout.record("auth.login_refused", user.id, user.email, note="account locked (second factor)")
        raise DomainError(SECOND_FACTOR_REFUSED, code="sign_in_refused", status=401)
    if method is None:
        lockout.failed(attempt, "auth.login_failed",
                       "wrong second-factor code" if attempt.is_active else "inactive account (second factor)")
        raise DomainError(SECOND_FACTOR_REFUSED, code="sign_in_refused", status=401)
    assert user is not None  # a code was verified, so the user exists (totp.verify is given the row)
    lockout.signed_in(attempt)
    lockout.record("auth.login", user.id, user.email, note=f"second factor: {method}")
    return user


def verify_password_for(user_id, password, *, purpose="password re-check"):
    """The password re-check of a signed-in user (password change, turning TOTP off, creating an API
    token — `purpose` names it in the audit): True when right; counted by the lockout like a sign-in,
    False while the account is locked; raises SignInBusy (503). See services/lockout.py."""
    return lockout.verify_password_for(user_id, password, purpose=purpose)


def min_password_length(user=None):
    """15 for a password-only account, 8 once a second factor is enrolled (NIST 800-63B rev. 4)."""
    if user is not None and user.id is not None and totp.is_enrolled(user):
        return totp.totp_min_password_length()
    return settings.value("PASSWORD_MIN_LENGTH")


def check_password_policy(password, email=None, *, user=None, min_length=None):
    min_length = min_length if min_length is not None else min_password_length(user)
    passwords.require_policy(password, email=email, min_length=min_length)


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


def check_current_password(user, password, *, purpose="password re-check"):
    """The password re-check before a sensitive change of the signed-in account (password change,
    API token creation): counted by the lockout like a sign-in (services/lockout.py). Returns the
    stored hash the password was checked against."""
    checked = lockout.verified_hash_for(user.id, password, purpose=purpose)
    if checked is None:
        raise DomainError(lockout.WRONG_CURRENT_PASSWORD, code="wrong_password")
    return checked


def change_password(user, current_password, new_password):
    check_current_password(user, current_password, purpose="change password")
    check_password_policy(new_password, user.email, user=user)
    user.password_hash = passwords.hash_password(new_password)
    user.session_epoch = (user.session_epoch or 0) + 1  # ends the user's other sessions
    tokens.end_tokens_of(user.id, tokens.PASSWORD_CHANGED)  # commits the new password with it
    audit.record("auth.password_changed", object_type="user", object_id=user.id)


def issue_api_token(user, workspace, name, days, password):
    """A new API token from the tokens page: a new credential, so the password is asked again.
    Returns (row, token) as `tokens.create_token` does."""
    days = tokens.lifetime_days(days)  # a wrong lifetime is refused before the password is tried
    checked = check_current_password(user, password, purpose="create API token")
    # The hash the password was checked against (not the user row, which may already hold a newer
    # one): create_token refuses the token if the stored hash differs by the time it is inserted.
    return tokens.create_token(user, workspace, name, days=days, password_hash_seen=checked)
