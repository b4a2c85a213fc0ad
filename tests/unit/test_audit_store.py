"""AuditStore against real components: montydb on disk, pymongo against a closed
port for the "store is down" path, and the real fallback file."""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from audit.store import AuditStore, AuditStoreUnavailable, index_specs

LOGGER = "test.audit_store"
T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def event(i=0, *, ts=None, workspace_id=1, actor_email="alice@example.com",
          action="members.role_changed", object_type="member", object_id="1", **extra):
    ev = {
        "_id": str(uuid.uuid4()),
        "ts": ts or T0 + timedelta(seconds=i),
        "actor_id": 7,
        "actor_email": actor_email,
        "actor_role": "owner",
        "workspace_id": workspace_id,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "before": {"role": "member"},
        "after": {"role": "admin"},
        "note": None,
        "ip": "10.0.0.1",
        "user_agent": "pytest",
        "request_id": f"req-{i}",
    }
    ev.update(extra)
    return ev


def fallback_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def paths(tmp_path):
    return {"embedded_dir": str(tmp_path / "monty"), "fallback_path": str(tmp_path / "fb" / "audit.jsonl")}


@pytest.fixture
def embedded(paths):
    store = AuditStore(mongo_uri=None, logger=logging.getLogger(LOGGER), **paths)
    yield store
    store.close()


def down_store(paths, **kw):
    return AuditStore(mongo_uri=f"mongodb://127.0.0.1:{closed_port()}/audit_test",
                      timeout_ms=300, logger=logging.getLogger(LOGGER), **paths, **kw)


@pytest.fixture
def down(paths):
    # The default circuit breaker keeps later writes from re-trying the dead server.
    store = down_store(paths)
    yield store
    store.close()


# 1. round trip, filters, pagination ---------------------------------------------------

def test_init_has_no_side_effects(tmp_path):
    AuditStore(mongo_uri=None, embedded_dir=str(tmp_path / "m"), fallback_path=str(tmp_path / "f" / "a.jsonl"))
    assert list(tmp_path.iterdir()) == []


def test_round_trip_keeps_fields_and_utc_ms_datetime(embedded):
    ev = event(ts=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
               before={"settings": {"sms.sender": "ACME"}}, after={"tags": {"a", "b"}})
    assert embedded.write(ev) == "stored"
    rows, nxt = embedded.find(workspace_id=1)
    assert nxt is None and len(rows) == 1
    row = rows[0]
    assert row["_id"] == ev["_id"]
    assert row["ts"] == datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert row["ts"].tzinfo is UTC
    for key in ("actor_id", "actor_email", "actor_role", "action", "object_type", "object_id", "ip", "request_id"):
        assert row[key] == ev[key]
    assert isinstance(row["after"]["tags"], str)  # unserialisable values are stringified, not fatal
    assert list(row["before"]["settings"].values()) == ["ACME"]  # dotted key survived montydb
    assert embedded.write(ev) == "stored"  # retried write of the same event is idempotent
    assert embedded.count(workspace_id=1) == 1


def test_filters(embedded):
    evs = [
        event(0, actor_email="Alice.Admin@Example.com", action="auth.login_failed", object_type=None, object_id=None),
        event(1, actor_email="bob@example.com", action="auth.login", object_type=None, object_id=None),
        event(2, actor_email="carol@example.com", action="members.role_changed", object_type="member", object_id="5"),
        event(3, actor_email="alice.admin@example.com", action="members.removed", object_type="member", object_id="6"),
        event(4, actor_email="dave@other.com", action="auth.login_failed", workspace_id=2),
        event(5, actor_email="x+y@example.com", action="senders.created", object_type="sender", object_id="5"),
    ]
    for ev in evs:
        assert embedded.write(ev) == "stored"

    def ids(**kw):
        rows, _ = embedded.find(**kw)
        return [r["request_id"] for r in rows]

    assert ids(workspace_id=1) == ["req-5", "req-3", "req-2", "req-1", "req-0"]
    assert ids(all_workspaces=True) == ["req-5", "req-4", "req-3", "req-2", "req-1", "req-0"]
    assert ids(workspace_id=1, actor="ALICE.admin") == ["req-3", "req-0"]
    assert ids(workspace_id=1, actor="bob.example") == []  # "." is literal, not a regex wildcard
    assert ids(workspace_id=1, actor="x+y") == ["req-5"]
    assert ids(workspace_id=1, action="auth.") == ["req-1", "req-0"]
    assert ids(workspace_id=1, action="auth.login_failed") == ["req-0"]
    assert ids(workspace_id=1, action="login") == []  # prefix, not substring
    assert ids(all_workspaces=True, action="auth.login_failed") == ["req-4", "req-0"]
    assert ids(workspace_id=1, object_type="member", object_id="5") == ["req-2"]
    assert ids(workspace_id=1, object_id="5") == ["req-5", "req-2"]
    assert ids(workspace_id=1, since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3)) == ["req-2", "req-1"]
    assert ids(workspace_id=2) == ["req-4"]
    assert embedded.count(workspace_id=1, action="auth.") == 2
    with pytest.raises(ValueError):
        embedded.find()  # no workspace and not explicitly all workspaces


def test_keyset_pagination_three_pages(embedded):
    # Same-ts ties exercise the _id tie-breaker in the cursor.
    written = [event(i // 3) for i in range(25)]
    for ev in written:
        embedded.write(ev)
    seen, cursor, pages = [], None, 0
    while True:
        rows, cursor = embedded.find(workspace_id=1, cursor=cursor, limit=10)
        pages += 1
        seen.extend(rows)
        if cursor is None:
            break
    assert pages == 3
    assert [len(seen[i:i + 10]) for i in (0, 10, 20)] == [10, 10, 5]
    keys = [(r["ts"], r["_id"]) for r in seen]
    assert keys == sorted(keys, reverse=True)
    assert sorted(r["_id"] for r in seen) == sorted(ev["_id"] for ev in written)  # no gaps, no overlaps

    # Exactly one page's worth: no dangling cursor pointing at an empty page.
    rows, cursor = embedded.find(workspace_id=1, limit=25)
    assert len(rows) == 25 and cursor is None


@pytest.mark.parametrize("bad", ["not-base64!!", "Zm9v", "W10", "WyJ4IiwxXQ"])
def test_invalid_cursor(embedded, bad):
    with pytest.raises(ValueError):
        embedded.find(workspace_id=1, cursor=bad)


# 2. store down -> fallback ----------------------------------------------------------

def test_down_store_falls_back_quickly_and_warns_once(paths, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    down = down_store(paths, retry_interval=0)  # every write really tries the server
    evs = [event(i) for i in range(3)]
    for ev in evs:
        start = time.monotonic()
        assert down.write(ev) == "fallback"
        assert time.monotonic() - start < 5
    lines = fallback_lines(down.fallback_path)
    assert [line["_id"] for line in lines] == [ev["_id"] for ev in evs]
    assert lines[0]["ts"] == "2026-03-01T12:00:00.123+00:00"
    warnings = [r for r in caplog.records if "[audit-fallback]" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert down.fallback_size() == os.path.getsize(down.fallback_path)
    assert down.ping() is False
    with pytest.raises(AuditStoreUnavailable):
        down.find(workspace_id=1)
    down.close()


def test_circuit_breaker_skips_store_after_failure(paths):
    store = AuditStore(mongo_uri=f"mongodb://127.0.0.1:{closed_port()}/", timeout_ms=300,
                       retry_interval=60, **paths)
    assert store.write(event(0)) == "fallback"
    start = time.monotonic()
    assert store.write(event(1)) == "fallback"
    assert time.monotonic() - start < 0.25  # did not wait for server selection again
    assert len(fallback_lines(store.fallback_path)) == 2
    store.close()


# 3. overflow ------------------------------------------------------------------------

def test_overflow_drops_and_counts(paths, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    store = AuditStore(mongo_uri=f"mongodb://127.0.0.1:{closed_port()}/", timeout_ms=300,
                       fallback_max_bytes=1000, logger=logging.getLogger(LOGGER), **paths)
    results = [store.write(event(i)) for i in range(10)]
    n_kept = results.index("dropped")
    assert n_kept >= 1 and set(results[:n_kept]) == {"fallback"} and set(results[n_kept:]) == {"dropped"}
    assert len(fallback_lines(store.fallback_path)) == n_kept  # nothing below the cap lost
    assert store.dropped_count() == 10 - n_kept
    with open(store.fallback_path + ".dropped") as f:
        assert int(f.read()) == 10 - n_kept  # persisted for other processes
    assert store.write(event(99)) == "dropped"
    assert store.dropped_count() == 11 - n_kept
    overflow = [r for r in caplog.records if "[audit-fallback-overflow]" in r.getMessage()]
    assert overflow and all(r.levelno == logging.CRITICAL for r in overflow)
    assert len(overflow) == 1  # once per episode, but every drop counted
    store.close()


# 4. flush ---------------------------------------------------------------------------

def test_flush_moves_events_back_without_duplicates(down, embedded):
    evs = [event(i) for i in range(7)]
    for ev in evs:
        assert down.write(ev) == "fallback"

    assert embedded.flush_fallback() == 7
    assert not os.path.exists(embedded.fallback_path)
    assert embedded.fallback_size() == 0
    assert embedded.flush_fallback() == 0

    rows, _ = embedded.find(workspace_id=1, limit=100)
    assert sorted(r["_id"] for r in rows) == sorted(ev["_id"] for ev in evs)
    assert all(r["ts"].tzinfo is UTC for r in rows)
    assert {r["ts"] for r in rows} == {ev["ts"] for ev in evs}

    # An already-flushed event showing up again (e.g. a flusher that died after
    # inserting) must not be duplicated.
    down.write(evs[0])
    assert embedded.flush_fallback() == 0
    assert embedded.count(workspace_id=1) == 7

    # A leftover .flushing file from a crashed flusher is picked up.
    late = event(50)
    with open(embedded.fallback_path + ".flushing", "w") as f:
        f.write(json.dumps({**late, "ts": late["ts"].isoformat()}) + "\n")
        f.write(json.dumps({**evs[1], "ts": evs[1]["ts"].isoformat()}) + "\n")
    down.write(event(51))
    assert embedded.fallback_size() > 0
    assert embedded.flush_fallback() == 2
    assert not os.path.exists(embedded.fallback_path + ".flushing")
    assert embedded.count(workspace_id=1) == 9
    assert embedded.fallback_size() == 0


def test_flush_while_store_down_keeps_events(down):
    evs = [event(i) for i in range(3)]
    for ev in evs:
        down.write(ev)
    assert down.flush_fallback() == 0
    assert sorted(e["_id"] for e in fallback_lines(down.fallback_path)) == sorted(ev["_id"] for ev in evs)
    assert not os.path.exists(down.fallback_path + ".flushing")


def test_unreadable_line_is_set_aside(down, embedded):
    down.write(event(0))
    with open(embedded.fallback_path, "a") as f:
        f.write('{"_id": "torn", "ts": "2026-\n')
    assert embedded.flush_fallback() == 1
    with open(embedded.fallback_path + ".rejected") as f:
        assert "torn" in f.read()


def test_concurrent_writers_and_flushers_lose_nothing(paths):
    """Several stores (separate file descriptors, as in separate processes)
    append to and flush the same fallback file at the same time."""
    port = closed_port()
    downs = [AuditStore(mongo_uri=f"mongodb://127.0.0.1:{port}/", timeout_ms=300, retry_interval=60, **paths)
             for _ in range(3)]
    flushers = [AuditStore(mongo_uri=None, **paths) for _ in range(2)]
    written: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(store, base):
        for i in range(40):
            ev = event(base + i)
            assert store.write(ev) == "fallback"
            with lock:
                written.append(ev["_id"])

    def flusher(store):
        while not stop.is_set():
            store.flush_fallback()

    flush_threads = [threading.Thread(target=flusher, args=(s,)) for s in flushers]
    write_threads = [threading.Thread(target=writer, args=(s, n * 1000)) for n, s in enumerate(downs)]
    for t in flush_threads + write_threads:
        t.start()
    for t in write_threads:
        t.join()
    stop.set()
    for t in flush_threads:
        t.join()
    flushers[0].flush_fallback()

    rows, _ = flushers[0].find(workspace_id=1, limit=500)
    assert len(rows) == len(written) == 120
    assert sorted(r["_id"] for r in rows) == sorted(written)
    assert flushers[0].fallback_size() == 0
    for s in downs + flushers:
        s.close()


def test_one_store_shared_by_many_threads(embedded):
    # montydb itself is not thread-safe; the store must serialise access.
    results = []

    def work(base):
        for i in range(20):
            results.append(embedded.write(event(base + i)))
            embedded.find(workspace_id=1, limit=5)

    threads = [threading.Thread(target=work, args=(n * 100,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["stored"] * 120
    assert embedded.count(workspace_id=1) == 120


CHILD = textwrap.dedent(r"""
    import os, sys, uuid, time
    from datetime import datetime, timezone
    from audit.store import AuditStore
    role, uri, emb, fb, stop, out = sys.argv[1:]
    store = AuditStore(mongo_uri=uri or None, embedded_dir=emb, fallback_path=fb,
                       timeout_ms=300, retry_interval=60)
    if role == "flush":
        while not os.path.exists(stop):
            store.flush_fallback()
    else:
        ids = []
        for i in range(40):
            ev = {"_id": str(uuid.uuid4()), "ts": datetime.now(timezone.utc), "workspace_id": 1,
                  "action": "test.proc", "actor_email": None}
            assert store.write(ev) in ("stored", "fallback")
            ids.append(ev["_id"])
        with open(out, "w") as f:
            f.write("\n".join(ids))
""")


def test_processes_writing_and_flushing_at_once_lose_nothing(paths, tmp_path):
    """Real processes: two write to the (fresh) embedded store, two write to
    the fallback file because their MongoDB is down, two flush concurrently."""
    down_uri = f"mongodb://127.0.0.1:{closed_port()}/"
    stop = str(tmp_path / "stop")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}

    def spawn(role, uri, n):
        return subprocess.Popen([sys.executable, "-c", CHILD, role, uri, paths["embedded_dir"],
                                 paths["fallback_path"], stop, str(tmp_path / f"ids-{n}")], env=env)

    flushers = [spawn("flush", "", n) for n in (0, 1)]
    writers = [spawn("write", "", 2), spawn("write", "", 3), spawn("write", down_uri, 4), spawn("write", down_uri, 5)]
    try:
        assert [p.wait(timeout=120) for p in writers] == [0, 0, 0, 0]
    finally:
        open(stop, "w").close()
        for p in flushers:
            p.wait(timeout=60)
    written = []
    for n in range(2, 6):
        written += (tmp_path / f"ids-{n}").read_text().split()

    store = AuditStore(mongo_uri=None, **paths)
    store.flush_fallback()
    rows, _ = store.find(all_workspaces=True, limit=500)
    assert len(written) == 160
    assert sorted(r["_id"] for r in rows) == sorted(written)
    assert store.fallback_size() == 0
    store.close()


# 5. retention -----------------------------------------------------------------------

def test_purge_expired(paths):
    store = AuditStore(mongo_uri=None, retention_days=90, **paths)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = [event(0, ts=now - timedelta(days=120)), event(1, ts=now - timedelta(days=90, seconds=1))]
    new = [event(2, ts=now - timedelta(days=89)), event(3, ts=now)]
    for ev in old + new:
        store.write(ev)
    assert store.purge_expired(now=now) == 2
    rows, _ = store.find(workspace_id=1)
    assert sorted(r["_id"] for r in rows) == sorted(ev["_id"] for ev in new)
    assert store.purge_expired(now=now) == 0
    store.close()


# 6. indexes -------------------------------------------------------------------------

def test_index_specs_have_ttl_and_query_indexes():
    specs = {tuple(keys): opts for keys, opts in index_specs(30)}
    assert specs[(("ts", 1),)]["expireAfterSeconds"] == 30 * 86400
    assert [opts for opts in specs.values() if "expireAfterSeconds" in opts] == [specs[(("ts", 1),)]]
    assert index_specs()[0][1]["expireAfterSeconds"] == 90 * 86400
    fields = {tuple(name for name, _ in keys) for keys in specs}
    assert ("workspace_id", "ts", "_id") in fields
    assert ("workspace_id", "object_type", "object_id", "ts") in fields
    assert ("workspace_id", "actor_email", "ts") in fields
    assert ("action", "ts") in fields


def test_ensure_indexes_on_embedded_store_is_harmless(embedded):
    embedded.ensure_indexes()
    assert embedded.write(event(0)) == "stored"
    embedded.ensure_indexes()
    assert embedded.ping() is True


def test_ensure_indexes_down_mongo_raises_unavailable(down):
    start = time.monotonic()
    with pytest.raises(AuditStoreUnavailable):
        down.ensure_indexes()
    assert time.monotonic() - start < 5
