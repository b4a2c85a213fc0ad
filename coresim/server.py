"""HTTPS front of the reference Core: stdlib ThreadingHTTPServer + ssl with client certificates
required (CERT_REQUIRED). The TLS handshake runs in the connection's own thread, so a slow or
refused client never blocks `accept()`."""
import json
import logging
import os
import re
import socketserver
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import parse_qs, urlsplit

from coresim.sim import CoreSimulator, SimError, db_path

log = logging.getLogger("coresim")

MAX_BODY = 16 * 1024 * 1024
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HANDSHAKE_TIMEOUT = 10
IDLE_TIMEOUT = 60


def server_context(cert, key, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate of our CA -> handshake fails
    return ctx


class CoreHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, sim, ssl_context, verbose=False):
        self.sim = sim
        self.verbose = verbose
        super().__init__(address, CoreHandler)
        self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); not wanted here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = cast(tuple[str, int], self.server_address[:2])

    def finish_request(self, request, client_address):
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            if self.verbose:
                log.info("TLS handshake with %s refused: %s", client_address, exc)
            return
        request.settimeout(IDLE_TIMEOUT)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class CoreHandler(BaseHTTPRequestHandler):
    server: CoreHTTPServer  # the server this handler serves (its `sim` and `verbose`)
    protocol_version = "HTTP/1.1"
    server_version = "coresim/1.0"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        if self.server.verbose:
            log.info("%s %s", self.address_string(), format % args)

    # --- plumbing ---------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _send(self, status, body, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":"))
        data = body.encode("utf-8") if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-ID", self.request_id)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def _error(self, status, code, message, headers=None):
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                raise SimError(411, "length_required", "send a Content-Length")
            return b""
        try:
            size = int(length)
        except ValueError:
            self.close_connection = True
            raise SimError(400, "invalid_request", "bad Content-Length") from None
        if size > MAX_BODY:
            self.close_connection = True
            raise SimError(413, "too_large", f"request bodies are limited to {MAX_BODY} bytes")
        return self.rfile.read(size)

    def _json_body(self):
        raw = self._body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise SimError(400, "invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise SimError(400, "invalid_request", "the body must be a JSON object")
        return body

    def _dispatch(self, method):
        supplied = self.headers.get("X-Request-ID", "")
        self.request_id = supplied if REQUEST_ID_RE.match(supplied) else uuid.uuid4().hex
        sim = self.server.sim
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path.startswith("/v1/"):  # what the client under test sent (the /_sim calls of a test do not count)
            peer = self.connection.getpeercert() or {}
            if peer.get("serialNumber"):
                sim.last_client_serial = peer["serialNumber"].lower().lstrip("0") or "0"
            sim.last_request_id = self.request_id
        try:
            if path.startswith("/_sim/"):
                self._sim_route(method, path)
            elif path.startswith("/v1/"):
                self._v1(method, path, parse_qs(url.query))
            else:
                raise SimError(404, "not_found", f"no resource {path}")
        except SimError as exc:
            self._error(exc.status, exc.code, exc.message, exc.headers)
        except Exception:  # noqa: BLE001 - a server answers 500, it never dies
            log.exception("coresim: unhandled error on %s %s", method, path)
            self._error(500, "internal_error", "unexpected error in the reference Core")

    # --- /v1 --------------------------------------------------------------------------------

    def _v1(self, method, path, query):
        sim = self.server.sim
        routes = {("GET", "/v1/health"), ("POST", "/v1/batches"), ("GET", "/v1/events"), ("GET", "/v1/metrics")}
        if (method, path) not in routes:
            if any(p == path for _, p in routes):
                raise SimError(405, "method_not_allowed", f"{method} is not allowed on {path}")
            raise SimError(404, "not_found", f"no resource {path}")
        body = self._body() if method == "POST" else b""
        faults = sim.faults
        if faults["slow_seconds"]:
            time.sleep(faults["slow_seconds"])
        if faults["down"]:
            raise SimError(503, "unavailable", "the Core is down (simulated)")
        if faults["throttle"]:
            raise SimError(429, "throttled", "too many requests (simulated)",
                           {"Retry-After": str(max(1, int(round(faults["throttle"]))))})
        headers = {}
        if path == "/v1/health":
            payload = sim.health()
        elif path == "/v1/batches":
            payload, replayed = sim.submit(self.headers.get("Idempotency-Key", ""), body)
            if replayed:
                headers["Idempotency-Replayed"] = "true"
        elif path == "/v1/events":
            payload = sim.events(_one(query, "cursor"), _one(query, "limit"))
        else:
            payload = sim.metrics()
        if faults["large_response_mb"]:
            if isinstance(payload, str):
                payload = json.loads(payload)
            payload = dict(payload, padding="x" * int(faults["large_response_mb"] * 1024 * 1024))
        self._send(200, payload, headers)

    # --- /_sim ------------------------------------------------------------------------------

    def _sim_route(self, method, path):
        sim = self.server.sim
        if (method, path) == ("GET", "/_sim/stats"):
            self._send(200, sim.stats())
        elif (method, path) == ("POST", "/_sim/faults"):
            self._send(200, {"faults": sim.set_faults(self._json_body())})
        elif (method, path) == ("POST", "/_sim/config"):
            self._send(200, {"config": sim.set_config(self._json_body())})
        elif (method, path) == ("POST", "/_sim/reset"):
            self._body()
            sim.reset()
            self._send(200, {"reset": True})
        else:
            raise SimError(404, "not_found", f"no resource {method} {path}")


def _one(query, name):
    values = query.get(name)
    return values[0] if values else None


class CoreSim:
    """The reference Core: `CoreSim(data_dir, port=0).start()` serves in a background thread;
    `.url`, `.port`, `.certs_dir`, `.sim` (the CoreSimulator) and `.stop()`."""

    def __init__(self, data_dir, host="127.0.0.1", port=8443, certs_dir=None, verbose=False, **config):
        certs_dir = certs_dir or os.path.join(data_dir, "certs")
        self.data_dir, self.certs_dir = data_dir, certs_dir
        files = {name: os.path.join(certs_dir, name) for name in ("server.pem", "server.key", "ca.pem")}
        missing = [path for path in files.values() if not os.path.exists(path)]
        if missing:
            raise FileNotFoundError(f"missing {', '.join(missing)} — run `flask certs dev` first")
        self.sim = CoreSimulator(db_path(data_dir), **config)
        context = server_context(files["server.pem"], files["server.key"], files["ca.pem"])
        self.httpd = CoreHTTPServer((host, port), self.sim, context, verbose=verbose)
        self.host, self.port = cast(tuple[str, int], self.httpd.server_address[:2])
        self._thread = None

    @property
    def url(self):
        return f"https://{self.host}:{self.port}"

    def start(self):
        self.sim.start()
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="coresim-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self.sim.start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def stop(self):
        self.httpd.shutdown()
        if self._thread:
            self._thread.join(timeout=5)
        self.close()

    def close(self):
        self.httpd.server_close()
        self.sim.close()
