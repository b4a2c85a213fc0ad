"""Prometheus metrics for `/metrics`: process metrics plus aggregates read on each scrape.

Process-level series (Core call latency `mc_core_request_seconds`, `[core-slow]`/`[core-large]`
counts, job durations `mc_job_duration_seconds`) are recorded where they happen. With several
gunicorn workers / RQ work-horses set `PROMETHEUS_MULTIPROC_DIR` (an empty, writable directory,
wiped at service start) in the environment of every process *before* it starts: prometheus_client
then keeps the values in files there and the scrape merges them (`MultiProcessCollector`).

Aggregates are computed from the database, Redis and the audit store when scraped, never kept in
process memory, so every web worker answers the same: campaigns by status, messages
sent/delivered/failed/in flight (campaign counters), queue depths and workers (RQ), the Trigger
lane's push -> Core latency per workspace and its live workers (services/trigger_lane.py), audit
fallback bytes and dropped events, and the Core's per-ESME-channel figures (`GET /v1/metrics`,
cached for a few seconds). A part that fails is skipped and counted in `mc_scrape_errors`.
"""
import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

import audit
import gateway  # noqa: F401  (the gateway registers the mc_core_* series when imported)
from extensions import db
from models import Campaign, Workspace
from models.campaigns import STATUSES
from services import core_probe, trigger_lane
from services.queues import QUEUES, get_queue

log = logging.getLogger("mc.metrics")

JOB_SECONDS = Histogram("mc_job_duration_seconds", "Duration of background jobs.", ["job", "queue"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))

# Every metric family this module (or the gateway) exports; the Grafana test checks queries against it.
EXPORTED = (
    "mc_campaigns", "mc_messages_total", "mc_messages_inflight", "mc_queue_depth", "mc_queue_failed_jobs",
    "mc_queue_started_jobs", "mc_rq_workers", "mc_audit_fallback_bytes", "mc_audit_dropped_events_total",
    "mc_audit_store_up", "mc_core_up", "mc_core_channel_up", "mc_core_channel_throughput_tps",
    "mc_core_channel_queue_depth", "mc_core_channel_latency_ms", "mc_core_channel_accepted_total",
    "mc_core_channel_delivered_total", "mc_core_queue_depth", "mc_scrape_errors",
    "mc_job_duration_seconds", "mc_core_request_seconds", "mc_core_slow_total", "mc_core_large_total",
    "mc_workspace_campaigns", "mc_workspace_messages_total", "mc_workspace_messages_inflight",
    "mc_trigger_latency_ms", "mc_trigger_accepted_last_minute", "mc_trigger_lane_workers",
)


def observe_job(job, queue, seconds):
    JOB_SECONDS.labels(job, queue).observe(seconds)


def multiprocess_dir():
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")  # noqa: SIM112 (prometheus_client's legacy name)



class AggregateCollector:
    """Reads aggregates on every collect() (inside the Flask app context given)."""

    def __init__(self, app):
        self.app = app

    def collect(self):
        errors = GaugeMetricFamily("mc_scrape_errors", "Parts of this scrape that failed (1) or worked (0).",
                                   labels=["part"])
        for part, fn in (("database", self._database), ("queues", self._queues), ("audit", self._audit),
                         ("core", self._core), ("trigger", self._trigger)):
            try:
                families = list(fn())
            except Exception as exc:  # a scrape reports a broken part, it never fails as a whole
                log.warning("metrics part %s failed: %s", part, exc)
                errors.add_metric([part], 1)
                continue
            errors.add_metric([part], 0)
            yield from families
        yield errors

    def _database(self):
        rows = db.session.execute(select(
            Campaign.status, func.count(Campaign.id), func.coalesce(func.sum(Campaign.sent_count), 0),
            func.coalesce(func.sum(Campaign.delivered_count), 0), func.coalesce(func.sum(Campaign.failed_count), 0),
            func.coalesce(func.sum(Campaign.inflight_count), 0)).group_by(Campaign.status)).all()
        by_status = {r[0]: r for r in rows}
        campaigns = GaugeMetricFamily("mc_campaigns", "Campaigns per lifecycle status.", labels=["status"])
        for status in STATUSES:
            campaigns.add_metric([status], by_status[status][1] if status in by_status else 0)
        messages = CounterMetricFamily("mc_messages", "Messages per outcome, from the campaign counters "
                                       "(sent = accepted by the Core).", labels=["status"])
        for index, status in ((2, "sent"), (3, "delivered"), (4, "failed")):
            messages.add_metric([status], sum(int(r[index]) for r in rows))
        inflight = GaugeMetricFamily("mc_messages_inflight", "Messages sent and waiting for a final report.",
                                     value=sum(int(r[5]) for r in rows))
        db.session.rollback()
        return [campaigns, messages, inflight, *self._per_workspace()]

    def _per_workspace(self):
        """The same figures per workspace (label `workspace` = slug): what a workspace admin's
        Monitoring tab shows (deploy/grafana/dashboards/mc-workspace.json)."""
        rows = db.session.execute(select(
            Workspace.slug, Campaign.status, func.count(Campaign.id), func.coalesce(func.sum(Campaign.sent_count), 0),
            func.coalesce(func.sum(Campaign.delivered_count), 0), func.coalesce(func.sum(Campaign.failed_count), 0),
            func.coalesce(func.sum(Campaign.inflight_count), 0)).join(Workspace, Workspace.id == Campaign.workspace_id)
            .group_by(Workspace.slug, Campaign.status)).all()
        db.session.rollback()
        campaigns = GaugeMetricFamily("mc_workspace_campaigns", "Campaigns per workspace and lifecycle status.",
                                      labels=["workspace", "status"])
        messages = CounterMetricFamily("mc_workspace_messages", "Messages per workspace and outcome, from the "
                                       "campaign counters.", labels=["workspace", "status"])
        inflight = GaugeMetricFamily("mc_workspace_messages_inflight", "Messages of a workspace sent and waiting "
                                     "for a final report.", labels=["workspace"])
        totals: dict = {}
        for slug, status, count, sent, delivered, failed, flying in rows:
            campaigns.add_metric([slug, status], count)
            total = totals.setdefault(slug, [0, 0, 0, 0])
            for i, n in enumerate((sent, delivered, failed, flying)):
                total[i] += int(n)
        for slug, (sent, delivered, failed, flying) in sorted(totals.items()):
            for status, n in (("sent", sent), ("delivered", delivered), ("failed", failed)):
                messages.add_metric([slug, status], n)
            inflight.add_metric([slug], flying)
        return [campaigns, messages, inflight]

    def _queues(self):
        from rq import Worker
        from rq.registry import FailedJobRegistry, StartedJobRegistry

        depth = GaugeMetricFamily("mc_queue_depth", "Jobs waiting in an RQ queue.", labels=["queue"])
        failed = GaugeMetricFamily("mc_queue_failed_jobs", "Jobs in an RQ queue's failed registry.",
                                   labels=["queue"])
        started = GaugeMetricFamily("mc_queue_started_jobs", "Jobs running from an RQ queue.", labels=["queue"])
        for name in QUEUES:
            queue = get_queue(name)
            depth.add_metric([name], queue.count)
            failed.add_metric([name], FailedJobRegistry(queue=queue).count)
            started.add_metric([name], StartedJobRegistry(queue=queue).count)
        workers = GaugeMetricFamily("mc_rq_workers", "Registered RQ workers.",
                                    value=len(Worker.all(connection=get_queue("default").connection)))
        return [depth, failed, started, workers]

    def _trigger(self):
        """The Trigger lane: push -> accepted by the Core per workspace over the last minute, and
        its live workers (0 = OTPs wait for the bulk workers)."""
        latency = GaugeMetricFamily("mc_trigger_latency_ms", "Trigger push to acceptance by the Core over the "
                                    "last minute (ms), per workspace.", labels=["workspace", "quantile"])
        count = GaugeMetricFamily("mc_trigger_accepted_last_minute", "Trigger numbers accepted by the Core in the "
                                  "last minute (the latency's sample size), per workspace.", labels=["workspace"])
        for slug, summary in sorted(trigger_lane.latency_by_workspace().items()):
            latency.add_metric([slug, "0.5"], summary["p50_ms"])
            latency.add_metric([slug, "0.95"], summary["p95_ms"])
            count.add_metric([slug], summary["count"])
        workers = GaugeMetricFamily("mc_trigger_lane_workers", "Live workers serving the Trigger lane's queue.",
                                    value=trigger_lane.lane_workers())
        return [latency, count, workers]

    def _audit(self):
        store = audit.get_store()
        return [
            GaugeMetricFamily("mc_audit_fallback_bytes", "Size of the audit fallback file(s).",
                              value=store.fallback_size()),
            CounterMetricFamily("mc_audit_dropped_events", "Audit events dropped because the fallback file "
                                "was over its cap ([audit-fallback-overflow]).", value=store.dropped_count()),
            GaugeMetricFamily("mc_audit_store_up", "1 when the audit store answers a ping.",
                              value=1 if store.ping() else 0),
        ]

    def _core(self):
        payload = core_probe.core_metrics(self.app)
        up = GaugeMetricFamily("mc_core_up", "1 when the Core answered GET /v1/metrics.", value=1 if payload else 0)
        if not payload:
            return [up]
        labels = ["channel"]
        ch_up = GaugeMetricFamily("mc_core_channel_up", "ESME channel bound (1) or not (0).", labels=labels)
        tps = GaugeMetricFamily("mc_core_channel_throughput_tps", "Final reports per second over the last 10 s.",
                                labels=labels)
        queue = GaugeMetricFamily("mc_core_channel_queue_depth", "Accepted messages without a final report.",
                                  labels=labels)
        latency = GaugeMetricFamily("mc_core_channel_latency_ms", "Acceptance to final report, last 1000 messages.",
                                    labels=["channel", "quantile"])
        accepted = CounterMetricFamily("mc_core_channel_accepted", "Messages accepted on the channel.",
                                       labels=labels)
        delivered = CounterMetricFamily("mc_core_channel_delivered", "Messages delivered on the channel.",
                                        labels=labels)
        for ch in payload.get("channels") or []:
            name = str(ch.get("name", "?"))
            ch_up.add_metric([name], 1 if ch.get("up") else 0)
            tps.add_metric([name], float(ch.get("throughput_tps") or 0))
            queue.add_metric([name], float(ch.get("queue_depth") or 0))
            for q, key in (("0.5", "p50"), ("0.95", "p95")):
                value = (ch.get("latency_ms") or {}).get(key)
                if value is not None:
                    latency.add_metric([name, q], float(value))
            accepted.add_metric([name], float(ch.get("accepted_total") or 0))
            delivered.add_metric([name], float(ch.get("delivered_total") or 0))
        total_queue = GaugeMetricFamily("mc_core_queue_depth", "Accepted messages without a final report (Core).",
                                        value=float(payload.get("queue_depth") or 0))
        return [up, ch_up, tps, queue, latency, accepted, delivered, total_queue]


def render(app):
    """The Prometheus text exposition: process metrics (merged across processes in multiprocess
    mode) followed by the aggregates."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    aggregates = CollectorRegistry(auto_describe=False)
    aggregates.register(AggregateCollector(app))
    return generate_latest(base) + generate_latest(aggregates)
