"""The Overview dashboard's figures, for one workspace or (super admin) every workspace.

Reads only aggregates — never a COUNT(*) over recipients: campaign counters grouped by status
(KPI tiles, funnel, delivery ring), HourlyStat rows (24-hour chart), campaigns created in the last
30 days per author (Top Authors) and the Redis per-minute counters of services/pulse.py (Live
Pulse). Each query is one GROUP BY over indexed campaign or hourly rows.

The campaign figures (everything but the Live Pulse) are shared for DASHBOARD_CACHE_SECONDS
(default 5, the Live Pulse's refresh interval) through Redis: fifty operators on the same
workspace's home cost one set of GROUP BYs every few seconds, not one per page view. The Live
Pulse itself is always read live.
"""
import json
import logging
from datetime import datetime, timedelta

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import func, select

from extensions import db, redis_connection
from models import Campaign, HourlyStat, User, Workspace, utcnow
from models.campaigns import STATUSES
from services import pulse, timefmt, trigger_lane
from services.diagnostics import core_status

ACTIVE = ("Sending", "Paused")          # dispatch in progress: the ring and "active" tile
COMPLETED = ("Done",)
FAILED = ("Failed",)
FUNNEL = STATUSES                       # New → Building → Pending → Sending/Paused → terminal
TOP_AUTHORS_DAYS = 30

log = logging.getLogger("mc.dashboard")


def _scope(stmt, column, workspace_ids):
    return stmt if workspace_ids is None else stmt.where(column.in_(workspace_ids))


def status_counts(workspace_ids=None):
    """{status: (campaigns, sent, delivered, failed, inflight)} over non-archived campaigns."""
    stmt = select(Campaign.status, func.count(Campaign.id), func.coalesce(func.sum(Campaign.sent_count), 0),
                  func.coalesce(func.sum(Campaign.delivered_count), 0),
                  func.coalesce(func.sum(Campaign.failed_count), 0),
                  func.coalesce(func.sum(Campaign.inflight_count), 0)).where(Campaign.archived_at.is_(None))
    rows = db.session.execute(_scope(stmt, Campaign.workspace_id, workspace_ids).group_by(Campaign.status)).all()
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


def kpis(counts):
    n = {status: counts.get(status, (0,))[0] for status in STATUSES}
    return {"total": sum(n.values()), "active": sum(n[s] for s in ACTIVE),
            "completed": sum(n[s] for s in COMPLETED), "failed": sum(n[s] for s in FAILED),
            "expired": n["Expired"], "cancelled": n["Cancelled"], "pending": n["Pending"] + n["Building"]}


def ring(counts):
    """Delivered / In flight / Errors summed over the active campaigns."""
    delivered = sum(counts.get(s, (0, 0, 0, 0, 0))[2] for s in ACTIVE)
    failed = sum(counts.get(s, (0, 0, 0, 0, 0))[3] for s in ACTIVE)
    inflight = sum(counts.get(s, (0, 0, 0, 0, 0))[4] for s in ACTIVE)
    return [("Delivered", delivered), ("In flight", inflight), ("Errors", failed)]


def funnel(counts):
    return [(status, counts.get(status, (0,))[0]) for status in FUNNEL]


def hourly(workspace_ids=None, now=None, hours=24):
    """[(hour_start_utc, sent, failed)] for the last `hours` UTC hours, oldest first, zeros filled."""
    now = now or utcnow()
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=hours - 1)
    stmt = select(HourlyStat.hour, func.sum(HourlyStat.sent), func.sum(HourlyStat.failed)).where(
        HourlyStat.hour >= start)
    rows = db.session.execute(_scope(stmt, HourlyStat.workspace_id, workspace_ids).group_by(HourlyStat.hour)).all()
    by_hour: dict = {}
    for hour, sent, failed in rows:
        key = hour.replace(minute=0, second=0, microsecond=0)
        s, f = by_hour.get(key, (0, 0))
        by_hour[key] = (s + int(sent or 0), f + int(failed or 0))
    return [(h, *by_hour.get(h, (0, 0))) for h in (start + timedelta(hours=i) for i in range(hours))]


def top_authors(workspace_ids=None, now=None, limit=5):
    """Most active authors over 30 days: campaigns created and messages sent (campaign counters)."""
    since = (now or utcnow()) - timedelta(days=TOP_AUTHORS_DAYS)
    stmt = (select(Campaign.author_id, func.count(Campaign.id).label("campaigns"),
                   func.coalesce(func.sum(Campaign.sent_count), 0).label("sent"))
            .where(Campaign.created_at >= since, Campaign.author_id.isnot(None)))
    stmt = _scope(stmt, Campaign.workspace_id, workspace_ids).group_by(Campaign.author_id)
    rows = db.session.execute(stmt.order_by(func.count(Campaign.id).desc(),
                                            func.coalesce(func.sum(Campaign.sent_count), 0).desc())
                              .limit(limit)).all()
    # Plain dicts (JSON-ready for the shared cache), read as columns rather than User objects.
    users = {u.id: {"name": u.name, "email": u.email}
             for u in db.session.execute(select(User.id, User.email, User.name)
                                         .where(User.id.in_([r[0] for r in rows])))}
    return [{"user": users.get(r[0]), "campaigns": int(r[1]), "sent": int(r[2])} for r in rows]


def live_pulse(workspace_ids=None, include_core=True, tz_name=None):
    """In flight (counters), the last minute's sent/delivered/failed (Redis) and the Core's status."""
    stmt = select(func.coalesce(func.sum(Campaign.inflight_count), 0)).where(Campaign.status.in_(ACTIVE))
    inflight = int(db.session.scalar(_scope(stmt, Campaign.workspace_id, workspace_ids)) or 0)
    ids = workspace_ids if workspace_ids is not None else list(db.session.scalars(select(Workspace.id)))
    try:
        minute = pulse.last_minute(ids)
        trigger = trigger_lane.latency_last_minute(ids)
        pulse_ok = True
    except Exception:  # noqa: BLE001 - Redis down: the tile says "unknown", the page still renders
        minute, pulse_ok = {"sent": 0, "delivered": 0, "failed": 0}, False
        trigger = {"count": 0, "p50_ms": None, "p95_ms": None}
    final = minute["delivered"] + minute["failed"]
    out = {"inflight": inflight, "sent_last_minute": minute["sent"], "delivered_last_minute": minute["delivered"],
           "failed_last_minute": minute["failed"], "pulse_available": pulse_ok,
           "delivery_rate": round(100.0 * minute["delivered"] / final, 1) if final else None,
           # Trigger push -> accepted by the Core over the last minute (services/trigger_lane.py)
           "trigger_latency": trigger,
           "at": utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")}
    out["at_local"] = timefmt.clock(out["at"], tz_name, seconds=True)  # the page's "as of" (issue 17)
    if include_core:
        core = core_status()
        out["core"] = {"ok": core["ok"], "status": core["status"], "latency_ms": core["latency_ms"],
                       "schema_match": core["schema_match"]}
    return out


def campaign_figures(workspace_ids=None, now=None):
    """KPI tiles, ring, funnel, 24-hour chart and top authors, computed now (JSON-ready)."""
    counts = status_counts(workspace_ids)
    return {"kpis": kpis(counts), "ring": ring(counts), "funnel": funnel(counts),
            "hourly": [(hour.isoformat(), sent, failed) for hour, sent, failed in hourly(workspace_ids, now)],
            "top_authors": top_authors(workspace_ids, now)}


def _cache_key(workspace_ids):
    return "mc:dashboard:" + ("all" if workspace_ids is None else ",".join(map(str, sorted(workspace_ids))))


def cached_campaign_figures(workspace_ids=None):
    """campaign_figures(), shared between requests and processes for DASHBOARD_CACHE_SECONDS."""
    ttl = current_app.config["DASHBOARD_CACHE_SECONDS"]
    if ttl <= 0:
        return campaign_figures(workspace_ids)
    key = _cache_key(workspace_ids)
    try:
        redis = redis_connection()
        cached = redis.get(key)
        if cached:
            return json.loads(cached)
    except RedisError as exc:  # Redis down: compute, the page still answers
        log.info("dashboard cache unavailable: %s", exc)
        return campaign_figures(workspace_ids)
    figures = campaign_figures(workspace_ids)
    try:
        redis.set(key, json.dumps(figures), ex=ttl)
    except RedisError as exc:
        log.info("dashboard figures not cached: %s", exc)
    return figures


def dashboard(workspace_ids=None, tz_name=None):
    """Everything the Overview page shows (workspace_ids=None: every workspace); the hours and the
    Live Pulse's "as of" in the zone `tz_name` (the workspace's; None = UTC)."""
    figures = cached_campaign_figures(workspace_ids)
    figures["hourly"] = [(timefmt.local(datetime.fromisoformat(hour), tz_name), sent, failed)
                         for hour, sent, failed in figures["hourly"]]
    return {**figures, "pulse": live_pulse(workspace_ids, tz_name=tz_name)}
