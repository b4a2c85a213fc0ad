"""Password policy (NIST 800-63B rev. 4), argon2id hashing, and the gate that bounds how many
verifications one web process runs at once.

Policy — length only, no composition rules: at least 15 characters for a password-only account (8
once a second factor is enrolled), at most 128, and not on the shipped list of common passwords
(services/data/common-passwords.txt.gz, the 20k-entry list Django ships, BSD licence).

Hashing: argon2id with one of the OWASP Password Storage Cheat Sheet's equally strong configurations,
m = 9 MiB (9,216 KiB), t = 4, p = 1. Of the five it lists (46 MiB/t=1, 19/2, 12/3, 9/4, 7/5) this one
was the cheapest per verification measured on our 2-core machine: 19.0 ms and 9 MiB, against 22.6 ms
and 19 MiB for 19 MiB/t=2 — sign-in storms are CPU-bound, so the cheaper equal profile is the one that
keeps 50 simultaneous sign-ins inside their budget. A stored hash with other parameters is re-hashed
at the next sign-in (`needs_rehash`).

Gate: every verification of a secret (password, recovery code, the unknown-user dummy) runs inside
`verification_slot()`, a semaphore of SIGNIN_CONCURRENCY slots per web process. A request that
cannot get a slot within SIGNIN_WAIT_SECONDS, or finds SIGNIN_MAX_WAITING requests already waiting,
is refused with `SignInBusy` (HTTP 503, Retry-After), so a flood of sign-ins costs at most
SIGNIN_CONCURRENCY × 9 MiB and as many cores per process, and leaves web threads for other pages.
"""
import contextlib
import functools
import gzip
import os
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app

from services.errors import DomainError

MAX_LENGTH = 128
# OWASP Password Storage Cheat Sheet, argon2id: "m=9216 (9 MiB), t=4, p=1" (see the module docstring).
ARGON2_MEMORY_KIB = 9 * 1024
ARGON2_TIME_COST = 4
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM)
_COMMON_PATH = os.path.join(os.path.dirname(__file__), "data", "common-passwords.txt.gz")
_DUMMY_PASSWORD = "message-center-timing-equaliser"
_gate_lock = threading.Lock()
_held = threading.local()  # how deep this thread is inside verification_slot()


class SignInBusy(DomainError):
    """No verification slot came free in time: the server is busy, the attempt was not counted."""

    code = "busy"
    status = 503

    def __init__(self, retry_after):
        super().__init__("The server is busy checking other sign-ins. Nothing was counted against your "
                         f"account; try again in {retry_after} seconds.")
        self.retry_after = retry_after


@functools.cache
def _common_passwords():
    with gzip.open(_COMMON_PATH, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip().lower() for line in fh if line.strip())


@functools.cache
def _dummy_hash():
    """Verified against when there is no account to check (unknown e-mail, locked account), with the
    shipped parameters, so that path costs what a real verification costs."""
    shipped = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                             parallelism=ARGON2_PARALLELISM)
    return shipped.hash(_DUMMY_PASSWORD)


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


def require_policy(password, *, email=None, min_length=15):
    """Raise DomainError (`weak_password`) with every rule the password breaks."""
    errors = policy_errors(password, email=email, min_length=min_length)
    if errors:
        raise DomainError(" ".join(errors), code="weak_password")


def hash_password(password):
    return _hasher.hash(password)


def verify_password(password_hash, password):
    """True when `password` matches `password_hash`; a missing or broken hash costs one dummy
    verification and is False. Callers on a sign-in path hold a `verification_slot()`."""
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password):
    """One verification that always fails: the cost of checking a password that has no account."""
    verify_password(None, password)


def needs_rehash(password_hash):
    return _hasher.check_needs_rehash(password_hash)


class _Gate:
    """SIGNIN_CONCURRENCY slots, and at most SIGNIN_MAX_WAITING requests queued for one: a waiting
    request holds a web thread, so an unbounded queue would starve every other page (/healthz
    measured 1.8 s p95 during a flood of 64 unknown-user attempts while waiting sign-ins held all
    the threads). Keep SIGNIN_CONCURRENCY + SIGNIN_MAX_WAITING below gunicorn's threads."""

    def __init__(self, slots, max_waiting):
        self.slots = threading.BoundedSemaphore(slots)
        self.max_waiting = max_waiting
        self.waiting = 0
        self.lock = threading.Lock()

    def acquire(self, wait):
        if self.slots.acquire(blocking=False):
            return True
        with self.lock:
            if self.waiting >= self.max_waiting:
                return False
            self.waiting += 1
        try:
            return self.slots.acquire(timeout=wait)
        finally:
            with self.lock:
                self.waiting -= 1

    def release(self):
        self.slots.release()


def _gate():
    gate = current_app.extensions.get("mc_verification_gate")
    if gate is None:
        with _gate_lock:
            gate = current_app.extensions.get("mc_verification_gate")
            if gate is None:
                cfg = current_app.config
                gate = _Gate(cfg["SIGNIN_CONCURRENCY"], cfg["SIGNIN_MAX_WAITING"])
                current_app.extensions["mc_verification_gate"] = gate
    return gate


@contextlib.contextmanager
def verification_slot():
    """One of this process's SIGNIN_CONCURRENCY verification slots, or SignInBusy — at once when
    SIGNIN_MAX_WAITING requests already wait, else after SIGNIN_WAIT_SECONDS. Re-entrant per thread
    (a slot holder may verify several secrets, e.g. the recovery codes)."""
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    gate = _gate()
    wait = current_app.config["SIGNIN_WAIT_SECONDS"]
    if not gate.acquire(wait):
        raise SignInBusy(retry_after=max(1, round(wait)))
    _held.depth = 1
    try:
        yield
    finally:
        _held.depth = 0
        gate.release()
