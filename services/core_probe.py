"""The Core as the health pages and the metrics scrape see it: a client with short timeouts (one
per process and settings), and the Core's /v1/metrics reused for a few seconds per process.

Shared by services/diagnostics.py (status, pre-flight TPS) and services/metrics.py (the scrape), so
a slow Core never stalls either.
"""
import logging
import os
import threading
import time
from typing import Any

from flask import current_app

from gateway import CoreClient, CoreError, client_settings

log = logging.getLogger("mc.core_probe")

CORE_METRICS_TTL = 5.0  # seconds the Core's /v1/metrics answer is reused between scrapes

_probe: dict[str, Any] = {"key": None, "client": None}
_probe_lock = threading.Lock()
metrics_cache: dict[str, Any] = {"at": 0.0, "pid": None, "value": None}
_metrics_lock = threading.Lock()


def probe_client():
    """A CoreClient with short timeouts for health probes (one per process and settings)."""
    settings = dict(client_settings(current_app.config), connect_timeout=2.0,
                    read_timeout=float(current_app.config["CORE_PROBE_TIMEOUT"]))
    key = (os.getpid(), tuple(sorted(settings.items())))
    with _probe_lock:
        if _probe["key"] != key:
            _probe["client"], _probe["key"] = CoreClient(**settings), key
        return _probe["client"]


def core_metrics(app):
    """The Core's /v1/metrics (or None when unreachable), reused for CORE_METRICS_TTL seconds."""
    with _metrics_lock:
        now = time.monotonic()
        if metrics_cache["pid"] == os.getpid() and now - metrics_cache["at"] < CORE_METRICS_TTL:
            return metrics_cache["value"]
        try:
            value = probe_client().metrics()  # short timeouts: a slow Core never stalls a scrape
        except (CoreError, OSError, ValueError) as exc:
            log.info("core metrics unavailable for the scrape: %s", exc)
            value = None
        metrics_cache.update(at=time.monotonic(), pid=os.getpid(), value=value)
        return value
