"""The simulated SMS Core: SQLite persistence, idempotency, ESME channels, delivery reports.

Thread-safe: every access to the database goes through one connection guarded by one lock
(SQLite serialises writers anyway; batches of 500 take a few milliseconds).
"""
import collections
import hashlib
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
CORE_VERSION = "coresim 1.0"
MAX_BATCH = 1000
MAX_EVENTS_PAGE = 1000

ROK = 0x00000000
RINVMSGLEN = 0x00000001
RINVSRCADR = 0x0000000A
RINVDSTADR = 0x0000000B
RSUBMITFAIL = 0x00000045
RINVSRCTON = 0x00000048
RINVSRCNPI = 0x00000049
RINVDSTTON = 0x00000050
RINVDSTNPI = 0x00000051
RTHROTTLED = 0x00000058
RUNKNOWNERR = 0x000000FF

DEFAULT_CONFIG = {
    "latency_seconds": 1.0,      # acceptance (+ channel queueing) -> final delivery report
    "failure_ratio": 0.03,       # share of accepted messages whose report is not DELIVRD
    "reject_prefix": "999",      # destinations starting with it: ESME_RINVDSTADR at submit
    "undeliverable_prefix": "998",  # destinations starting with it: final report UNDELIV
    "channels": 2,               # simulated ESME binds
    "tps": 500.0,                # per channel
    "max_queue_depth": 1_000_000,  # above it a submit answers 429
    "seed": None,
}
DEFAULT_FAULTS: dict[str, Any] = {"down": False, "slow_seconds": 0.0, "large_response_mb": 0.0, "throttle": 0.0,
                  "reject_code": None, "reject_ratio": 1.0, "refuse_status": None,
                  "schema_version": SCHEMA_VERSION}
# refuse_status: every batch is answered with this HTTP status and the error body of docs/core-api.md.
REFUSAL_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 409: "idempotency_conflict", 413: "too_large", 422: "unprocessable", 429: "throttled",
                 500: "internal_error", 502: "bad_gateway", 503: "unavailable", 504: "timeout"}

_DIGITS = re.compile(r"^[0-9]{1,15}$")
_FAILURES = (("UNDELIV", "001", 0.6), ("EXPIRED", "027", 0.25), ("REJECTD", "011", 0.15))
_MESSAGE_FIELDS = {"id": str, "destination": str, "saddr": str, "ston": int, "snpi": int, "dton": int,
                   "dnpi": int, "text": str, "data_coding": int}

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, core_id TEXT NOT NULL, batch_id TEXT NOT NULL, destination TEXT NOT NULL,
    saddr TEXT, ston INTEGER, snpi INTEGER, dton INTEGER, dnpi INTEGER, text TEXT, data_coding INTEGER,
    channel TEXT NOT NULL, accepted_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dest_counts (destination TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS submit_counts (destination TEXT PRIMARY KEY, n INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dest_counts_n ON dest_counts (n);
CREATE TABLE IF NOT EXISTS batches (
    idem_key TEXT PRIMARY KEY, body_hash TEXT NOT NULL, response TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    core_id TEXT PRIMARY KEY, id TEXT NOT NULL, channel TEXT NOT NULL, accepted_at REAL NOT NULL,
    due_at REAL NOT NULL, status TEXT NOT NULL, error_code TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (due_at);
CREATE TABLE IF NOT EXISTS events (
    cursor INTEGER PRIMARY KEY AUTOINCREMENT, core_id TEXT NOT NULL, id TEXT NOT NULL, channel TEXT NOT NULL,
    status TEXT NOT NULL, error_code TEXT NOT NULL, done_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
COUNTERS = ("accepted", "rejected", "duplicates_refused", "replays", "submitted", "batches", "refused_batches")


class SimError(Exception):
    """An HTTP error answer: status, code, message (and optional headers)."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def iso(ts):
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def status_hex(code):
    return f"0x{code:08X}"


def parse_status(value):
    if value is None or value is False or value == "":
        return None
    if isinstance(value, int):
        return value
    return int(str(value), 16) if str(value).lower().startswith("0x") else int(value)


LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 1800)  # seconds; +Inf is the count


class Channel:
    def __init__(self, name):
        self.name = name
        self.next_free = 0.0  # virtual clock: when the bind can take the next message
        self.delivered: collections.deque = collections.deque(maxlen=200_000)  # report times (throughput)
        self.latencies: collections.deque = collections.deque(maxlen=1000)  # seconds, acceptance -> report
        # Cumulative since start (a Prometheus histogram): counts per upper bound, sum and count.
        self.latency_buckets = [0] * len(LATENCY_BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.accepted_total = 0
        self.delivered_total = 0

    def observe_latency(self, seconds):
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def latency_histogram(self):
        buckets = {_bound(b): n for b, n in zip(LATENCY_BUCKETS, self.latency_buckets, strict=True)}
        buckets["+Inf"] = self.latency_count
        return {"buckets": buckets, "sum": round(self.latency_sum, 6), "count": self.latency_count}


def _bound(value):
    return str(float(value)) if not float(value).is_integer() else str(int(value))


class CoreSimulator:
    def __init__(self, db_path, **config):
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise TypeError(f"unknown coresim settings: {', '.join(sorted(unknown))}")
        self.initial_config = {**DEFAULT_CONFIG, **config}
        self.config = dict(self.initial_config)
        self.faults = dict(DEFAULT_FAULTS)
        self.last_client_serial = None
        self.last_request_id = None
        self._lock = threading.Lock()
        self._random = random.Random(self.config["seed"])
        self._db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._counters.update(dict(self._db.execute("SELECT name, value FROM counters")))
        self._make_channels()
        self._stop = threading.Event()
        self._ticker = None

    # --- lifecycle ------------------------------------------------------------------------

    def _make_channels(self):
        self.channels = {name: Channel(name) for name in
                         (f"esme-{chr(ord('a') + i)}" for i in range(int(self.config["channels"])))}

    def start(self):
        self._ticker = threading.Thread(target=self._run_deliveries, name="coresim-deliveries", daemon=True)
        self._ticker.start()

    def close(self):
        self._stop.set()
        if self._ticker:
            self._ticker.join(timeout=5)
        with self._lock:
            self._db.close()

    def reset(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            for table in ("messages", "dest_counts", "submit_counts", "batches", "outbox", "events", "counters"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
            self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'events'")
            self._db.execute("COMMIT")
            self._counters = dict.fromkeys(COUNTERS, 0)
            self.config = dict(self.initial_config)
            self.faults = dict(DEFAULT_FAULTS)
            self.last_client_serial = None
            self.last_request_id = None
            self._random = random.Random(self.config["seed"])
            self._make_channels()

    def set_faults(self, changes):
        faults = dict(self.faults)
        for key, value in changes.items():
            if key not in DEFAULT_FAULTS:
                raise SimError(400, "invalid_request", f"unknown fault {key!r}; known: {', '.join(DEFAULT_FAULTS)}")
            try:
                faults[key] = _fault_value(key, value)
            except (TypeError, ValueError):
                raise SimError(400, "invalid_request", f"bad value for fault {key!r}: {value!r}") from None
        self.faults = faults  # one atomic swap: request threads read a consistent dict
        return self.public_faults()

    def set_config(self, changes):
        with self._lock:
            for key, value in changes.items():
                if key not in DEFAULT_CONFIG or key in ("channels", "seed"):
                    raise SimError(400, "invalid_request", f"cannot change {key!r} at run time")
                self.config[key] = value
        return dict(self.config)

    def public_faults(self):
        faults = dict(self.faults)
        if faults["reject_code"] is not None:
            faults["reject_code"] = status_hex(faults["reject_code"])
        return faults

    # --- API --------------------------------------------------------------------------------

    def health(self):
        channels = [{"name": c.name, "up": True, "tps_limit": self.config["tps"]} for c in self.channels.values()]
        return {"status": "ok", "schema_version": self.faults["schema_version"], "core_version": CORE_VERSION,
                "channels": channels}

    def submit(self, idem_key, raw_body):
        """Returns (json_text, replayed)."""
        if not idem_key or len(idem_key) > 200 or not idem_key.isprintable() or not idem_key.isascii():
            raise SimError(400, "missing_idempotency_key", "Idempotency-Key header (1-200 printable ASCII) is required")
        refuse = self.faults["refuse_status"]
        if refuse is not None:  # every batch, fresh or replayed
            with self._lock:
                self._bump_committed({"batches": 1, "refused_batches": 1})
            raise SimError(refuse, REFUSAL_CODES.get(refuse, "refused"),
                           f"batch refused with HTTP {refuse} (simulated)",
                           {"Retry-After": "1"} if refuse in (429, 503) else None)
        body_hash = hashlib.sha256(raw_body).hexdigest()
        with self._lock:
            row = self._db.execute("SELECT body_hash, response FROM batches WHERE idem_key = ?", (idem_key,)).fetchone()
        if row is not None:
            return self._replay(idem_key, body_hash, row)
        messages = _validate_batch(raw_body)
        reject_code, reject_ratio = self.faults["reject_code"], self.faults["reject_ratio"]
        with self._lock:
            # Checked again under the lock: a concurrent request with the same key may have won.
            row = self._db.execute("SELECT body_hash, response FROM batches WHERE idem_key = ?", (idem_key,)).fetchone()
            if row is not None:
                return self._replay(idem_key, body_hash, row, locked=True)
            now = time.time()
            depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            if depth + len(messages) > self.config["max_queue_depth"]:
                drain = math.ceil(depth / max(1.0, self.config["tps"] * len(self.channels)))
                raise SimError(429, "throttled", f"queue full ({depth} messages waiting)",
                               {"Retry-After": str(max(1, drain))})
            known = self._accepted_ids([m["id"] for m in messages])
            batch_id = "b-" + uuid.uuid4().hex
            results, msg_rows, outbox_rows, dests = [], [], [], []
            accepted = rejected = dups = 0
            for m in messages:
                if m["id"] in known:
                    dups += 1
                    results.append({"id": m["id"], "accepted": True, "core_id": known[m["id"]],
                                    "command_status": status_hex(ROK)})
                    continue
                forced = reject_code is not None and (reject_ratio >= 1.0 or self._random.random() < reject_ratio)
                code = reject_code if forced else self._judge(m)
                if code != ROK:
                    rejected += 1
                    results.append({"id": m["id"], "accepted": False, "core_id": None,
                                    "command_status": status_hex(code)})
                    continue
                accepted += 1
                core_id = uuid.uuid4().hex
                channel = min(self.channels.values(), key=lambda c: c.next_free)
                channel.next_free = max(now, channel.next_free) + 1.0 / float(self.config["tps"])
                channel.accepted_total += 1
                latency = float(self.config["latency_seconds"]) * self._random.uniform(0.8, 1.2)
                status, error = self._outcome(m["destination"])
                known[m["id"]] = core_id  # a repeated id later in this batch is impossible (400), kept for safety
                msg_rows.append((m["id"], core_id, batch_id, m["destination"], m["saddr"], m["ston"], m["snpi"],
                                 m["dton"], m["dnpi"], m["text"], m["data_coding"], channel.name, now))
                outbox_rows.append((core_id, m["id"], channel.name, now, channel.next_free + latency, status, error))
                dests.append((m["destination"],))
                results.append({"id": m["id"], "accepted": True, "core_id": core_id, "command_status": status_hex(ROK)})
            response = json.dumps({"batch_id": batch_id, "results": results}, separators=(",", ":"))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", msg_rows)
                self._db.executemany("INSERT INTO outbox VALUES (?,?,?,?,?,?,?)", outbox_rows)
                self._db.executemany("INSERT INTO dest_counts VALUES (?, 1) ON CONFLICT (destination) "
                                     "DO UPDATE SET n = n + 1", dests)
                # Every message of a fresh batch reached the SMSC side (accepted or not): per destination.
                self._db.executemany("INSERT INTO submit_counts VALUES (?, 1) ON CONFLICT (destination) "
                                     "DO UPDATE SET n = n + 1", [(m["destination"],) for m in messages])
                self._db.execute("INSERT INTO batches VALUES (?,?,?,?)", (idem_key, body_hash, response, now))
                self._bump({"accepted": accepted, "rejected": rejected, "duplicates_refused": dups,
                            "submitted": len(messages), "batches": 1})
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return response, False

    def _replay(self, idem_key, body_hash, row, locked=False):
        stored_hash, response = row
        if stored_hash != body_hash:
            raise SimError(409, "idempotency_conflict",
                           f"Idempotency-Key {idem_key!r} was used with a different body")
        if locked:
            self._bump_committed({"replays": 1})
        else:
            with self._lock:
                self._bump_committed({"replays": 1})
        return response, True

    def _bump(self, deltas):
        for name, delta in deltas.items():
            if delta:
                self._counters[name] += delta
                self._db.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = ?",
                                 (name, self._counters[name], self._counters[name]))

    def _bump_committed(self, deltas):
        self._db.execute("BEGIN IMMEDIATE")
        self._bump(deltas)
        self._db.execute("COMMIT")

    def _accepted_ids(self, ids):
        found: dict = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT id, core_id FROM messages WHERE id IN ({marks})", chunk))  # noqa: S608
        return found

    def _judge(self, m):
        if not _DIGITS.match(m["destination"]):
            return RINVDSTADR
        prefix = self.config["reject_prefix"]
        if prefix and m["destination"].startswith(prefix):
            return RINVDSTADR
        if not 1 <= len(m["saddr"]) <= 20:
            return RINVSRCADR
        for field, code, top in (("ston", RINVSRCTON, 6), ("snpi", RINVSRCNPI, 18),
                                 ("dton", RINVDSTTON, 6), ("dnpi", RINVDSTNPI, 18)):
            if not 0 <= m[field] <= top:
                return code
        if m["data_coding"] not in (0, 8):
            return RUNKNOWNERR
        if len(m["text"]) > (1530 if m["data_coding"] == 0 else 670):
            return RINVMSGLEN
        return ROK

    def _outcome(self, destination):
        prefix = self.config["undeliverable_prefix"]
        if prefix and destination.startswith(prefix):
            return "UNDELIV", "001"
        if self._random.random() < float(self.config["failure_ratio"]):
            pick = self._random.random()
            for status, error, weight in _FAILURES:
                if pick < weight:
                    return status, error
                pick -= weight
            return _FAILURES[0][:2]
        return "DELIVRD", "000"

    def events(self, cursor, limit):
        try:
            after = int(cursor or 0)
            limit = int(limit) if limit not in (None, "") else 500
        except ValueError:
            raise SimError(400, "invalid_request", "cursor and limit must be integers") from None
        if after < 0 or not 1 <= limit <= MAX_EVENTS_PAGE:
            raise SimError(400, "invalid_request", f"cursor >= 0 and 1 <= limit <= {MAX_EVENTS_PAGE}")
        with self._lock:
            rows = self._db.execute("SELECT cursor, core_id, id, status, error_code, done_at FROM events "
                                    "WHERE cursor > ? ORDER BY cursor LIMIT ?", (after, limit)).fetchall()
        events = [{"cursor": str(c), "core_id": core_id, "id": mid, "status": st, "error_code": err,
                   "done_at": iso(done)} for c, core_id, mid, st, err, done in rows]
        return {"events": events, "next_cursor": events[-1]["cursor"] if events else str(after)}

    def metrics(self):
        now = time.time()
        with self._lock:
            depths = dict(self._db.execute("SELECT channel, COUNT(*) FROM outbox GROUP BY channel"))
            channels = []
            for c in self.channels.values():
                recent = 0
                for t in reversed(c.delivered):  # roughly in report order, newest last
                    if t <= now - 10:
                        break
                    recent += 1
                lat = sorted(c.latencies)
                channels.append({
                    "name": c.name, "up": True, "tps_limit": self.config["tps"],
                    "throughput_tps": round(recent / 10.0, 1), "queue_depth": depths.get(c.name, 0),
                    "latency_ms": {"p50": _pct(lat, 0.5), "p95": _pct(lat, 0.95)},
                    "latency_seconds": c.latency_histogram(),
                    "accepted_total": c.accepted_total, "delivered_total": c.delivered_total})
        return {"at": iso(now), "queue_depth": sum(depths.values()), "accepted_total": self._counters["accepted"],
                "delivered_total": sum(c["delivered_total"] for c in channels), "channels": channels}

    def stats(self):
        with self._lock:
            max_dest = self._db.execute("SELECT MAX(n) FROM dest_counts").fetchone()[0] or 0
            max_submits = self._db.execute("SELECT MAX(n) FROM submit_counts").fetchone()[0] or 0
            destinations = self._db.execute("SELECT COUNT(*) FROM dest_counts").fetchone()[0]
            events = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            depth = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return {**self._counters, "max_per_destination": max_dest, "max_submissions_per_destination": max_submits,
                    "destinations": destinations,
                    "events": events, "queue_depth": depth,
                    "last_client_serial": self.last_client_serial, "last_request_id": self.last_request_id,
                    "faults": self.public_faults(),
                    "config": dict(self.config)}

    # --- delivery reports -------------------------------------------------------------------

    def deliver_due(self, now=None):
        """Turn due outbox rows into events (cursor order = order of availability)."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute("SELECT core_id, id, channel, accepted_at, due_at, status, error_code FROM outbox "
                                    "WHERE due_at <= ? ORDER BY due_at LIMIT 20000", (now,)).fetchall()
            if not rows:
                return 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (core_id, id, channel, status, error_code, done_at) "
                                     "VALUES (?,?,?,?,?,?)", [(r[0], r[1], r[2], r[5], r[6], r[4]) for r in rows])
                self._db.executemany("DELETE FROM outbox WHERE core_id = ?", [(r[0],) for r in rows])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for _core_id, _, channel, accepted_at, due_at, _, _ in rows:
                c = self.channels.get(channel)
                if c is not None:
                    c.delivered.append(due_at)
                    c.latencies.append(due_at - accepted_at)
                    c.observe_latency(due_at - accepted_at)
                    c.delivered_total += 1
        return len(rows)

    def _run_deliveries(self):
        while not self._stop.wait(0.05):
            try:
                self.deliver_due()
            except sqlite3.ProgrammingError:  # closed during shutdown
                return


def _fault_value(key, value):
    """A fault switch's value in its type; ValueError/TypeError for a value that makes no sense."""
    if key == "throttle":
        return 1.0 if value is True else float(value or 0)
    if key == "reject_code":
        return parse_status(value)
    if key in ("slow_seconds", "large_response_mb"):
        return float(value or 0)
    if key == "down":
        return bool(value)
    if key == "reject_ratio":
        ratio = float(1.0 if value is None else value)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("reject_ratio must be between 0 and 1")
        return ratio
    if key == "refuse_status":
        if value in (None, False, "", 0):
            return None
        status = int(value)
        if not 400 <= status <= 599:
            raise ValueError("refuse_status must be an HTTP status 400-599")
        return status
    return value


def _pct(values, q):
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000)


def _validate_batch(raw_body):
    try:
        body = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError):
        raise SimError(400, "invalid_json", "the body is not valid JSON") from None
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_BATCH:
        raise SimError(400, "invalid_request", f"'messages' must be a list of 1-{MAX_BATCH} messages")
    seen = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise SimError(400, "invalid_request", f"messages[{i}] is not an object")
        for field, kind in _MESSAGE_FIELDS.items():
            value = m.get(field)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SimError(400, "invalid_request", f"messages[{i}].{field} must be {kind.__name__}")
        if not 1 <= len(m["id"]) <= 64:
            raise SimError(400, "invalid_request", f"messages[{i}].id must be 1-64 characters")
        if m["id"] in seen:
            raise SimError(400, "invalid_request", f"messages[{i}].id {m['id']!r} repeats in this batch")
        seen.add(m["id"])
    return messages


def db_path(data_dir):
    os.makedirs(data_dir, exist_ok=True)
    return os.path.join(data_dir, "coresim.db")
