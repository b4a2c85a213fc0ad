"""Phone numbers: the one normaliser, the keyed ctn_hash and the masking function.

`normalise_number` strips spaces, dashes, dots, brackets, a leading `+` or `00`, and accepts
7–15 digits. `ctn_hash` is an HMAC-SHA-256 keyed with the installation secret (CTN_HASH_KEY,
falling back to SECRET_KEY), so hashes cannot be reversed by enumerating the number space;
rotating the key changes every hash (stop-list and dedup comparisons use numbers, not hashes).
"""
import binascii
import hashlib
import hmac
import re

from flask import current_app

_STRIP = re.compile(r"[\s\-.()\[\]/]")
MIN_DIGITS, MAX_DIGITS = 7, 15


class BadNumber(ValueError):
    """A line that is not a phone number; the message says why (shown as a job error)."""


def normalise_number(raw):
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


def hash_key():
    key = current_app.config.get("CTN_HASH_KEY") or current_app.config["SECRET_KEY"]
    return key.encode("utf-8")


def ctn_hash(number, key=None):
    return hmac.digest(key or hash_key(), number.encode("ascii"), "sha256").hex()


def ctn_hasher(key):
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

    def hash_number(number):
        i = inner()
        i.update(number)
        o = outer()
        o.update(i.digest())
        return hexlify(o.digest())

    return hash_number


def mask_number(number, visible=3):
    """`491701234567` -> `•••••••••567`: enough to tell numbers apart, not to dial them."""
    if not number:
        return ""
    return "•" * max(len(number) - visible, 0) + number[-visible:]


def display_number(number, may_view_full):
    return number if may_view_full else mask_number(number)
