"""Prometheus metrics for `/metrics`: process metrics plus aggregates read on each scrape.

Process-level series (Core call latency `mc_core_request_seconds`, `[core-slow]`/`[core-large]`
counts, job durations `mc_job_duration_seconds`) are recorded where they happen — most of them in
RQ work-horses and gunicorn workers, not in the process that answers the scrape. So every process
kind runs with `PROMETHEUS_MULTIPROC_DIR` (an empty, writable directory, wiped when that kind
starts) in its environment *before* it starts: prometheus_client then keeps the values in files
there, and the scrape merges the files of every directory under `METRICS_COLLECT_DIR` (web,
workers and `rq cron` of the host). A finished work-horse or gunicorn worker is folded into its
parent's archive file (`fold_dead_process`), so the files stay a few per live process.

Aggregates are computed from the database, Redis and the audit store when scraped, never kept in
process memory, so every web worker answers the same: campaigns by status, messages
sent/delivered/failed/in flight (campaign counters), queue depths and workers (RQ), the Trigger
lane's push -> Core latency per workspace and its live workers (services/trigger_lane.py), audit
fallback bytes and dropped events, and the Core's per-ESME-channel figures (`GET /v1/metrics`,
cached for a few seconds). A part that fails is skipped and counted in `mc_scrape_errors`.
"""
import fcntl
import glob
import logging
import os

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy import func, select

import audit
import gateway  # noqa: F401  (the gateway registers the mc_core_* series when imported)
from extensions import db
from models import Campaign, Workspace
from models.campaigns import STATUSES
from services import core_probe, trigger_lane
from services.queues import QUEUES, get_queue

log = logging.getLogger("mc.metrics")

# `job_name`, not `job`: Prometheus's own target label is `job`, and a clash renames ours `exported_job`.
JOB_SECONDS = Histogram("mc_job_duration_seconds", "Duration of background jobs.", ["job_name", "queue"],
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))

# Every metric family this module (or the gateway) exports; the Grafana test checks queries against it.
EXPORTED = (
    "mc_campaigns", "mc_messages_total", "mc_messages_inflight", "mc_queue_depth", "mc_queue_failed_jobs",
    "mc_queue_started_jobs", "mc_rq_workers", "mc_cron_schedulers", "mc_core_client_cert_expiry_timestamp_seconds",
    "mc_audit_fallback_bytes", "mc_audit_dropped_events_total",
    "mc_audit_store_up", "mc_core_up", "mc_core_channel_up", "mc_core_channel_throughput_tps",
    "mc_core_channel_queue_depth", "mc_core_channel_latency_seconds", "mc_core_channel_accepted_total",
    "mc_core_channel_delivered_total", "mc_core_queue_depth", "mc_scrape_errors",
    "mc_job_duration_seconds", "mc_core_request_seconds", "mc_core_slow_total", "mc_core_large_total",
    "mc_workspace_campaigns", "mc_workspace_messages_total", "mc_workspace_messages_inflight",
    "mc_trigger_latency_p50_seconds", "mc_trigger_latency_p95_seconds", "mc_trigger_accepted_last_minute",
    "mc_trigger_lane_workers",
)


def observe_job(job_name, queue, seconds):
    JOB_SECONDS.labels(job_name, queue).observe(seconds)


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
                         ("core", self._core), ("trigger", self._trigger), ("certificate", self._certificate)):
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
        from rq.cron import CronScheduler
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
        connection = get_queue("default").connection
        workers = GaugeMetricFamily("mc_rq_workers", "Registered RQ workers.",
                                    value=len(Worker.all(connection=connection)))
        schedulers = GaugeMetricFamily("mc_cron_schedulers", "Live rq cron schedulers (exactly one expected).",
                                       value=len(CronScheduler.all(connection)))
        return [depth, failed, started, workers, schedulers]

    def _trigger(self):
        """The Trigger lane: push -> accepted by the Core per workspace over the last minute, and
        its live workers (0 = OTPs wait for the bulk workers)."""
        # Two gauges, not one with a `quantile` label: that label belongs to summaries (promtool).
        p50 = GaugeMetricFamily("mc_trigger_latency_p50_seconds", "Median Trigger push to acceptance by the Core "
                                "over the last minute, per workspace.", labels=["workspace"])
        p95 = GaugeMetricFamily("mc_trigger_latency_p95_seconds", "95th percentile of Trigger push to acceptance "
                                "by the Core over the last minute, per workspace.", labels=["workspace"])
        count = GaugeMetricFamily("mc_trigger_accepted_last_minute", "Trigger numbers accepted by the Core in the "
                                  "last minute (the latency's sample size), per workspace.", labels=["workspace"])
        for slug, summary in sorted(trigger_lane.latency_by_workspace().items()):
            p50.add_metric([slug], summary["p50_ms"] / 1000.0)
            p95.add_metric([slug], summary["p95_ms"] / 1000.0)
            count.add_metric([slug], summary["count"])
        workers = GaugeMetricFamily("mc_trigger_lane_workers", "Live workers serving the Trigger lane's queue.",
                                    value=trigger_lane.lane_workers())
        return [p50, p95, count, workers]

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

    def _certificate(self):
        # Lazy: services.diagnostics imports this module back (the Core figures of its pre-flight).
        from services.diagnostics import certificate_status

        cert = certificate_status()
        if cert["not_after"] is None:
            raise ValueError(cert["reason"])  # counted in mc_scrape_errors{part="certificate"}
        return [GaugeMetricFamily("mc_core_client_cert_expiry_timestamp_seconds", "When the client certificate "
                                  "presented to the Core expires (Unix time).", value=cert["not_after"].timestamp())]

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
        latency = HistogramMetricFamily("mc_core_channel_latency_seconds", "Acceptance to final report (the "
                                        "Core's cumulative histogram).", labels=labels)
        accepted = CounterMetricFamily("mc_core_channel_accepted", "Messages accepted on the channel.",
                                       labels=labels)
        delivered = CounterMetricFamily("mc_core_channel_delivered", "Messages delivered on the channel.",
                                        labels=labels)
        for ch in payload.get("channels") or []:
            name = str(ch.get("name", "?"))
            ch_up.add_metric([name], 1 if ch.get("up") else 0)
            tps.add_metric([name], float(ch.get("throughput_tps") or 0))
            queue.add_metric([name], float(ch.get("queue_depth") or 0))
            histogram = _latency_buckets(ch.get("latency_seconds"))
            if histogram is not None:
                latency.add_metric([name], *histogram)
            accepted.add_metric([name], float(ch.get("accepted_total") or 0))
            delivered.add_metric([name], float(ch.get("delivered_total") or 0))
        total_queue = GaugeMetricFamily("mc_core_queue_depth", "Accepted messages without a final report (Core).",
                                        value=float(payload.get("queue_depth") or 0))
        return [up, ch_up, tps, queue, latency, accepted, delivered, total_queue]


def _latency_buckets(raw):
    """([(le, cumulative count)…], sum) from the Core's `latency_seconds` object, or None when it is
    missing or malformed (a channel without it simply has no latency series)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("buckets"), dict):
        return None
    try:
        buckets = sorted(((float(le), le, int(n)) for le, n in raw["buckets"].items()),
                         key=lambda item: item[0])
        total = float(raw.get("sum") or 0)
    except (TypeError, ValueError):
        return None
    if not buckets or buckets[-1][1] != "+Inf":
        return None
    return [(le, n) for _, le, n in buckets], total


def _multiprocess_dirs(collect_dir):
    """Every directory the scrape merges: this process's own and the collect directory's tree."""
    own = multiprocess_dir()
    dirs = [own] if own else []
    if collect_dir and os.path.isdir(collect_dir):
        dirs.append(collect_dir)
        dirs.extend(sorted(e.path for e in os.scandir(collect_dir) if e.is_dir(follow_symlinks=False)))
    unique: list = []
    for d in dirs:
        if os.path.isdir(d) and os.path.realpath(d) not in {os.path.realpath(u) for u in unique}:
            unique.append(d)
    return unique


class _DirLock:
    """flock on `<dir>/.fold.lock`: a scrape reads a directory under a shared lock, folding a dead
    process's files into the archive takes it exclusively — so no scrape sees a value twice (archive
    written, file not yet removed) or not at all (removed, archive not yet written)."""

    def __init__(self, directory, exclusive):
        self.path = os.path.join(directory, ".fold.lock")
        self.mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        self.fd = -1

    def __enter__(self):
        # A shared lock needs no write access: under systemd the web sees the workers' directories
        # read-only (ProtectSystem=strict), where the worker has created the lock file already.
        flags = [os.O_RDONLY, os.O_RDWR | os.O_CREAT] if self.mode == fcntl.LOCK_SH else [os.O_RDWR | os.O_CREAT]
        for flag in flags:
            try:
                self.fd = os.open(self.path, flag, 0o600)
                break
            except OSError:
                continue
        if self.fd < 0:  # no lock file and no right to create one: read without the lock
            return self
        fcntl.flock(self.fd, self.mode)
        return self

    def __exit__(self, *exc):
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the lock


class FilesCollector:
    """prometheus_client's MultiProcessCollector over several directories (one per process kind)."""

    def __init__(self, dirs):
        self.dirs = dirs

    def collect(self):
        locks = [_DirLock(d, exclusive=False) for d in self.dirs]
        for lock in locks:
            lock.__enter__()
        try:
            files = [f for d in self.dirs for f in sorted(glob.glob(os.path.join(d, "*.db")))]
            return MultiProcessCollector.merge(files, accumulate=True)
        finally:
            for lock in locks:
                lock.__exit__()


def create_fold_lock(directory=None):
    """Create this process kind's lock file up front, so a scrape that may only read the directory
    (another unit's, under systemd) finds it and takes its shared lock from the first fold on."""
    directory = directory or multiprocess_dir()
    if directory and os.path.isdir(directory):
        with _DirLock(directory, exclusive=True):
            pass


def fold_dead_process(pid, directory=None, into=None):
    """Fold a finished process's counter and histogram files into `<type>_archive-<into>.db` and remove
    them; drop its live gauges (`mark_process_dead`). Counters stay monotonic, and the directory does
    not gain two files per RQ work-horse (one per job) or per recycled gunicorn worker: a scrape
    reads a few files per live process, not one per job ever run. `into` is the surviving parent
    (the `rq worker` main process, the gunicorn master). A crash between writing the archive and
    removing the file counts that process's values twice — once, for one job."""
    directory = directory or multiprocess_dir()
    if not directory or not os.path.isdir(directory):
        return 0
    into = into if into is not None else os.getpid()
    folded = 0
    with _DirLock(directory, exclusive=True):
        for kind in ("counter", "histogram"):
            source = os.path.join(directory, f"{kind}_{pid}.db")
            if not os.path.exists(source):
                continue
            values = list(MmapedDict.read_all_values_from_file(source))
            archive = MmapedDict(os.path.join(directory, f"{kind}_archive-{into}.db"))
            try:
                for key, value, timestamp, _pos in values:
                    current, _ = archive.read_value(key)
                    archive.write_value(key, current + value, timestamp)
            finally:
                archive.close()
            os.unlink(source)
            folded += len(values)
    mark_process_dead(pid, directory)
    return folded


def render(app):
    """The Prometheus text exposition: process metrics (merged across every local process in
    multiprocess mode) followed by the aggregates."""

    dirs = _multiprocess_dirs(app.config["METRICS_COLLECT_DIR"])
    if dirs:
        base = CollectorRegistry()
        base.register(FilesCollector(dirs))
    else:
        base = REGISTRY
    aggregates = CollectorRegistry(auto_describe=False)
    aggregates.register(AggregateCollector(app))
    return generate_latest(base) + generate_latest(aggregates)
