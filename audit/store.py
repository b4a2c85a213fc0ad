"""Audit event storage for the operator portal.

Why this module exists: every mutating action and every login attempt must
leave an audit event, and recording it must never break or stall the request
that caused it. So this is the single place that

* talks to MongoDB (pymongo) when a MONGO_URI is configured, or to the embedded
  montydb store (SQLite storage) when it is not -- both through the same
  pymongo-style code path;
* swallows store failures (callers never see pymongo/montydb errors from
  ``write``) and instead appends the event as one JSON line to a local fallback
  file, so nothing below the file's size cap is lost;
* moves fallback events back into the store (``flush_fallback``) idempotently:
  every event carries its own UUID string ``_id``, so re-inserting an event
  that already made it is a no-op;
* answers the audit log page (``find``/``count``) with keyset pagination.

Timestamps are timezone-aware UTC datetimes with millisecond precision (BSON
dates carry milliseconds only, so we truncate up front to keep the store, the
fallback file and pagination cursors in agreement).

POSIX only: cross-process coordination of the fallback file uses ``fcntl``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
from montydb import MontyClient, set_storage
from montydb.errors import MontyError
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

__all__ = ["AuditStore", "AuditStoreUnavailable", "index_specs", "now_ms"]

Doc = dict[str, Any]  # one audit event / query document

DEFAULT_FALLBACK_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_RETENTION_DAYS = 90
MAX_PAGE_SIZE = 500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DUPLICATE_KEY = 11000
_FLUSH_BATCH = 500
# Everything a broken or unreachable store can throw at us. montydb surfaces
# SQLite and filesystem problems without wrapping them.
_STORE_ERRORS = (PyMongoError, MontyError, sqlite3.Error, OSError)


def now_ms() -> int:
    """Milliseconds since the epoch: the unit of the ``arrived`` stamp."""
    return time.time_ns() // 1_000_000


class AuditStoreUnavailable(RuntimeError):
    """Raised by read-side calls (find/count/ensure_indexes) when the store fails,
    so callers need not know about pymongo or montydb exception types."""


def index_specs(retention_days: int = DEFAULT_RETENTION_DAYS) -> list[tuple[list[tuple[str, int]], Doc]]:
    """(keys, options) pairs for ``create_index``.

    The TTL index gives MongoDB-side retention; the compound ones back the audit
    log page filters, each ending in ts (and _id) descending so the newest-first
    keyset pagination can walk the index instead of sorting in memory.
    """
    desc, asc = pymongo.DESCENDING, pymongo.ASCENDING
    return [
        ([("ts", asc)], {"name": "ttl_ts", "expireAfterSeconds": int(retention_days) * 86400}),
        ([("workspace_id", asc), ("ts", desc), ("_id", desc)], {"name": "ws_ts"}),
        ([("workspace_id", asc), ("object_type", asc), ("object_id", asc), ("ts", desc)],
         {"name": "ws_object_ts"}),
        ([("workspace_id", asc), ("actor_email", asc), ("ts", desc)], {"name": "ws_actor_ts"}),
        ([("action", asc), ("ts", desc)], {"name": "action_ts"}),
        ([("member_of", asc), ("ts", desc), ("_id", desc)], {"name": "member_ts"}),
        # Sealing and verification walk events in arrival order (services/audit_seals.py).
        ([("arrived", asc), ("_id", asc)], {"name": "arrived_id"}),
    ]


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes can only come from our own stores, which hold UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_ms(value: datetime) -> datetime:
    value = _as_utc(value)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _as_utc(value).isoformat(timespec="milliseconds")
    return str(value)


def _normalise(event: Doc) -> Doc:
    """Copy an event into exactly the shape a fallback round trip would give
    back (JSON types, ms-precision UTC ts), so an event reads the same whether
    it went to the store directly or through the fallback file, and odd
    values (sets, Decimals, nested datetimes) cannot make the store reject it."""
    body = {k: v for k, v in event.items() if k != "ts"}
    doc: Doc = json.loads(json.dumps(body, default=_json_default))
    doc.setdefault("_id", str(uuid.uuid4()))
    doc["ts"] = _to_ms(event.get("ts") or datetime.now(UTC))
    return doc


def _escape_keys(value: Any) -> Any:
    # montydb refuses nested keys containing "." or starting with "$" (MongoDB
    # accepts them); swap in the full-width look-alikes, the usual convention.
    if isinstance(value, dict):
        return {("\uff04" + k[1:] if k.startswith("$") else k).replace(".", "\uff0e"):
                _escape_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_keys(v) for v in value]
    return value


def _encode_cursor(ts: datetime, _id: str) -> str:
    ms = (_as_utc(ts) - _EPOCH) // timedelta(milliseconds=1)
    raw = json.dumps([ms, _id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ms, _id = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc
    if type(ms) is not int or not isinstance(_id, str):
        raise ValueError("invalid cursor")
    try:
        return _EPOCH + timedelta(milliseconds=ms), _id
    except OverflowError as exc:
        raise ValueError("invalid cursor") from exc


class AuditStore:
    def __init__(self, *, mongo_uri: str | None, embedded_dir: str, fallback_path: str,
                 fallback_max_bytes: int = DEFAULT_FALLBACK_MAX_BYTES,
                 retention_days: int = DEFAULT_RETENTION_DAYS,
                 collection: str = "audit_events", logger: logging.Logger | None = None,
                 timeout_ms: int = 2000, retry_interval: float = 5.0):
        """No I/O happens here; the store is opened on first use.

        ``timeout_ms`` bounds server selection and connect (capped at 2000 ms)
        so a write never waits long on a dead MongoDB. ``retry_interval``: after
        a store failure, writes go straight to the fallback file for this many
        seconds instead of paying the timeout on every request.
        """
        self.mongo_uri = mongo_uri or None
        self.embedded_dir = os.path.abspath(embedded_dir)
        self.fallback_path = os.path.abspath(fallback_path)
        self.fallback_max_bytes = fallback_max_bytes
        self.retention_days = retention_days
        self.collection_name = collection
        self.log = logger or logging.getLogger(__name__)
        self.timeout_ms = min(int(timeout_ms), 2000)
        self.retry_interval = retry_interval

        self._flushing_path = self.fallback_path + ".flushing"
        self._dropped_path = self.fallback_path + ".dropped"
        self._flush_lock_path = self.fallback_path + ".flush.lock"
        self._rejected_path = self.fallback_path + ".rejected"

        self._client: Any = None
        self._coll: Any = None
        self._connect_lock = threading.Lock()
        # montydb's SQLite engine shares one connection attribute between
        # threads, so concurrent calls corrupt each other; pymongo needs no lock.
        self._embedded_lock = threading.RLock()
        self._file_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._outage = False           # a [audit-fallback] warning was logged for the current outage
        self._overflowing = False      # a [audit-fallback-overflow] was logged for the current episode
        self._skip_store_until = 0.0   # monotonic deadline of the write-side circuit breaker
        self._indexes_done = False

    @property
    def embedded(self) -> bool:
        return self.mongo_uri is None

    def use_retention(self, days: int) -> None:
        """Retention changed at run time (/admin/settings): purges use it, and on MongoDB the TTL
        index is changed in place (collMod) at the next write or ``ensure_indexes``."""
        if int(days) != self.retention_days:
            self.retention_days = int(days)
            self._indexes_done = False

    # -- connection -----------------------------------------------------------

    @contextlib.contextmanager
    def _store(self) -> Iterator[Any]:
        """The collection, held exclusively for the block on montydb. Consume
        cursors inside the block."""
        if self.embedded:
            with self._embedded_lock:
                yield self._collection()
        else:
            yield self._collection()

    def _collection(self) -> Any:
        with self._connect_lock:
            if self._coll is None:
                if self.embedded:
                    self._client, db = self._open_embedded()
                else:
                    self._client = pymongo.MongoClient(
                        self.mongo_uri,
                        serverSelectionTimeoutMS=self.timeout_ms,
                        connectTimeoutMS=self.timeout_ms,
                        socketTimeoutMS=5000,
                        tz_aware=True,
                        tzinfo=UTC,
                        appname="audit-store",
                    )
                    db = self._client.get_default_database(default="audit")
                self._coll = db[self.collection_name]
            return self._coll

    def _open_embedded(self) -> tuple[Any, Any]:
        os.makedirs(self.embedded_dir, exist_ok=True)
        # First-time setup is serialised across processes: montydb writes its
        # repository config in two steps (a process reading it half-written
        # would pick another document encoding), and it treats a collection
        # file that exists as a collection whose table exists.
        lock_fd = os.open(os.path.join(self.embedded_dir, ".audit-setup.lock"),
                          os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            if not (os.path.isfile(os.path.join(self.embedded_dir, ".monty.storage"))
                    and os.path.isfile(os.path.join(self.embedded_dir, "monty.storage.cfg"))):
                set_storage(self.embedded_dir, storage="sqlite", use_bson=False)
            client = MontyClient(self.embedded_dir, tz_aware=True)
            db = client["audit"]
            if self.collection_name not in db.list_collection_names():
                db.create_collection(self.collection_name)
            return client, db
        finally:
            os.close(lock_fd)

    def close(self) -> None:
        with self._embedded_lock, self._connect_lock:
            if self._client is not None:
                with contextlib.suppress(*_STORE_ERRORS):
                    self._client.close()
            self._client = self._coll = None

    def ping(self) -> bool:
        try:
            with self._store() as coll:
                if self.embedded:
                    coll.database.list_collection_names()
                else:
                    coll.database.client.admin.command("ping")
            return True
        except _STORE_ERRORS:
            return False

    def ensure_indexes(self) -> None:
        """Create the TTL and query indexes on MongoDB. montydb ignores indexes
        (it scans), and retention there is ``purge_expired``'s job."""
        if self.embedded:
            return
        try:
            coll = self._collection()
            for keys, options in index_specs(self.retention_days):
                try:
                    coll.create_index(keys, **options)
                except OperationFailure as exc:
                    # 85/86: the TTL index exists with another expireAfterSeconds
                    # (retention was reconfigured) -- change it in place.
                    if "expireAfterSeconds" not in options or exc.code not in (85, 86):
                        raise
                    coll.database.command("collMod", coll.name, index={
                        "keyPattern": dict(keys),
                        "expireAfterSeconds": options["expireAfterSeconds"]})
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"ensure_indexes failed: {exc}") from exc
        self._indexes_done = True

    # -- write path -----------------------------------------------------------

    def write(self, event: Doc) -> str:
        """Record one event. Returns "stored", "fallback" or "dropped"; never
        raises because of the store or the fallback file."""
        doc = _normalise(event)
        if time.monotonic() >= self._skip_store_until:
            try:
                with self._store() as coll:
                    coll.insert_one(self._for_store(doc))
                self._store_ok()
                if not self.embedded and not self._indexes_done:
                    self._try_ensure_indexes()
                return "stored"
            except _STORE_ERRORS as exc:
                if getattr(exc, "code", None) == _DUPLICATE_KEY:
                    return "stored"  # a retried write of an event already stored
                self._store_failed(exc)
        return self._write_fallback(doc)

    def _for_store(self, doc: Doc) -> Doc:
        """The document as inserted, stamped with its arrival time (``arrived``, ms since the
        epoch): seals cover events by arrival, so an event flushed back from the fallback file
        arrives (and is sealed) after the seals already taken, never inside one."""
        out = dict(doc) if not self.embedded else \
            {k: _escape_keys(v) if isinstance(v, (dict, list)) else v for k, v in doc.items()}
        out["arrived"] = now_ms()
        return out

    def _try_ensure_indexes(self) -> None:
        # Retention on MongoDB depends on the TTL index, so create it as soon
        # as the store is reachable even if nobody called ensure_indexes().
        try:
            self.ensure_indexes()
        except AuditStoreUnavailable as exc:
            self.log.warning("[audit-store] could not create indexes: %s", exc)
            self._indexes_done = True  # don't retry on every write; startup/cron can call again

    def _store_ok(self) -> None:
        with self._state_lock:
            if self._outage:
                self.log.info("[audit-store] audit store reachable again")
            self._outage = False
            self._overflowing = False
            self._skip_store_until = 0.0

    def _store_failed(self, exc: BaseException) -> None:
        with self._state_lock:
            self._skip_store_until = time.monotonic() + self.retry_interval
            first = not self._outage
            self._outage = True
        if first:
            # pymongo's message embeds the whole topology description; keep the head.
            self.log.warning("[audit-fallback] audit store unavailable (%s: %.300s); "
                             "writing audit events to %s",
                             type(exc).__name__, str(exc), self.fallback_path)

    def _write_fallback(self, doc: Doc) -> str:
        line = json.dumps(doc, default=_json_default, ensure_ascii=False,
                          separators=(",", ":")) + "\n"
        try:
            accepted = self._append(line.encode("utf-8"), enforce_cap=True)
        except OSError as exc:
            self.log.critical("[audit-fallback-error] cannot write fallback file %s (%s); "
                              "audit event %s lost", self.fallback_path, exc, doc["_id"])
            self._count_drop()
            return "dropped"
        if accepted:
            with self._state_lock:
                self._overflowing = False
            return "fallback"
        self._count_drop()
        with self._state_lock:
            first = not self._overflowing
            self._overflowing = True
        if first:
            self.log.critical("[audit-fallback-overflow] fallback file %s reached its cap of "
                              "%d bytes; audit events are being dropped (count in %s)",
                              self.fallback_path, self.fallback_max_bytes, self._dropped_path)
        return "dropped"

    def _append(self, data: bytes, *, enforce_cap: bool) -> bool:
        """Append whole lines to the fallback file; False if over the cap.

        O_APPEND keeps concurrent appenders from overwriting each other. The
        flock plus the inode check close the race with flush_fallback renaming
        the file away: an appender that opened the old file either finishes
        before the flusher reads it (the flusher takes the same lock) or notices
        the rename and reopens the new file.
        """
        with self._file_lock:
            os.makedirs(os.path.dirname(self.fallback_path), exist_ok=True)
            while True:
                fd = os.open(self.fallback_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    st = os.fstat(fd)
                    try:
                        current = os.stat(self.fallback_path)
                    except FileNotFoundError:
                        continue
                    if (current.st_ino, current.st_dev) != (st.st_ino, st.st_dev):
                        continue
                    if enforce_cap and st.st_size >= self.fallback_max_bytes:
                        return False
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    return True
                finally:
                    os.close(fd)  # also releases the flock

    def _count_drop(self) -> None:
        # Persisted so other workers and the diagnostics page see one total.
        try:
            fd = os.open(self._dropped_path, os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                with os.fdopen(os.dup(fd), "r+") as f:
                    try:
                        n = int(f.read().strip() or 0)
                    except ValueError:
                        n = 0
                    f.seek(0)
                    f.truncate()
                    f.write(str(n + 1))
            finally:
                os.close(fd)
        except OSError as exc:
            self.log.critical("[audit-fallback-overflow] cannot update drop counter %s: %s",
                              self._dropped_path, exc)

    def dropped_count(self) -> int:
        try:
            with open(self._dropped_path) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def fallback_size(self) -> int:
        total = 0
        for path in (self.fallback_path, self._flushing_path):
            with contextlib.suppress(OSError):
                total += os.path.getsize(path)
        return total

    # -- flush ----------------------------------------------------------------

    def flush_fallback(self) -> int:
        """Move fallback events into the store; returns how many were newly
        inserted. Safe to run concurrently (one flusher at a time, others
        return 0) and after a crash (a leftover ``.flushing`` file is resumed;
        re-inserting is idempotent by ``_id``)."""
        if not (os.path.exists(self.fallback_path) or os.path.exists(self._flushing_path)):
            return 0
        lock_fd = os.open(self._flush_lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is flushing right now
            moved = 0
            # First a leftover from a flusher that died, then the live file.
            for _ in range(2):
                if not os.path.exists(self._flushing_path):
                    try:
                        os.rename(self.fallback_path, self._flushing_path)
                    except FileNotFoundError:
                        break
                n, ok = self._flush_file(self._flushing_path)
                moved += n
                if not ok:
                    break
            return moved
        finally:
            os.close(lock_fd)

    def _flush_file(self, path: str) -> tuple[int, bool]:
        moved = 0
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # let in-flight appends finish
            batch: list[bytes] = []
            for raw in f:
                if raw.strip():
                    batch.append(raw if raw.endswith(b"\n") else raw + b"\n")
                if len(batch) >= _FLUSH_BATCH:
                    n, ok = self._insert_lines(batch)
                    moved += n
                    if not ok:
                        self._append_back(batch, f)
                        break
                    batch = []
            else:
                ok = True
                if batch:
                    n, ok = self._insert_lines(batch)
                    moved += n
                    if not ok:
                        self._append_back(batch, f)
            # Everything is now either in the store or back in the fallback file.
            os.unlink(path)
        return moved, ok

    def _append_back(self, batch: list[bytes], rest: Iterable[bytes]) -> None:
        # Already accepted below the cap, so the cap does not apply. Lines of
        # the failed batch that did get inserted are harmless duplicates.
        self._append(b"".join(batch), enforce_cap=False)
        chunk: list[bytes] = []
        size = 0
        for raw in rest:
            if not raw.strip():
                continue
            chunk.append(raw if raw.endswith(b"\n") else raw + b"\n")
            size += len(raw)
            if size >= 1 << 20:
                self._append(b"".join(chunk), enforce_cap=False)
                chunk, size = [], 0
        if chunk:
            self._append(b"".join(chunk), enforce_cap=False)

    def _insert_lines(self, lines: list[bytes]) -> tuple[int, bool]:
        docs = []
        for raw in lines:
            try:
                doc = json.loads(raw)
                doc["ts"] = _as_utc(datetime.fromisoformat(doc["ts"]))
                if not isinstance(doc.get("_id"), str):
                    raise ValueError("missing _id")
                docs.append(doc)
            except (ValueError, KeyError, TypeError) as exc:
                # e.g. a line torn by a crash; kept aside for a human, not retried forever
                self.log.error("[audit-fallback] unreadable fallback line moved to %s: %s",
                               self._rejected_path, exc)
                self._append_to(self._rejected_path, raw)
        if not docs:
            return 0, True
        try:
            n = self._insert_idempotent(docs)
        except _STORE_ERRORS as exc:
            self._store_failed(exc)
            return 0, False
        self._store_ok()
        return n, True

    def _insert_idempotent(self, docs: list[Doc]) -> int:
        docs = [self._for_store(doc) for doc in docs]
        if self.embedded:
            # montydb's insert_many stops at the first duplicate even when
            # unordered, so insert one by one.
            n = 0
            with self._store() as coll:
                for doc in docs:
                    try:
                        coll.insert_one(doc)
                        n += 1
                    except MontyError as exc:
                        if getattr(exc, "code", None) != _DUPLICATE_KEY:
                            raise
            return n
        try:
            return len(self._collection().insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            details = exc.details or {}
            if all(e.get("code") == _DUPLICATE_KEY for e in details.get("writeErrors", [])) \
                    and not details.get("writeConcernErrors"):
                return int(details.get("nInserted", 0))
            raise

    def _append_to(self, path: str, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    # -- retention ------------------------------------------------------------

    def purge_expired(self, now: datetime | None = None) -> int:
        """Delete events older than the retention period. Needed for montydb,
        which has no TTL; on MongoDB it merely does early what TTL would do.
        Returns the number deleted (0 if the store is unavailable)."""
        cutoff = _as_utc(now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        try:
            with self._store() as coll:
                return int(coll.delete_many({"ts": {"$lt": cutoff}}).deleted_count)
        except _STORE_ERRORS as exc:
            self.log.warning("[audit-store] purge_expired failed: %s", exc)
            return 0

    # -- read path ------------------------------------------------------------

    def _query(self, *, workspace_id: int | None, all_workspaces: bool, actor: str | None,
               action: str | None, object_type: str | None, object_id: str | None,
               since: datetime | None, until: datetime | None) -> Doc:
        clauses: list[Doc] = []
        if not all_workspaces:
            if workspace_id is None:
                # Refuse rather than guess: an unscoped query here would be a
                # cross-tenant leak.
                raise ValueError("workspace_id is required unless all_workspaces=True")
            # The workspace's own events, and its members' sign-ins (recorded with `member_of`).
            clauses.append({"$or": [{"workspace_id": workspace_id}, {"member_of": workspace_id}]})
        if actor:
            clauses.append({"actor_email": {"$regex": re.escape(actor), "$options": "i"}})
        if action:
            # Anchored and case-sensitive, so MongoDB can use the index.
            clauses.append({"action": {"$regex": "^" + re.escape(action)}})
        if object_type:
            clauses.append({"object_type": object_type})
        if object_id:
            clauses.append({"object_id": str(object_id)})
        if since is not None:
            clauses.append({"ts": {"$gte": _as_utc(since)}})
        if until is not None:
            clauses.append({"ts": {"$lt": _as_utc(until)}})
        if not clauses:
            return {}
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def find(self, *, workspace_id: int | None = None, all_workspaces: bool = False,
             actor: str | None = None, action: str | None = None,
             object_type: str | None = None, object_id: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             cursor: str | None = None, limit: int = 50) -> tuple[list[Doc], str | None]:
        """Newest first (ts desc, _id desc). ``since`` is inclusive, ``until``
        exclusive. Returns (rows, next_cursor); next_cursor is None on the last
        page. Raises ValueError for a bad cursor/arguments and
        AuditStoreUnavailable if the store fails."""
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        query = self._query(workspace_id=workspace_id, all_workspaces=all_workspaces,
                            actor=actor, action=action, object_type=object_type,
                            object_id=object_id, since=since, until=until)
        if cursor:
            ts, _id = _decode_cursor(cursor)
            after = {"$or": [{"ts": {"$lt": ts}}, {"ts": ts, "_id": {"$lt": _id}}]}
            query = {"$and": [query, after]} if query else after
        try:
            with self._store() as coll:
                rows = list(coll.find(query)
                            .sort([("ts", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)])
                            .limit(limit + 1))
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"audit find failed: {exc}") from exc
        for row in rows:
            if isinstance(row.get("ts"), datetime):
                row["ts"] = _as_utc(row["ts"])
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, _encode_cursor(rows[-1]["ts"], rows[-1]["_id"])
        return rows, None

    def count(self, *, workspace_id: int | None = None, all_workspaces: bool = False,
              actor: str | None = None, action: str | None = None,
              object_type: str | None = None, object_id: str | None = None,
              since: datetime | None = None, until: datetime | None = None) -> int:
        query = self._query(workspace_id=workspace_id, all_workspaces=all_workspaces,
                            actor=actor, action=action, object_type=object_type,
                            object_id=object_id, since=since, until=until)
        try:
            with self._store() as coll:
                return int(coll.count_documents(query))
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"audit count failed: {exc}") from exc

    # -- sealing (services/audit_seals.py) -------------------------------------

    def scan_arrivals(self, lower_ms: int | None, upper_ms: int,
                      workspace_id: int | None = None) -> Iterator[Doc]:
        """Events that arrived in (lower_ms, upper_ms], in arrival order (arrived, _id); with
        ``lower_ms=None`` also the events stored before arrival stamps existed (no ``arrived``),
        first. Raises AuditStoreUnavailable if the store fails, also in the middle of the walk."""
        if lower_ms is None:
            clauses: list[Doc] = [{"$or": [{"arrived": {"$lte": upper_ms}}, {"arrived": {"$exists": False}}]}]
        else:
            clauses = [{"arrived": {"$gt": lower_ms, "$lte": upper_ms}}]
        if workspace_id is not None:
            clauses.append({"workspace_id": workspace_id})
        query = clauses[0] if len(clauses) == 1 else {"$and": clauses}
        try:
            with self._store() as coll:
                for row in coll.find(query).sort([("arrived", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)]):
                    if isinstance(row.get("ts"), datetime):
                        row["ts"] = _as_utc(row["ts"])
                    yield row
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"audit scan failed: {exc}") from exc

    def get_event(self, event_id: str) -> Doc | None:
        try:
            with self._store() as coll:
                row: Doc | None = coll.find_one({"_id": event_id})
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"audit read failed: {exc}") from exc
        if row is not None and isinstance(row.get("ts"), datetime):
            row["ts"] = _as_utc(row["ts"])
        return row

    def iter_events(self, query: Doc) -> Iterator[Doc]:
        """Events matching a raw query, oldest first (ts, _id); for the evidence pack. Raises
        AuditStoreUnavailable if the store fails."""
        try:
            with self._store() as coll:
                for row in coll.find(query).sort([("ts", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)]):
                    if isinstance(row.get("ts"), datetime):
                        row["ts"] = _as_utc(row["ts"])
                    yield row
        except _STORE_ERRORS as exc:
            raise AuditStoreUnavailable(f"audit read failed: {exc}") from exc
