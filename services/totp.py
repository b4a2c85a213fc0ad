"""TOTP second factor (RFC 6238, pyotp) and the ten single-use recovery codes.

Enrolment: `begin_enrolment` keeps an unconfirmed secret, the account page shows it as a QR code
rendered here (segno, an SVG data URI — no external service), `confirm_enrolment` accepts the first
code and returns the recovery codes, shown once. A code is accepted once (the last used 30-second
step is kept); recovery codes are stored as argon2id hashes and each works once. Sign-in failures
of the second step, and the code re-checks of a signed-in user, claim an attempt on the same lockout
counter as passwords before the code is checked (services/lockout.py).
"""
import hmac
import secrets
import time

import pyotp
import segno
from flask import current_app
from sqlalchemy import update

import audit
from extensions import affected_rows, db
from models import RecoveryCode, UserTotp, utcnow
from services import lockout, passwords, settings
from services.errors import DomainError

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to copy from paper
STEP_SECONDS = 30


def issuer():
    return current_app.config["TOTP_ISSUER"]


def totp_min_password_length():
    return current_app.config["TOTP_PASSWORD_MIN_LENGTH"]


def required_for(user):
    """Does the installation require a second factor of this user (admins and super admins)?"""
    if not settings.value("TOTP_REQUIRED_FOR_ADMINS"):
        return False
    return bool(user.is_superadmin or any(m.role == "admin" for m in user.memberships))


def _row(user):
    return db.session.get(UserTotp, user.id)


def is_enrolled(user):
    row = _row(user)
    return row is not None and row.confirmed_at is not None


def pending_secret(user):
    row = _row(user)
    return row.secret if row is not None and row.confirmed_at is None else None


def begin_enrolment(user):
    """A new unconfirmed secret (replacing an earlier unconfirmed one)."""
    row = _row(user)
    if row is not None and row.confirmed_at is not None:
        raise DomainError("A second factor is already set up for this account.", code="totp_enrolled", status=409)
    if row is None:
        row = UserTotp(user_id=user.id, secret="")
        db.session.add(row)
    row.secret = pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends
    row.last_step = 0
    row.created_at = utcnow()
    db.session.commit()
    return row.secret


def provisioning_uri(user, secret):
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer())


def qr_data_uri(uri):
    """The otpauth:// URI as a QR code in an SVG data URI (allowed by our CSP's img-src data:)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def _normalise_code(code):
    return "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-").lower()


def _check_totp(row, code):
    """Accept a 6-digit code of the previous, current or next step, newer than the last one used."""
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return False
    totp = pyotp.TOTP(row.secret)
    now_step = int(time.time()) // STEP_SECONDS
    matched = None
    for step in (now_step - 1, now_step, now_step + 1):  # no early exit: same work for every code
        if hmac.compare_digest(totp.generate_otp(step), code) and step > (row.last_step or 0):
            matched = step
    if matched is None:
        return False
    # Conditional UPDATE: two requests racing with the same code cannot both win.
    won = affected_rows(db.session.execute(update(UserTotp).where(UserTotp.user_id == row.user_id,
                                                    UserTotp.last_step < matched)
                             .values(last_step=matched)))
    db.session.commit()
    return won == 1


def _new_recovery_codes(user):
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
        codes.append(f"{raw[:4]}-{raw[4:8]}-{raw[8:]}")
        db.session.add(RecoveryCode(user_id=user.id, code_digest=passwords.hash_password(raw)))
    return codes


def _use_recovery_code(user, code):
    if len(code) != 12 or any(ch not in _RECOVERY_ALPHABET for ch in code):
        return False
    unused = db.session.execute(db.select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                              RecoveryCode.used_at.is_(None))).scalars().all()
    for row in unused:
        # argon2's verify compares in constant time; each stored code has its own salt.
        if passwords.verify_password(row.code_digest, code):
            won = affected_rows(db.session.execute(update(RecoveryCode).where(RecoveryCode.id == row.id,
                                                                RecoveryCode.used_at.is_(None))
                                     .values(used_at=utcnow())))
            db.session.commit()
            if won == 1:
                audit.record("auth.recovery_code_used", actor_id=user.id, actor_email=user.email,
                             object_type="user", object_id=user.id,
                             after={"recovery_codes_left": remaining_recovery_codes(user)})
                return True
            return False
    return False


def verify(user, code):
    """'totp' or 'recovery' when `code` is a valid TOTP or unused recovery code, else None."""
    row = _row(user)
    if row is None or row.confirmed_at is None:
        return None
    code = _normalise_code(code)
    if _check_totp(row, code):
        return "totp"
    if _use_recovery_code(user, code):
        return "recovery"
    return None


def remaining_recovery_codes(user):
    return db.session.scalar(db.select(db.func.count(RecoveryCode.id)).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0


def confirm_enrolment(user, code):
    """Accept the first code of the authenticator; return the ten recovery codes (shown once)."""
    row = _row(user)
    if row is None or row.confirmed_at is not None:
        raise DomainError("Start the set-up again: there is no second factor waiting for confirmation.",
                          code="totp_not_pending", status=409)
    if not _check_totp(row, _normalise_code(code)):
        raise DomainError("That code is not right. Check the time on your phone and enter the current code.",
                          code="totp_wrong_code")
    row.confirmed_at = utcnow()
    codes = _new_recovery_codes(user)
    user.session_epoch = (user.session_epoch or 0) + 1  # a privilege change: other sessions end
    db.session.commit()
    audit.record("auth.totp_enabled", object_type="user", object_id=user.id,
                 after={"recovery_codes": RECOVERY_CODES})
    return codes


def regenerate_recovery_codes(user, code):
    if lockout.check_for(user.id, lambda: verify(user, code) == "totp", purpose="new recovery codes") is None:
        raise DomainError("Enter a current code from your authenticator app.", code="totp_wrong_code")
    codes = _new_recovery_codes(user)
    db.session.commit()
    audit.record("auth.recovery_codes_regenerated", object_type="user", object_id=user.id,
                 after={"recovery_codes": RECOVERY_CODES})
    return codes


def disable(user, password, code, new_password=None):
    """Remove the second factor. A password shorter than the password-only minimum must be
    replaced in the same step (NIST 800-63B: 15 characters without a second factor)."""
    if not lockout.verify_password_for(user.id, password or "", purpose="turn off two-step sign-in"):
        raise DomainError(lockout.WRONG_CURRENT_PASSWORD, code="wrong_password")
    if lockout.check_for(user.id, lambda: verify(user, code), purpose="turn off two-step sign-in") is None:
        raise DomainError("Enter a current code from your authenticator app, or an unused recovery code.",
                          code="totp_wrong_code")
    min_length = settings.value("PASSWORD_MIN_LENGTH")
    changed_password = False
    if len(password) < min_length or new_password:
        if not new_password:
            raise DomainError(f"Without a second factor your password needs at least {min_length} characters: "
                              "choose a new one in the same form.", code="password_too_short")
        passwords.require_policy(new_password, email=user.email, min_length=min_length)
        user.password_hash = passwords.hash_password(new_password)
        changed_password = True
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    db.session.execute(db.delete(UserTotp).where(UserTotp.user_id == user.id))
    user.session_epoch = (user.session_epoch or 0) + 1
    db.session.commit()
    audit.record("auth.totp_disabled", object_type="user", object_id=user.id,
                 after={"password_changed": changed_password})
    if changed_password:
        audit.record("auth.password_changed", object_type="user", object_id=user.id, note="on disabling TOTP")


def code_now(secret, at=None):
    """The current code for a secret (tests and the CLI)."""
    return pyotp.TOTP(secret).at(at if at is not None else time.time())

