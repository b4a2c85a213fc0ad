"""The seal's hashing, by hand: canonical JSON (sorted keys, no spaces, UTF-8, ms UTC times) and the
hash chain over raw digests, so that anyone can recompute a root outside this code base."""
import hashlib
from datetime import UTC, datetime, timedelta, timezone

from services import audit_seals


def test_canonical_json_is_sorted_compact_utf8_with_millisecond_utc():
    event = {"b": 1, "a": {"z": "ü", "y": [1, 2.5, None]},
             "ts": datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))}
    assert audit_seals.canonical(event) == \
        '{"a":{"y":[1,2.5,null],"z":"ü"},"b":1,"ts":"2026-11-28T10:00:00.123+00:00"}'.encode()


def test_chain_by_hand():
    h1, h2 = hashlib.sha256(b"one").hexdigest(), hashlib.sha256(b"two").hexdigest()
    first = hashlib.sha256(bytes(32) + bytes.fromhex(h1)).digest()
    expected = hashlib.sha256(first + bytes.fromhex(h2)).hexdigest()
    assert audit_seals.chain(audit_seals.GENESIS, [h1, h2]) == expected
    assert audit_seals.chain(audit_seals.GENESIS, []) == audit_seals.GENESIS  # an empty seal keeps the root
    assert audit_seals.chain(audit_seals.GENESIS, [h2, h1]) != expected      # order matters


def test_leaf_and_arrival():
    event = {"_id": "e1", "arrived": 1700000000123, "ts": datetime(2026, 1, 1, tzinfo=UTC), "workspace_id": 7}
    assert audit_seals.leaf(event)[:4] == ["e1", 1700000000123, 1767225600000, 7]
    assert audit_seals.leaf(event)[4] == hashlib.sha256(audit_seals.canonical(event)).hexdigest()
    for bad in (None, "1700000000123", True, 1.5):
        assert audit_seals.arrival({"arrived": bad}) == audit_seals.LEGACY_ARRIVAL
