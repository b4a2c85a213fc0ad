"""Phone numbers: the one normaliser, the keyed ctn_hash, the masking function and the search rule.

`normalise_number` strips spaces, dashes, dots, brackets, a leading `+` or `00`, and accepts
7–15 digits. `ctn_hash` is an HMAC-SHA-256 keyed per workspace: the key is
HMAC-SHA-256(CTN_HASH_KEY, "ctn-hash:<workspace id>") (config.py makes CTN_HASH_KEY default to
SECRET_KEY), so hashes cannot be reversed by enumerating the number space, and the same number
has unrelated hashes in two workspaces (a hash table built in one cannot unmask another).
Rotating CTN_HASH_KEY changes every hash (stop-list and dedup comparisons use numbers, not
hashes). `mask_number` is the one masking function; `mask_text` applies it to every
number-looking digit run of free text (job errors' raw lines). `parse_search` is the one rule for
searching by number or hash: without the right to view full numbers only a hash prefix is accepted.
"""
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import overload

from flask import current_app

from services.errors import DomainError

_STRIP = re.compile(r"[\s\-.()\[\]/]")
MIN_DIGITS, MAX_DIGITS = 7, 15
HASH_KEY_CONTEXT = b"ctn-hash:"        # derivation label of the per-workspace key (migration 0010)
MASK_VISIBLE = 3                       # trailing digits a masked number keeps
MIN_HASH_SEARCH = 6                    # characters of a ctn_hash prefix a search needs
# A hash prefix made of digits only could be a phone number: it must be longer than any number.
MIN_DIGIT_HASH_SEARCH = MAX_DIGITS + 1
_HEX = re.compile(r"[0-9a-f]+")
# A digit run in free text: digits joined by at most three other characters ("+49 (170) 123-45",
# "4917012x34567"), so separators or a stray letter cannot split a number into short, unmasked runs.
_DIGIT_RUN = re.compile(r"\d(?:\D{0,3}\d)*")
_DIGIT = re.compile(r"\d")


class BadNumber(ValueError):
    """A line that is not a phone number; the message says why (shown as a job error)."""


def normalise_number(raw: str | None) -> str:
    text = _STRIP.sub("", (raw or "").strip().strip('"').strip("'"))
    if text.startswith("+"):
        text = text[1:]
    elif text.startswith("00"):
        text = text[2:]
    if not text:
        raise BadNumber("empty number")
    if not (text.isascii() and text.isdigit()):  # str.isdigit() accepts e.g. Arabic-Indic digits
        raise BadNumber("contains characters other than digits")
    if len(text) < MIN_DIGITS:
        raise BadNumber(f"too short ({len(text)} digits, at least {MIN_DIGITS})")
    if len(text) > MAX_DIGITS:
        raise BadNumber(f"too long ({len(text)} digits, at most {MAX_DIGITS})")
    return text


def installation_hash_key() -> bytes:
    """CTN_HASH_KEY as bytes (config.py defaults it to SECRET_KEY)."""
    key: str = current_app.config["CTN_HASH_KEY"]
    return key.encode("utf-8")


def derive_hash_key(installation_key: bytes, workspace_id: int) -> bytes:
    """The workspace's ctn_hash key: HMAC-SHA-256(installation key, "ctn-hash:<workspace id>")."""
    return hmac.digest(installation_key, HASH_KEY_CONTEXT + str(int(workspace_id)).encode("ascii"), "sha256")


def hash_key(workspace_id: int) -> bytes:
    """The ctn_hash key of one workspace; derive it once per batch or upload, not per number."""
    return derive_hash_key(installation_hash_key(), workspace_id)


def ctn_hash(number: str, workspace_id: int) -> str:
    """The keyed hash of a normalised number in one workspace (hex, 64 characters)."""
    return hmac.digest(hash_key(workspace_id), number.encode("ascii"), "sha256").hex()


def ctn_hasher(key: bytes) -> Callable[[bytes], bytes]:
    """A fast `ctn_hash` for the ingest: ASCII number bytes -> hex digest bytes, same value.

    HMAC is H((K^opad) || H((K^ipad) || m)); the two keyed SHA-256 states are computed once and
    copied per number, which halves the cost of `hmac.digest` (it redoes the key blocks).
    """
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(key.translate(bytes(b ^ 0x36 for b in range(256)))).copy
    outer = hashlib.sha256(key.translate(bytes(b ^ 0x5C for b in range(256)))).copy
    hexlify = binascii.hexlify

    def hash_number(number: bytes) -> bytes:
        i = inner()
        i.update(number)
        o = outer()
        o.update(i.digest())
        return hexlify(o.digest())

    return hash_number


def mask_number(number: str | None, visible: int = MASK_VISIBLE) -> str:
    """`491701234567` -> `•••••••••567`: enough to tell numbers apart, not to dial them."""
    if not number:
        return ""
    return "•" * max(len(number) - visible, 0) + number[-visible:]


def display_number(number: str, may_view_full: bool) -> str:
    return number if may_view_full else mask_number(number)


@overload
def mask_text(text: str) -> str: ...
@overload
def mask_text(text: None) -> None: ...
def mask_text(text: str | None) -> str | None:
    """Free text (a job error's raw line) with every number-looking digit run masked by
    `mask_number`: a run of MIN_DIGITS or more digits keeps its last digits and its separators,
    `+49 (170) 1234567` -> `+•• (•••) ••••567`. Shorter runs (a line number, a year) stay."""
    if not text:
        return text
    return _DIGIT_RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group()
    digits = _DIGIT.findall(run)
    if len(digits) < MIN_DIGITS:
        return run
    masked = iter(mask_number("".join(digits)))
    return _DIGIT.sub(lambda _: next(masked), run)


@overload
def display_text(text: str, may_view_full: bool) -> str: ...
@overload
def display_text(text: None, may_view_full: bool) -> None: ...
def display_text(text: str | None, may_view_full: bool) -> str | None:
    return text if may_view_full else mask_text(text)


class SearchRefused(DomainError):
    """A number search by someone who may not see numbers: the same answer whether it exists or not."""

    code = "hash_search_only"


HASH_ONLY_MESSAGE = ("Search by hash: enter the start of a ctn_hash (at least 6 characters; at least 16 when "
                     "it has only digits). Searching or viewing phone numbers needs the 'view numbers' right "
                     "(“May see full phone numbers” on the Members page, given by a workspace admin).")
BAD_SEARCH_MESSAGE = "Search by a full phone number or by a hash (at least 6 characters)."


def parse_search(query: str | None, may_view_full: bool) -> tuple[str, str] | None:
    """A search box's text -> ("number", normalised) or ("hash", lower-case prefix); None when empty.

    With the right to view full numbers: a full number (exact) or a hash prefix. Without it: a
    hash prefix only, and anything that could be a number (digits only, up to MAX_DIGITS of
    them, or with number punctuation) is refused before any lookup, with the same message
    whether the number exists or not.
    """
    q = (query or "").strip().lower()
    if not q:
        return None
    is_hex = len(q) >= MIN_HASH_SEARCH and _HEX.fullmatch(q) is not None and len(q) <= 64
    if not may_view_full:
        if is_hex and (not q.isdigit() or len(q) >= MIN_DIGIT_HASH_SEARCH):
            return ("hash", q)
        raise SearchRefused(HASH_ONLY_MESSAGE)
    if is_hex and not q.isdigit():
        return ("hash", q)
    try:
        return ("number", normalise_number(q))
    except BadNumber:
        if is_hex:
            return ("hash", q)
        raise DomainError(BAD_SEARCH_MESSAGE, code="bad_search") from None
