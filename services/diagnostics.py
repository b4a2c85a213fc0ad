"""Technical health signals for the Diagnostics pages and the pre-flight checklist of large campaigns.

Each check answers a small dict and never raises: the Core (status, latency, schema version ours
vs the Core's), the Alembic head vs the database, the audit store (status, retention, fallback
size, dropped events), RQ queues, workers and periodic jobs, and the client certificate's expiry.
The Core probe uses short timeouts and is shared for a few seconds through Redis, so the Live
Pulse and these pages never pile up calls on a slow Core.

`preflight(campaign)` returns the checklist shown on the wizard's review step and on Diagnostics:
a list of {"item", "status": "pass"|"warn"|"fail", "reason"}.

Least information: host names, PIDs, file paths, queue and worker details and exception texts are
for super admins (`system_report`, `preflight(..., detailed=True)`); a workspace admin gets the
Core's status in words and the pre-flight of their own campaigns (`workspace_report`).
"""
import json
import logging
import math
import os
import shutil
import time
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select, text

import audit
from extensions import db, redis_connection
from gateway import SCHEMA_VERSION, CoreError, CoreTLSError, CoreUnavailable
from models import Campaign, Upload
from models.states import CampaignStatus as S
from models.states import Mode
from services import audit_seals, core_probe, scheduler_lease, settings, trigger_lane
from services.dispatch import local_now
from services.queues import QUEUES, get_queue

log = logging.getLogger("mc.diagnostics")

CORE_CACHE_KEY = "mc:diag:core"
CORE_CACHE_SECONDS = 5
CERT_WARN_DAYS = 30
ACTIVE_STATUSES = ("New", "Building", "Pending", "Sending", "Paused")


def _item(item, status, reason):
    return {"item": item, "status": status, "reason": reason}


def worst(items):
    order = {"pass": 0, "warn": 1, "fail": 2}
    return max((i["status"] for i in items), key=lambda status: order[status], default="pass")


# --- the Core -------------------------------------------------------------------------------

def probe_core():
    """Call GET /v1/health now: {ok, status, latency_ms, schema_core, schema_ours, schema_match, error}."""
    started = time.monotonic()
    out = {"ok": False, "status": "unreachable", "latency_ms": None, "schema_core": None, "summary": None,
           "schema_ours": SCHEMA_VERSION, "schema_match": None, "error": None, "tps": None,
           "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}
    out["url"] = current_app.config["CORE_URL"]
    try:
        health = core_probe.probe_client().health()
    except (CoreError, OSError, ValueError) as exc:
        out["error"] = str(exc)[:300]
        out["summary"] = f"unreachable at {out['url']}: {core_error_in_words(exc)}"
    else:
        out["status"] = str(health.get("status"))
        out["ok"] = out["status"] == "ok"
        out["schema_core"] = health.get("schema_version")
        out["schema_match"] = out["schema_core"] == SCHEMA_VERSION
        out["tps"] = channels_tps(health)
    out["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    return out


def channels_tps(health):
    """The Core's throughput from /v1/health: the sum of its up channels' TPS limits (None if unknown)."""
    total = 0.0
    for channel in (health or {}).get("channels") or []:
        try:
            if channel.get("up", True):
                total += max(float(channel.get("tps_limit") or 0), 0.0)
        except (TypeError, ValueError, AttributeError):
            continue  # a malformed channel entry says nothing about throughput
    return total or None


def core_error_in_words(exc):
    """A failed Core call in a few words that fit a card ("connection refused"), from the
    exception chain; the raw text stays in `error` for super admins."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(seen) < 10:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    text_all = " ".join(f"{type(e).__name__} {e}" for e in seen).lower()
    if isinstance(exc, CoreTLSError) or "ssl" in text_all or "certificate" in text_all:
        return "TLS handshake failed (client certificate or CA refused)"
    for needle, words in (("connection refused", "connection refused"), ("connectionrefused", "connection refused"),
                          ("name or service not known", "host name not found"),
                          ("nodename nor servname", "host name not found"),
                          ("temporary failure in name resolution", "host name not found"),
                          ("timed out", "no answer in time"), ("timeout", "no answer in time"),
                          ("no route to host", "no route to host"), ("network is unreachable", "network unreachable"),
                          ("connection reset", "connection reset"), ("remotedisconnected", "connection closed")):
        if needle in text_all:
            return words
    if isinstance(exc, CoreUnavailable) and getattr(exc, "status", None):
        return f"answered HTTP {exc.status}"
    return type(exc).__name__


def core_status(max_age=CORE_CACHE_SECONDS):
    """The Core probe, shared between processes for `max_age` seconds (0 = probe now)."""
    redis = None
    if max_age:
        try:
            redis = redis_connection()
            cached = redis.get(CORE_CACHE_KEY)
            if cached:
                return json.loads(cached)
        except Exception as exc:  # Redis down: probe directly, the page still answers
            log.info("core status cache unavailable: %s", exc)
            redis = None
    status = probe_core()
    if redis is not None:
        try:
            redis.set(CORE_CACHE_KEY, json.dumps(status), ex=max(int(max_age), 1))
        except RedisError as exc:  # the cache only saves a probe; the page has its answer
            log.info("core status not cached: %s", exc)
    return status


# --- database schema --------------------------------------------------------------------------

def schema_status():
    from alembic.script import ScriptDirectory

    try:
        heads = sorted(ScriptDirectory(os.path.join(current_app.root_path, "migrations")).get_heads())
    except Exception as exc:  # noqa: BLE001 - reported on the page
        return {"ok": False, "heads": [], "database": [], "error": f"cannot read migrations: {exc}"[:300]}
    try:
        current = sorted(r[0] for r in db.session.execute(text("SELECT version_num FROM alembic_version")))
        db.session.rollback()
    except Exception as exc:  # noqa: BLE001
        db.session.rollback()
        return {"ok": False, "heads": heads, "database": [], "error": f"cannot read alembic_version: {exc}"[:300]}
    return {"ok": heads == current, "heads": heads, "database": current, "error": None}


# --- audit store ----------------------------------------------------------------------------

def audit_status():
    cfg = current_app.config
    try:
        store = audit.get_store()
        up = store.ping()
        size, dropped = store.fallback_size(), store.dropped_count()
        backend = "embedded (montydb)" if store.embedded else "MongoDB"
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "backend": "?", "error": str(exc)[:300],
                "retention_days": settings.value("AUDIT_RETENTION_DAYS"),
                "fallback_bytes": None, "fallback_cap": cfg["AUDIT_FALLBACK_MAX_BYTES"], "dropped": None}
    return {"ok": bool(up) and not dropped, "up": bool(up), "backend": backend, "error": None,
            "retention_days": settings.value("AUDIT_RETENTION_DAYS"), "fallback_bytes": size,
            "fallback_cap": cfg["AUDIT_FALLBACK_MAX_BYTES"], "dropped": dropped}


# --- RQ: queues, workers, periodic jobs -------------------------------------------------------

def queue_status():
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    try:
        rows = []
        for name in QUEUES:
            queue = get_queue(name)
            rows.append({"queue": name, "waiting": queue.count, "running": StartedJobRegistry(queue=queue).count,
                         "scheduled": ScheduledJobRegistry(queue=queue).count,
                         "failed": FailedJobRegistry(queue=queue).count})
        return {"ok": True, "queues": rows, "error": None}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "queues": [], "error": f"Redis: {exc}"[:300]}


def worker_status():
    from rq import Worker

    try:
        workers = Worker.all(connection=get_queue("default").connection)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "workers": [], "uncovered": list(QUEUES), "error": f"Redis: {exc}"[:300]}
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for w in workers:
        beat = w.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        age = (now - beat).total_seconds() if beat else None
        rows.append({"name": w.name, "hostname": w.hostname, "pid": w.pid, "state": str(w.get_state()),
                     "queues": w.queue_names(), "last_heartbeat": beat, "age_s": age,
                     "alive": age is not None and age <= (w.worker_ttl or 420) + 60})
    covered = {q for r in rows if r["alive"] for q in r["queues"]}
    uncovered = [q for q in QUEUES if q not in covered]
    return {"ok": bool(rows) and not uncovered, "workers": rows, "uncovered": uncovered, "error": None}


def cron_status():
    """Last run of every periodic job rq cron has enqueued (from RQ's cron registries)."""
    from rq import cron_job_registry
    from rq.cron import CronScheduler, get_cron_job_ids
    from rq.job import Job

    try:
        connection = redis_connection()
        rows = []
        for name in cron_job_registry.get_names(connection):
            score = connection.zscore(cron_job_registry.get_registry_key(), name)
            row = {"name": name, "enqueued_at": datetime.fromtimestamp(score, UTC) if score else None,
                   "status": None, "ended_at": None}
            ids = get_cron_job_ids(name, connection, 0, 0)
            if ids:
                job = Job.fetch(ids[0], connection=connection) if connection.exists(f"rq:job:{ids[0]}") else None
                if job is not None:
                    status = job.get_status(refresh=False)
                    row["status"], row["ended_at"] = getattr(status, "value", status), job.ended_at
            rows.append(row)
        leader = scheduler_lease.current(connection)
        schedulers = [{"name": s.name, "hostname": s.hostname, "last_heartbeat": s.last_heartbeat,
                       "active": bool(leader) and leader["name"] == s.name}
                      for s in CronScheduler.all(connection)]
        return {"ok": bool(schedulers), "jobs": rows, "schedulers": schedulers, "leader": leader, "error": None}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "jobs": [], "schedulers": [], "leader": None, "error": f"Redis: {exc}"[:300]}


# --- client certificate ---------------------------------------------------------------------

def certificate_status(now=None):
    from cryptography import x509

    path = current_app.config["CORE_CLIENT_CERT"]
    now = now or datetime.now(UTC)
    try:
        with open(path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
    except (OSError, ValueError) as exc:
        return {"status": "fail", "path": path, "not_after": None, "days_left": None, "subject": None,
                "reason": f"cannot read the client certificate: {exc}"[:300]}
    not_after = cert.not_valid_after_utc
    days = (not_after - now).total_seconds() / 86400
    if days < 0:
        status, reason = "fail", "expired — the Core refuses it; rotate it now (flask certs rotate-client)"
    elif days < CERT_WARN_DAYS:
        status, reason = "warn", f"expires in {int(days)} days — rotate it soon"
    else:
        status, reason = "pass", f"valid for {int(days)} more days"
    return {"status": status, "path": path, "not_after": not_after, "days_left": int(math.floor(days)),
            "subject": cert.subject.rfc4514_string(), "reason": reason}


def public_core(core):
    """The Core probe without the exception text (which names hosts and ports)."""
    return {k: core.get(k) for k in ("ok", "status", "latency_ms", "schema_core", "schema_ours", "schema_match",
                                     "checked_at", "tps")}


def workspace_report(workspace_id=None):
    """What a workspace admin's Diagnostics page shows: the Core's status in words, and whether the
    Trigger lane is served (reported when the workspace has a Trigger campaign that can receive)."""
    report = {"core": public_core(core_status()), "trigger_lane": None}
    if workspace_id is None or db.session.scalar(select(Campaign.id).where(
            Campaign.workspace_id == workspace_id, Campaign.mode == Mode.TRIGGER,
            Campaign.status.in_((S.SENDING, S.PAUSED)), Campaign.archived_at.is_(None)).limit(1)) is not None:
        lane = trigger_lane.lane_status()
        report["trigger_lane"] = {"ok": lane["ok"], "reason": lane["reason"] if lane["ok"] else
                                  "No live worker serves the Trigger lane: OTP pushes are accepted but wait for "
                                  "the bulk workers. Ask the operators to start `worker-trigger`."}
    return report


def system_report():
    """Everything the Diagnostics page shows about the installation (super admins)."""
    return {"core": core_status(), "schema": schema_status(), "audit": audit_status(), "queues": queue_status(),
            "workers": worker_status(), "trigger_lane": trigger_lane.lane_status(), "cron": cron_status(),
            "certificate": certificate_status(), "disk": disk_status(), "audit_seals": audit_seals.status()}


def disk_status():
    path = current_app.config["MC_DATA_DIR"]
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return {"path": path, "free": None, "total": None, "error": str(exc)}
    return {"path": path, "free": usage.free, "total": usage.total, "error": None}


# --- the pre-flight checklist ----------------------------------------------------------------

def preflight_threshold():
    return int(current_app.config["PREFLIGHT_MIN_RECIPIENTS"])


def preflight_required(campaign):
    """Is this a large campaign (the checklist is shown above PREFLIGHT_MIN_RECIPIENTS recipients)?"""
    return (campaign.recipients_count or 0) >= preflight_threshold()


def large_campaigns(workspace_id=None, limit=10):
    stmt = select(Campaign).where(Campaign.status.in_(ACTIVE_STATUSES), Campaign.archived_at.is_(None),
                                  Campaign.recipients_count >= preflight_threshold())
    if workspace_id is not None:
        stmt = stmt.where(Campaign.workspace_id == workspace_id)
    return list(db.session.scalars(stmt.order_by(Campaign.recipients_count.desc()).limit(limit)))


def _window_minutes(campaign):
    if campaign.mode == Mode.TRIGGER and campaign.ignore_daily_window:
        return 24 * 60
    ws = campaign.workspace
    start_h, start_m = (int(x) for x in ws.window_start.split(":"))
    end_h, end_m = (int(x) for x in ws.window_end.split(":"))
    return max((end_h * 60 + end_m) - (start_h * 60 + start_m), 0)


def _core_tps():
    """Sum of the Core channels' TPS limits (None when unknown)."""
    payload = core_probe.core_metrics(current_app)
    limits = [float(c.get("tps_limit") or 0) for c in (payload or {}).get("channels") or [] if c.get("up", True)]
    return sum(limits) or None


def _file_bytes(campaign):
    size = db.session.scalar(select(func.coalesce(func.sum(Upload.bytes_total), 0))
                             .where(Upload.campaign_id == campaign.id)) or 0
    return int(size) or int(campaign.recipients_count or 0) * 16  # ~16 bytes per line when no file is known


def _finish_check(campaign, tps, today=None):
    item = "Daily limit and quiet hours can finish the campaign in its window"
    remaining = max(int(campaign.recipients_count or 0) - int(campaign.sent_count or 0)
                    - int(campaign.failed_count or 0), 0)
    if campaign.mode == Mode.TRIGGER:
        return _item(item, "pass", "Trigger campaigns send each pushed number at once.")
    if remaining == 0:
        return _item(item, "pass", "Nothing left to send.")
    minutes = _window_minutes(campaign)
    if minutes == 0:
        return _item(item, "fail", "The workspace's sending window is empty.")
    per_day_rate = minutes * 60 * tps if tps else None
    limit = campaign.daily_limit or None
    per_day = min(x for x in (per_day_rate, limit, float("inf")) if x)
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day and campaign.spread_last_day:
        today = today or local_now(campaign.workspace).date()
        first = max(campaign.spread_first_day, today)
        days = (campaign.spread_last_day - first).days + 1
        if days <= 0:
            return _item(item, "fail", f"The Spread window ended on {campaign.spread_last_day} with "
                                       f"{remaining:,} recipients left.")
        need = math.ceil(remaining / days)
        if limit and need > limit:
            return _item(item, "fail", f"{remaining:,} recipients over {days} day(s) need {need:,}/day; "
                                       f"the daily limit is {limit:,}.")
        if per_day_rate and need > per_day_rate:
            return _item(item, "fail", f"{need:,}/day do not fit in the {minutes // 60} h {minutes % 60} min sending "
                                       f"window at {tps:,.0f} msg/s.")
        return _item(item, "pass", f"{need:,}/day over {days} day(s) fit the limit and the window.")
    if per_day == float("inf"):
        return _item(item, "pass", "No daily limit; the Core's throughput is unknown right now.")
    days = math.ceil(remaining / per_day)
    if days > 1:
        what = "daily limit" if limit and per_day == limit else "sending window"
        return _item(item, "warn", f"{remaining:,} recipients take about {days} days at the {what} "
                                   f"({per_day:,.0f}/day).")
    return _item(item, "pass", f"{remaining:,} recipients fit in one day ({per_day:,.0f}/day possible).")


def preflight(campaign, *, core=None, workers=None, audit=None, detailed=False):
    """The pre-flight checklist of one campaign: [{"item", "status": pass|warn|fail, "reason"}].

    `core`, `workers` and `audit` may pass results of core_status()/worker_status()/audit_status()
    already computed for a page that checks several campaigns. Reasons name hosts, paths and
    exception texts only when `detailed` (super admins)."""
    core = core or core_status()
    workers = workers or worker_status()
    audit = audit or audit_status()
    items = []

    if core["ok"]:
        items.append(_item("Core API reachable", "pass", f"status ok in {core['latency_ms']} ms"))
    else:
        reason = f"Core {core['status']}: {core.get('error') or 'no answer'}" if detailed else f"Core {core['status']}"
        items.append(_item("Core API reachable", "fail", reason[:300]))

    if core["schema_match"] is None:
        items.append(_item("Schema versions match", "warn",
                           f"unknown while the Core does not answer (ours: {core['schema_ours']})"))
    elif core["schema_match"]:
        items.append(_item("Schema versions match", "pass", f"both speak schema {core['schema_ours']}"))
    else:
        items.append(_item("Schema versions match", "fail",
                           f"ours {core['schema_ours']}, the Core's {core['schema_core']} — upgrade one side"))

    dispatchers = [w for w in workers["workers"] if w["alive"] and "dispatch" in w["queues"]]
    if dispatchers:
        items.append(_item("Workers alive", "pass", f"{len(dispatchers)} worker(s) on the dispatch queue"))
    elif workers.get("error"):
        items.append(_item("Workers alive", "fail",
                           workers["error"] if detailed else "the queue broker does not answer"))
    else:
        items.append(_item("Workers alive", "fail", "no live worker listens to the dispatch queue"))

    need = 2 * _file_bytes(campaign)
    disk = disk_status()
    if disk["free"] is None:
        items.append(_item("Disk free ≥ 2× the file", "fail",
                           (disk["error"] or "unknown") if detailed else "the data disk cannot be read"))
    elif disk["free"] >= need:
        items.append(_item("Disk free ≥ 2× the file", "pass",
                           f"{_mb(disk['free'])} free, {_mb(need)} needed"))
    else:
        where = f"under {disk['path']}" if detailed else "on the data disk"
        items.append(_item("Disk free ≥ 2× the file", "fail",
                           f"only {_mb(disk['free'])} free {where}, {_mb(need)} needed"))

    if audit["ok"]:
        items.append(_item("Audit store healthy", "pass", f"{audit['backend']} answers"))
    elif audit.get("dropped"):
        items.append(_item("Audit store healthy", "fail", f"{audit['dropped']} audit events were dropped "
                                                          "(fallback file over its cap)"))
    else:
        items.append(_item("Audit store healthy", "warn", "store unreachable: events go to the fallback file "
                                                          f"({_mb(audit.get('fallback_bytes') or 0)} so far)"))

    revision = campaign.sender_revision
    if revision is None:
        items.append(_item("Sender revision approved", "fail", "no sender name chosen"))
    elif revision.state == "approved":
        items.append(_item("Sender revision approved", "pass", f"{revision.saddr} (revision {revision.number})"))
    else:
        items.append(_item("Sender revision approved", "fail", f"{revision.saddr} is {revision.state}"))

    items.append(_finish_check(campaign, _core_tps() if core["ok"] else None))
    return items


def _mb(n):
    return f"{n / 1024 / 1024:,.1f} MB"


def campaign_checklists(workspace_id=None, limit=10, *, core=None, detailed=False):
    """[(campaign, items)] for the large campaigns not yet finished (Diagnostics); `core` may pass
    this page's probe so the Core is not called again per campaign."""
    campaigns = large_campaigns(workspace_id, limit)
    if not campaigns:
        return []
    shared = {"core": core or core_status(), "workers": worker_status(), "audit": audit_status()}
    return [(c, preflight(c, detailed=detailed, **shared)) for c in campaigns]
