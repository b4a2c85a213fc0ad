"""Random tokens and their stored form: only a SHA-256 digest is kept, compared in constant time."""
import hashlib
import hmac
import secrets


def new_token(prefix):
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def digest(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def matches(token, stored_digest):
    return hmac.compare_digest(digest(token), stored_digest)
