"""deploy/nginx.conf.example as shipped, run by Debian's nginx (ports, certificate and log paths
substituted) in front of a real gunicorn on a non-443 port: a sign-in, a form POST (the CSRF
referrer check needs the port in Host), a 100 MB API upload streamed through, keep-alive to the
upstream, and a forged Host refused before it reaches the portal."""
import datetime
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jobs import get_queue
from services import tokens
from tests.campaign_factories import make_campaign
from tests.factories import PASSWORD, make_user, make_workspace

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NGINX is None, reason="nginx (Debian package) not installed")]
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
UPLOAD_BYTES = 100 * 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (tmp_path / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return str(tmp_path / "tls.pem"), str(tmp_path / "tls.key")


def substitute(text, old, new, count):
    assert text.count(old) == count, f"the example changed shape: {old!r} found {text.count(old)} times"
    return text.replace(old, new)


def nginx_config(tmp_path, nginx_port, web_port):
    cert, key = self_signed(tmp_path)
    with open(os.path.join(ROOT, "deploy", "nginx.conf.example"), encoding="utf-8") as fh:
        site = fh.read()
    site = substitute(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{web_port};", 1)
    site = substitute(site, "listen 443 ssl", f"listen 127.0.0.1:{nginx_port} ssl", 2)
    site = substitute(site, "server_name mc.example.org;", "server_name localhost;", 1)
    site = substitute(site, "/etc/nginx/tls/mc.example.org.pem", cert, 1)
    site = substitute(site, "/etc/nginx/tls/mc.example.org.key", key, 1)
    site = substitute(site, "/var/log/nginx/message-center.log", str(tmp_path / "access.log"), 1)
    (tmp_path / "site.conf").write_text(site)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / d).mkdir()
    user = "user root root;" if os.geteuid() == 0 else ""  # workers keep access to the temp dirs
    (tmp_path / "nginx.conf").write_text(f"""
{user}
daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    return str(tmp_path / "nginx.conf"), cert


def wait_for(url, proc, log, verify=True, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return requests.get(url, timeout=3, verify=verify)
        except requests.RequestException:
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class BigBody:
    """100 MB of phone-number lines, read in chunks (flat memory), with a length for Content-Length."""

    def __init__(self, size):
        self.size, self.sent = size, 0
        self.line = b"491701234567\n"
        self.block = b"number\n" + self.line * (65536 // len(self.line))

    def __len__(self):
        return self.size

    def read(self, n=-1):
        left = self.size - self.sent
        if left <= 0:
            return b""
        chunk = self.block[: min(left, len(self.block), n if n and n > 0 else len(self.block))]
        self.sent += len(chunk)
        return chunk


def test_the_nginx_example_in_front_of_the_portal(app, tmp_path):
    ws = make_workspace("edge", "Edge Ltd")
    author = make_user("edge@example.com", workspace=ws, role="author")
    campaign = make_campaign(ws, author, status="New")
    _, token = tokens.create_token(author, ws, "nginx-test")
    get_queue("uploads").empty()

    web_port, nginx_port = free_port(), free_port()
    conf, cert = nginx_config(tmp_path, nginx_port, web_port)
    check = subprocess.run([NGINX, "-t", "-c", conf, "-p", str(tmp_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    env = dict(os.environ, PORT=str(web_port), WEB_WORKERS="2", WEB_THREADS="4", PROXY_FIX_HOPS="1",
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
               AUDIT_FALLBACK_PATH=app.config["AUDIT_FALLBACK_PATH"], MC_PRODUCTION="0")
    for name in ("PUBLIC_URL", "PROXY_FIX_TRUST_HOST", "PROMETHEUS_MULTIPROC_DIR", "METRICS_COLLECT_DIR"):
        env.pop(name, None)
    web_log, nginx_log = tmp_path / "web.log", tmp_path / "nginx.out"
    with open(web_log, "wb") as wl, open(nginx_log, "wb") as nl:
        web = subprocess.Popen([os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=wl, stderr=subprocess.STDOUT, start_new_session=True)
        nginx = subprocess.Popen([NGINX, "-c", conf, "-p", str(tmp_path)], stdout=nl, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{web_port}/healthz", web, web_log)
        base = f"https://localhost:{nginx_port}"
        assert wait_for(base + "/healthz", nginx, tmp_path / "error.log", verify=cert).status_code == 200

        browser = requests.Session()
        browser.verify = cert
        browser.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment beats session.verify
        # Sign-in: a form POST whose Referer carries the port (a browser's); CSRF's referrer check
        # compares it with Host, which nginx must pass on with the port.
        page = browser.get(base + "/login")
        assert page.status_code == 200 and page.headers["X-Request-ID"]
        csrf = CSRF_RE.search(page.text).group(1)
        signed_in = browser.post(base + "/login", data={"email": "edge@example.com", "password": PASSWORD,
                                                        "csrf_token": csrf},
                                 headers={"Referer": base + "/login"}, allow_redirects=False)
        assert signed_in.status_code == 302, signed_in.text[:500]
        assert "/login" not in signed_in.headers["Location"]
        home = browser.get(base + f"/w/{ws.slug}/campaigns")
        assert home.status_code == 200 and "edge@example.com" in home.text

        # 100 MB streamed through the upload location (proxy_request_buffering off) to the API.
        started = time.monotonic()
        upload = requests.put(base + f"/api/v1/campaigns/{campaign.id}/recipients", data=BigBody(UPLOAD_BYTES),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv",
                                       "X-Filename": "big.csv"}, verify=cert, timeout=600)
        took = time.monotonic() - started
        assert upload.status_code == 202, upload.text[:500]
        assert upload.json()["bytes"] == UPLOAD_BYTES
        print(f"100 MB upload through nginx: {took:.1f} s")

        # A form POST on an ordinary page (location /): sign out.
        page = browser.get(base + f"/w/{ws.slug}/campaigns")
        csrf = CSRF_RE.search(page.text).group(1)
        out = browser.post(base + "/logout", data={"csrf_token": csrf}, headers={"Referer": page.url},
                           allow_redirects=False)
        assert out.status_code == 302, out.text[:500]
        assert browser.get(base + f"/w/{ws.slug}/campaigns", allow_redirects=False).status_code in (302, 303)

        # A forged Host never reaches the portal: nginx's default server closes the connection.
        with pytest.raises(requests.ConnectionError):
            requests.get(base + "/login", headers={"Host": "evil.example"}, verify=cert, timeout=10)

        # Keep-alive to gunicorn: many requests through nginx, few upstream connections.
        for _ in range(30):
            requests.get(base + "/healthz", verify=cert, timeout=10)
        established = subprocess.run(["ss", "-tnH", "state", "established", f"( dport = :{web_port} )"],
                                     capture_output=True, text=True)
        if established.returncode == 0:
            assert 1 <= len(established.stdout.strip().splitlines()) <= 4, established.stdout
        access = (tmp_path / "access.log").read_text()
        assert '"PUT /api/v1/campaigns/' in access and " 202 " in access
    finally:
        stop(nginx)
        stop(web)
