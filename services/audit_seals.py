"""Sealed audit checkpoints: prove that nobody altered, removed or slipped in an audit event.

`seal()` takes the events that arrived in the audit store since the last seal (the store stamps each
insert with `arrived`, ms since the epoch), hashes each one's canonical JSON (sorted keys, UTF-8),
chains the hashes in arrival order starting from the previous seal's root, and stores the seal —
count, first/last event, root, previous root, the per-event leaves and an HMAC — in the main
database, not in the audit store. `verify()` recomputes every seal from the store and names the
first event that is missing, altered or inserted. A seal only covers arrivals older than
AUDIT_SEAL_GRACE_SECONDS, so an insert still in flight is never skipped; events flushed back from the
fallback file arrive (and are sealed) at flush time. What this proves and what not: docs/security.md.
"""
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import audit
from audit.store import AuditStoreUnavailable, now_ms
from extensions import db
from models import utcnow
from models.audit_seals import AuditSeal, AuditVerification

log = logging.getLogger("mc.audit.seals")
# What `verify` found (stored in audit_verifications.outcome, shown on Diagnostics, the CLI's exit code).
VERIFIED, FAILED, UNAVAILABLE = "verified", "failed", "unavailable"

GENESIS = "0" * 64          # the "previous root" of the first seal
LEGACY_ARRIVAL = -1         # events stored before arrival stamps existed sort first (first seal)
MAX_PROBLEMS = 50           # problems listed by one verification (the first one is what matters)
MAX_SEAL_EVENTS = 100_000   # about this many events per seal at most (memory of one seal, size of its row)


# --- hashing -----------------------------------------------------------------------------------

def _json_default(value):
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds")
    return str(value)


def canonical(event):
    """The canonical JSON of an event as the store holds it: sorted keys, no spaces, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode("utf-8")


def event_hash(event):
    return hashlib.sha256(canonical(event)).hexdigest()


def chain(prev_root, hashes):
    """root = H(…H(H(prev_root ‖ h1) ‖ h2)… ‖ hn), over the raw 32-byte digests."""
    link = bytes.fromhex(prev_root)
    for h in hashes:
        link = hashlib.sha256(link + bytes.fromhex(h)).digest()
    return link.hex()


def _ms(value):
    return int(value.astimezone(UTC).timestamp() * 1000) if isinstance(value, datetime) else None


def arrival(event):
    value = event.get("arrived")
    return value if isinstance(value, int) and not isinstance(value, bool) else LEGACY_ARRIVAL


def leaf(event):
    """One line of a seal's `leaves`: [_id, arrived, ts_ms, workspace_id, sha256]."""
    return [str(event.get("_id")), arrival(event), _ms(event.get("ts")), event.get("workspace_id"),
            event_hash(event)]


def _parse_leaves(text):
    return [json.loads(line) for line in text.splitlines() if line]


def _mac_key():
    return hmac.new(str(current_app.config["AUDIT_SEAL_KEY"]).encode(), b"mc-audit-seal-v1", hashlib.sha256).digest()


def seal_mac(seal):
    header = {"position": seal.position, "lower_ms": seal.lower_ms, "upper_ms": seal.upper_ms,
              "events": seal.events, "first": seal.first_event_id, "last": seal.last_event_id,
              "prev_root": seal.prev_root, "root": seal.root,
              "leaves_sha256": hashlib.sha256((seal.leaves or "").encode("utf-8")).hexdigest()}
    return hmac.new(_mac_key(), canonical(header), hashlib.sha256).hexdigest()


# --- sealing -----------------------------------------------------------------------------------

def last_seal():
    return db.session.scalars(select(AuditSeal).order_by(AuditSeal.position.desc()).limit(1)).first()


def seal(now=None):
    """Seal the events that arrived since the last seal, up to now − AUDIT_SEAL_GRACE_SECONDS.
    Returns the new seal, or None when there is nothing new to cover or another sealer just
    took the same position (re-running is safe). Raises AuditStoreUnavailable if the store is down:
    nothing is sealed then, the next run covers the gap."""
    upper = (now_ms() if now is None else _ms(now)) - int(current_app.config["AUDIT_SEAL_GRACE_SECONDS"]) * 1000
    last = last_seal()
    if last is not None and upper <= last.upper_ms:
        return None
    lower = last.upper_ms if last is not None else None
    leaves, cut = [], False
    for event in audit.get_store().scan_arrivals(lower, upper):
        leaves.append(leaf(event))
        # A backlog (the first seal of an installation with months of events) is cut into seals of
        # about MAX_SEAL_EVENTS, at a change of arrival time: every event of the last millisecond
        # taken is in this seal, the rest in the next.
        if len(leaves) > MAX_SEAL_EVENTS and leaves[-1][1] != leaves[-2][1]:
            leaves.pop()
            upper, cut = leaves[-1][1], True
            break
    leaves.sort(key=lambda lf: (lf[1], lf[0]))  # the store's sort, made independent of the backend
    prev_root = last.root if last is not None else GENESIS
    row = AuditSeal(position=(last.position + 1) if last is not None else 1, lower_ms=lower, upper_ms=upper,
                    events=len(leaves), first_event_id=leaves[0][0] if leaves else None,
                    last_event_id=leaves[-1][0] if leaves else None, prev_root=prev_root,
                    root=chain(prev_root, [lf[4] for lf in leaves]),
                    leaves="".join(json.dumps(lf, separators=(",", ":")) + "\n" for lf in leaves),
                    sealed_at=utcnow())
    row.mac = seal_mac(row)
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:  # another sealer took this position first: its seal covers these events
        db.session.rollback()
        return None
    log.info("[audit-seal] id=%s events=%s root=%s", row.id, row.events, row.root)
    row.caught_up = not cut  # not stored: tells seal_all whether a backlog is left
    return row


def seal_all(now=None):
    """Seal until caught up (a backlog makes several seals of MAX_SEAL_EVENTS); returns the new seals."""
    made: list[AuditSeal] = []
    while True:
        row = seal(now)
        if row is None:
            return made
        made.append(row)
        if row.caught_up:
            return made


def seal_due(now=None):
    """Is a periodic seal due (none yet, or the last is AUDIT_SEAL_MINUTES old)?"""
    last = last_seal()
    minutes = int(current_app.config["AUDIT_SEAL_MINUTES"])
    # A few seconds of slack so a 60 s tick does not skip a whole period.
    return last is None or last.sealed_at <= (now or utcnow()) - timedelta(minutes=minutes, seconds=-5)


# --- verification ------------------------------------------------------------------------------

@dataclass
class Problem:
    kind: str            # missing | altered | inserted | seal
    event_id: str | None
    seal_id: int | None
    detail: str

    def __str__(self):
        what = f"event {self.event_id} {self.kind}" if self.event_id else "seal chain broken"
        return f"{what} (seal {self.seal_id}): {self.detail}"


@dataclass
class Verification:
    outcome: str = VERIFIED       # VERIFIED | FAILED | UNAVAILABLE
    seals: int = 0
    events: int = 0
    expired: int = 0
    problems: list = field(default_factory=list)
    message: str = ""

    @property
    def first(self):
        return self.problems[0] if self.problems else None


def _seals_from(since_ms):
    stmt = select(AuditSeal).order_by(AuditSeal.position)
    if since_ms is not None:
        stmt = stmt.where(AuditSeal.upper_ms >= since_ms)
    # One seal at a time from the database (its leaves can be large).
    return db.session.scalars(stmt.execution_options(yield_per=50))


def _check_seal(row, prev):
    """The seal's own integrity: HMAC, root over its leaves, link to the previous seal."""
    problems = []
    if not hmac.compare_digest(row.mac or "", seal_mac(row)):
        problems.append("its signature (HMAC) does not match: the seal row was edited or the key changed")
    leaves = _parse_leaves(row.leaves or "")
    if len(leaves) != row.events or chain(row.prev_root, [lf[4] for lf in leaves]) != row.root:
        problems.append("its root does not match its recorded events")
    if prev is not None:
        if prev.position != row.position - 1 or prev.root != row.prev_root or prev.upper_ms != row.lower_ms:
            problems.append(f"it does not follow seal {prev.id} (previous root or range differ)")
    elif row.position != 1 and row.prev_root == GENESIS:
        problems.append("it claims to be the first seal")
    return leaves, problems


def verify(since=None, workspace_id=None, source="cli"):
    """Recompute every seal (those covering arrivals since `since`) from the audit store. The result
    names the first event that is missing, altered or inserted; `outcome` is `unavailable` (not
    `verified`) when the store cannot be read. The run is recorded for the diagnostics page."""
    started = utcnow()
    result = Verification()
    since_ms = _ms(since) if since is not None else None
    retention_cutoff = _ms(started - timedelta(days=int(current_app.config["AUDIT_RETENTION_DAYS"])))
    store = audit.get_store()
    try:
        _verify_into(result, store, since_ms, workspace_id, retention_cutoff)
    except AuditStoreUnavailable as exc:
        db.session.rollback()
        result.outcome, result.message = UNAVAILABLE, f"audit store unreachable: {str(exc)[:300]}"
    else:
        if result.problems:
            result.outcome = FAILED
            result.message = str(result.first)
        else:
            result.message = f"verified {result.events} events in {result.seals} seals"
    db.session.add(AuditVerification(started_at=started, finished_at=utcnow(), outcome=result.outcome,
                                     seals=result.seals, events=result.events,
                                     first_bad_event=result.first.event_id if result.first else None,
                                     message=result.message[:500], since=since, workspace_id=workspace_id,
                                     source=source))
    db.session.commit()
    level = logging.INFO if result.outcome == VERIFIED else logging.CRITICAL
    log.log(level, "[audit-verify] %s: %s", result.outcome, result.message)
    return result


def _verify_into(result, store, since_ms, workspace_id, retention_cutoff):
    seals = iter(_seals_from(since_ms))
    first = next(seals, None)
    if first is None:
        return
    prev = db.session.scalars(select(AuditSeal).where(AuditSeal.position == first.position - 1)).first() \
        if first.position > 1 else None
    if first.position > 1 and prev is None:
        result.problems.append(Problem("seal", None, first.id, f"seal at position {first.position - 1} is missing"))
    # The seals' upper bound, read now: events arriving later are not sealed yet.
    top = db.session.scalar(select(db.func.max(AuditSeal.upper_ms)))
    events = store.scan_arrivals(first.lower_ms, top, workspace_id)
    pending = next(events, None)
    row = first
    while row is not None:
        result.seals += 1
        leaves, seal_problems = _check_seal(row, prev)
        result.problems.extend(Problem("seal", None, row.id, p) for p in seal_problems)
        got = {}
        while pending is not None and arrival(pending) <= row.upper_ms:
            got[str(pending.get("_id"))] = pending
            pending = next(events, None)
        found = []  # (arrival, problem) in this seal
        for event_id, arrived, ts_ms, ws, digest in leaves:
            if workspace_id is not None and ws != workspace_id:
                continue
            result.events += 1
            event = got.pop(event_id, None)
            if event is None:
                if ts_ms is not None and ts_ms < retention_cutoff:
                    result.expired += 1  # removed by retention, as it should be
                    continue
                moved = store.get_event(event_id)
                if moved is not None:
                    found.append((arrived, Problem("altered", event_id, row.id,
                                                   "its arrival time was changed (it moved out of its seal)")))
                else:
                    found.append((arrived, Problem("missing", event_id, row.id, "deleted from the audit store")))
            elif event_hash(event) != digest:
                found.append((arrived, Problem("altered", event_id, row.id,
                                               "its content differs from the sealed hash")))
        for event_id, event in got.items():
            found.append((arrival(event), Problem("inserted", event_id, row.id,
                                                  "not in the seal that covers its arrival time")))
        found.sort(key=lambda item: (item[0], item[1].event_id or ""))
        result.problems.extend(p for _, p in found)
        del result.problems[MAX_PROBLEMS:]
        prev, row = row, next(seals, None)
        db.session.expunge(prev)  # keep one seal's leaves in memory at a time


# --- what the diagnostics page and the evidence pack read --------------------------------------

def last_verification():
    return db.session.scalars(select(AuditVerification).order_by(AuditVerification.id.desc()).limit(1)).first()


def status():
    """The last seal and the last verification, and whether either needs attention."""
    seal_row = db.session.execute(select(AuditSeal.id, AuditSeal.sealed_at, AuditSeal.events, AuditSeal.root)
                                  .order_by(AuditSeal.position.desc()).limit(1)).first()
    check = last_verification()
    warnings = []
    minutes = int(current_app.config["AUDIT_SEAL_MINUTES"])
    if seal_row is None:
        warnings.append("No audit seal yet: is the rq cron scheduler running?")
    elif seal_row.sealed_at < utcnow() - timedelta(minutes=3 * minutes + 1):
        warnings.append(f"The last audit seal is older than {3 * minutes} minutes: sealing has stopped.")
    if check is not None and check.outcome != VERIFIED:
        warnings.append(f"The last audit verification {check.outcome}: {check.message}")
    return {"seal": seal_row._asdict() if seal_row else None,
            "verification": None if check is None else {
                "outcome": check.outcome, "finished_at": check.finished_at, "seals": check.seals,
                "events": check.events, "message": check.message, "source": check.source},
            "warnings": warnings, "ok": not warnings}


def seal_ids_for(arrivals):
    """{arrived_ms: seal id} for the given arrival stamps (None: not sealed yet)."""
    wanted = sorted({a for a in arrivals if a is not None})
    if not wanted:
        return {}
    out = {}
    rows = db.session.execute(select(AuditSeal.id, AuditSeal.lower_ms, AuditSeal.upper_ms)
                              .where(AuditSeal.upper_ms >= wanted[0]).order_by(AuditSeal.upper_ms)).all()
    i = 0
    for value in wanted:
        while i < len(rows) and rows[i].upper_ms < value:
            i += 1
        if i < len(rows) and (rows[i].lower_ms is None or rows[i].lower_ms < value):
            out[value] = rows[i].id
    return out
