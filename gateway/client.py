"""mTLS client of the SMS Core API (docs/core-api.md).

One `requests.Session`; its HTTPS adapter carries an `ssl.SSLContext` built from the client
certificate, key and CA. Before every call the three files are stat-ed (inode, size, mtime);
when one changed a new context and adapter are built and mounted — calls already running
finish on the old adapter, nothing restarts. If the new files cannot be loaded (e.g. the
certificate was replaced but the key not yet), the previous context stays in use and the
load is retried on the next call.

Sentinels (logger `mc.gateway`, WARNING): `[core-slow]` when a call took longer than
`slow_seconds` (5 s), `[core-large]` when a response body exceeded `large_bytes` (8 MB);
bodies over `max_response_bytes` (64 MB) are refused with CoreBadResponse. Prometheus:
`mc_core_slow_total`, `mc_core_large_total`, `mc_core_request_seconds`.
"""
import json
import logging
import os
import ssl
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from flask import current_app, g, has_app_context
from prometheus_client import Counter, Histogram
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from gateway.errors import CoreBadResponse, CoreError, CoreRejected, CoreThrottled, CoreTLSError, CoreUnavailable

JSON = dict[str, Any]  # a JSON object as the Core sends or receives it

log = logging.getLogger("mc.gateway")

MB = 1024 * 1024
SCHEMA_VERSION = 1  # the Core API schema version this client speaks (compare with health()["schema_version"])
OPERATIONS = ("health", "submit_batch", "events", "metrics")

CORE_SLOW = Counter("mc_core_slow_total", "Core API calls slower than the [core-slow] threshold.", ["operation"])
CORE_LARGE = Counter("mc_core_large_total", "Core API responses larger than the [core-large] threshold.",
                     ["operation"])
CORE_SECONDS = Histogram("mc_core_request_seconds", "Duration of Core API calls (including reading the body).",
                         ["operation", "outcome"],
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
for _op in OPERATIONS:  # series exist (at 0) before the first event, for dashboards and alerts
    CORE_SLOW.labels(_op)
    CORE_LARGE.labels(_op)


def current_request_id() -> str:
    """The request id of the current Flask request (or of a job that set `g.request_id`), else a new one."""
    if has_app_context():
        rid = g.get("request_id")
        if rid:
            return str(rid)
    return uuid.uuid4().hex


class TLSContextAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools (direct and via proxies) use one given SSLContext."""

    def __init__(self, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.ssl_context = ssl_context
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self.ssl_context
        return super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        proxy_kwargs["ssl_context"] = self.ssl_context
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def build_ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """Client context: verify the Core against `ca` (and its host name), present `cert`/`key`."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def _stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _retry_after(value: str | None) -> float:
    if not value:
        return 1.0
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0


class CoreClient:
    def __init__(self, base_url: str, cert: str, key: str, ca: str, *, connect_timeout: float = 5.0,
                 read_timeout: float = 30.0, slow_seconds: float = 5.0, large_bytes: int = 8 * MB,
                 max_response_bytes: int = 64 * MB, pool_maxsize: int = 10) -> None:
        if not str(base_url).lower().startswith("https://"):
            raise ValueError(f"CORE_URL must be https:// (mutual TLS), got {base_url!r}")
        self.base_url = str(base_url).rstrip("/")
        self.cert, self.key, self.ca = cert, key, ca
        self.timeout = (float(connect_timeout), float(read_timeout))
        self.slow_seconds = float(slow_seconds)
        self.large_bytes = int(large_bytes)
        self.max_response_bytes = int(max_response_bytes)
        self.pool_maxsize = int(pool_maxsize)
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy / CA bundle from the environment: our CA only
        self.session.verify = True
        self.session.headers.update({"User-Agent": "message-center-gateway/1", "Accept": "application/json"})
        self._lock = threading.Lock()
        self._adapter: TLSContextAdapter | None = None
        self._signature: tuple[tuple[int, int, int] | None, ...] | None = None
        self._failed_signature: tuple[tuple[int, int, int] | None, ...] | None = None
        self.reloads = 0  # how many times a certificate set was (re)loaded

    # --- public API -------------------------------------------------------------------------

    def health(self, request_id: str | None = None) -> JSON:
        """GET /v1/health -> {"status", "schema_version", "channels", …}."""
        payload, _ = self._call("GET", "/v1/health", "health", request_id=request_id)
        if not isinstance(payload, dict) or "status" not in payload:
            raise CoreBadResponse("health answer without 'status'", request_id=request_id)
        return payload

    def submit_batch(self, idempotency_key: str, messages: Iterable[JSON], request_id: str | None = None) -> JSON:
        """POST /v1/batches. `messages`: dicts with id, destination, saddr, ston, snpi, dton, dnpi,
        text, data_coding. Returns {"batch_id", "results": [{id, accepted, core_id, command_status}],
        "replayed": bool} with one result per message in request order."""
        if not idempotency_key:
            raise ValueError("an idempotency key is required")
        batch = [dict(m, id=str(m["id"])) for m in messages]
        payload, headers = self._call("POST", "/v1/batches", "submit_batch", body={"messages": batch},
                                      headers={"Idempotency-Key": str(idempotency_key)}, request_id=request_id)
        results = payload.get("results") if isinstance(payload, dict) else None
        if (not isinstance(results, list) or len(results) != len(batch)
                or any(not isinstance(r, dict) or "id" not in r or "accepted" not in r for r in results)):
            raise CoreBadResponse("batch answer does not carry one result per message", request_id=request_id)
        return {"batch_id": payload.get("batch_id"), "results": results,
                "replayed": headers.get("Idempotency-Replayed", "").lower() == "true"}

    def events(self, cursor: str | int | None = None, limit: int = 500, request_id: str | None = None) -> JSON:
        """GET /v1/events -> {"events": [{cursor, core_id, id, status, error_code, done_at}], "next_cursor"}."""
        params: dict[str, int | str] = {"limit": int(limit)}
        if cursor not in (None, ""):
            params["cursor"] = str(cursor)
        payload, _ = self._call("GET", "/v1/events", "events", params=params, request_id=request_id)
        if not isinstance(payload, dict) or not isinstance(payload.get("events"), list) or "next_cursor" not in payload:
            raise CoreBadResponse("events answer without 'events' / 'next_cursor'", request_id=request_id)
        return payload

    def metrics(self, request_id: str | None = None) -> JSON:
        """GET /v1/metrics -> {"channels": [...], "queue_depth", …}."""
        payload, _ = self._call("GET", "/v1/metrics", "metrics", request_id=request_id)
        if not isinstance(payload, dict):
            raise CoreBadResponse("metrics answer is not an object", request_id=request_id)
        return payload

    def close(self) -> None:
        self.session.close()

    # --- certificates -----------------------------------------------------------------------

    def _files_signature(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_stat(p) for p in (self.cert, self.key, self.ca))

    def _ensure_adapter(self, request_id: str) -> None:
        signature = self._files_signature()
        if signature == self._signature:
            return
        with self._lock:
            if signature == self._signature:
                return
            try:
                context = build_ssl_context(self.cert, self.key, self.ca)
            except (OSError, ssl.SSLError, ValueError) as exc:
                if signature != self._failed_signature:
                    self._failed_signature = signature
                    log.warning("[core-cert] cannot load client certificate %s / key %s / CA %s: %s%s (request_id=%s)",
                                self.cert, self.key, self.ca, exc,
                                "; keeping the previous one" if self._adapter else "", request_id)
                if self._adapter is None:
                    raise CoreTLSError(f"client certificate unusable: {exc}", request_id=request_id) from exc
                return
            adapter = TLSContextAdapter(context, pool_connections=4, pool_maxsize=self.pool_maxsize,
                                        max_retries=Retry(total=2, connect=2, read=0, status=0, other=0,
                                                          redirect=0, raise_on_status=False))
            old = self._adapter
            self._mount(adapter)
            self._adapter, self._signature, self._failed_signature = adapter, signature, None
            self.reloads += 1
            if old is not None:
                # Closes idle pooled connections only; a call running on the old adapter keeps its
                # connection, finishes, and the connection is then discarded.
                old.close()
                log.info("[core-cert] client certificate files changed; reloaded (request_id=%s)", request_id)

    def _mount(self, adapter: TLSContextAdapter) -> None:
        # Copy-on-write instead of Session.mount(): other threads may be iterating the
        # adapters mapping in Session.get_adapter() right now.
        adapters = OrderedDict(self.session.adapters)
        adapters["https://"] = adapter
        self.session.adapters = OrderedDict(sorted(adapters.items(), key=lambda kv: -len(kv[0])))

    # --- transport --------------------------------------------------------------------------

    def _call(self, method: str, path: str, operation: str, *, params: dict[str, int | str] | None = None,
              body: JSON | None = None, headers: dict[str, str] | None = None,
              request_id: str | None = None) -> tuple[Any, Any]:
        rid = request_id or current_request_id()
        start = time.monotonic()
        outcome = "ok"
        status = None
        try:
            self._ensure_adapter(rid)
            hdrs = {"X-Request-ID": rid, **(headers or {})}
            data = None
            if body is not None:
                data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                hdrs["Content-Type"] = "application/json"
            try:
                response = self.session.request(method, self.base_url + path, params=params, data=data, headers=hdrs,
                                                timeout=self.timeout, stream=True, allow_redirects=False)
            except requests.exceptions.SSLError as exc:
                raise CoreTLSError(f"TLS failure talking to the Core: {exc}", request_id=rid) from exc
            except requests.exceptions.RequestException as exc:
                raise CoreUnavailable(f"Core unreachable: {type(exc).__name__}: {exc}", request_id=rid) from exc
            try:
                status = response.status_code
                raw = self._read_body(response, method, path, operation, rid)
            finally:
                response.close()
            return self._interpret(response, raw, rid), response.headers
        except CoreError as exc:
            outcome = exc.outcome
            raise
        finally:
            elapsed = time.monotonic() - start
            CORE_SECONDS.labels(operation, outcome).observe(elapsed)
            if elapsed > self.slow_seconds:
                CORE_SLOW.labels(operation).inc()
                log.warning("[core-slow] %s %s took %.2f s (threshold %.2f s, status %s, outcome %s) request_id=%s",
                            method, path, elapsed, self.slow_seconds, status, outcome, rid)

    def _read_body(self, response: requests.Response, method: str, path: str, operation: str, rid: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
            self._large(method, path, operation, int(declared), rid, refused=True)
            raise CoreBadResponse(f"response of {declared} bytes exceeds the {self.max_response_bytes}-byte limit",
                                  status=response.status_code, request_id=rid)
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                total += len(chunk)
                if total > self.max_response_bytes:
                    self._large(method, path, operation, total, rid, refused=True)
                    raise CoreBadResponse(f"response exceeds the {self.max_response_bytes}-byte limit",
                                          status=response.status_code, request_id=rid)
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            raise CoreUnavailable(f"Core connection broke while reading the answer: {exc}",
                                  status=response.status_code, request_id=rid) from exc
        if total > self.large_bytes:
            self._large(method, path, operation, total, rid)
        return b"".join(chunks)

    def _large(self, method: str, path: str, operation: str, size: int, rid: str, refused: bool = False) -> None:
        CORE_LARGE.labels(operation).inc()
        log.warning("[core-large] %s %s response %.1f MB (threshold %.1f MB%s) request_id=%s", method, path,
                    size / MB, self.large_bytes / MB, f", refused over {self.max_response_bytes / MB:.0f} MB"
                    if refused else "", rid)

    def _interpret(self, response: requests.Response, raw: bytes, rid: str) -> Any:
        status = response.status_code
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        error = payload["error"] if isinstance(payload, dict) and isinstance(payload.get("error"), dict) else {}
        code, message = error.get("code"), error.get("message") or f"HTTP {status}"
        if 200 <= status < 300:
            if payload is None:
                raise CoreBadResponse(f"HTTP {status} answer is not JSON", status=status, request_id=rid)
            return payload
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise CoreThrottled(f"Core throttled the call: {message}", retry_after=retry_after, status=status,
                                code=code or "throttled", request_id=rid)
        if status >= 500:
            raise CoreUnavailable(f"Core error: {message}", status=status, code=code, request_id=rid)
        if 400 <= status < 500:
            raise CoreRejected(message, status=status, code=code or f"http_{status}", request_id=rid)
        raise CoreBadResponse(f"unexpected HTTP {status} from the Core", status=status, request_id=rid)


# --- one client per process, from the Flask config ------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[str, Any] = {"key": None, "client": None}


def client_settings(config: Mapping[str, Any]) -> JSON:
    """CoreClient keyword arguments from a Flask config mapping (config.py declares every one)."""
    return {
        "base_url": config["CORE_URL"], "cert": config["CORE_CLIENT_CERT"], "key": config["CORE_CLIENT_KEY"],
        "ca": config["CORE_CA"],
        "connect_timeout": float(config["CORE_CONNECT_TIMEOUT"]),
        "read_timeout": float(config["CORE_READ_TIMEOUT"]),
        "slow_seconds": float(config["CORE_SLOW_SECONDS"]),
        "large_bytes": int(config["CORE_LARGE_BYTES"]),
        "max_response_bytes": int(config["CORE_MAX_RESPONSE_BYTES"]),
    }


def get_client() -> CoreClient:
    """The process's CoreClient, built from `current_app.config` (rebuilt when those settings
    change or after a fork — an RQ work horse never shares its parent's connections)."""
    settings = client_settings(current_app.config)
    key = (os.getpid(), tuple(sorted(settings.items())))
    with _cache_lock:
        if _cache["key"] != key:
            _cache["client"] = CoreClient(**settings)
            _cache["key"] = key
        client: CoreClient = _cache["client"]
        return client
