"""Password policy (NIST 800-63B rev. 4) and argon2id hashing.

Length only — no composition rules: at least 15 characters for a password-only account (8 once
a second factor is enrolled), at most 128, and not on the shipped list of common passwords
(services/data/common-passwords.txt.gz, the 20k-entry list Django ships, BSD licence).
"""
import functools
import gzip
import os

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MAX_LENGTH = 128
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
_COMMON_PATH = os.path.join(os.path.dirname(__file__), "data", "common-passwords.txt.gz")
# Verified against when the email is unknown, so both paths cost one argon2 verification.
_DUMMY_HASH = _hasher.hash("message-center-timing-equaliser")


@functools.cache
def _common_passwords():
    with gzip.open(_COMMON_PATH, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh if line.strip())


def policy_errors(password, *, email=None, min_length=15):
    """Every rule the password breaks, as messages a user can act on (empty list = acceptable)."""
    errors = []
    if len(password) < min_length:
        errors.append(f"Use at least {min_length} characters (you typed {len(password)}). "
                      "A few unrelated words make a long password easy to remember.")
    if len(password) > MAX_LENGTH:
        errors.append(f"Use at most {MAX_LENGTH} characters.")
    if password.lower() in _common_passwords():
        errors.append("This password is on the list of commonly used passwords; choose another.")
    if email and password.lower() in {email.lower(), email.split("@")[0].lower()}:
        errors.append("Do not use your e-mail address as your password.")
    return errors


def hash_password(password):
    return _hasher.hash(password)


def verify_password(password_hash, password):
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash):
    return _hasher.check_needs_rehash(password_hash)
