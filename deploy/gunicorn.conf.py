"""gunicorn settings for Message Center's web process (used by ./run.sh and the systemd unit)."""
import os

from services.access_log import RedactingLogger, secret_patterns
from services.metrics import fold_dead_process

bind = f"127.0.0.1:{os.environ.get('PORT', '5000')}"
# Two processes per core (at most 8) with 32 threads each: pages are CPU-bound Python, so the
# processes spread them over the cores and the threads cover database and Redis waits. 4 x 8 on
# two cores is what bench/load.py measured best (2 x 4 gave a third more p95 under the same load).
# 32 threads because a sign-in waiting for an argon2 slot holds a thread (up to SIGNIN_CONCURRENCY +
# SIGNIN_MAX_WAITING = 29 per process, so 3 stay free for other pages): with 8, a burst of sign-ins
# queued /healthz behind it (bench/signin.py: /healthz p95 1.8 s -> 21 ms), and with 16 and at most
# 14 sign-ins per process, uneven spreading over the processes turned 20 of 150 sign-ins into 503s.
workers = int(os.environ.get("WEB_WORKERS", str(min(2 * (os.cpu_count() or 1), 8))))
threads = int(os.environ.get("WEB_THREADS", "32"))
worker_class = "gthread"
# Uploads stream for minutes; the limit is on idle sockets, not on a request's total time.
timeout = int(os.environ.get("WEB_TIMEOUT", "300"))
graceful_timeout = 20
# Idle keep-alive connections from nginx (deploy/nginx.conf.example: upstream keepalive, 60 s) stay
# open longer here than there, so nginx never reuses a connection gunicorn just closed (a POST on
# it would fail with 502; nginx retries only idempotent requests). gthread parks idle connections
# in its poller, not in a thread.
keepalive = 75
accesslog = "-"
# No query strings and no tokens: RedactingLogger rewrites %(r)s/%(U)s (services/access_log.py).
logger_class = RedactingLogger
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss rid=%({x-request-id}o)s'
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# gunicorn's control socket (`gunicornc`): under MC_DATA_DIR, one per bind port, not the shared
# default $HOME/.gunicorn/gunicorn.ctl (every instance on a host would fight over it, and the
# systemd unit's ProtectSystem=strict makes $HOME read-only). A path too long for a unix socket
# (108 bytes) turns it off instead of failing the start.
control_socket = os.path.join(os.path.abspath(os.environ.get("MC_DATA_DIR") or "instance"),
                              f"gunicorn-{bind.rsplit(':', 1)[-1]}.ctl")
control_socket_disable = len(control_socket.encode()) > 100


def post_worker_init(worker):
    # The routes whose path carries a secret (/invite/<token>), from the app this worker loaded.
    worker.log.patterns = secret_patterns(worker.wsgi.url_map)


def child_exit(server, worker):
    # prometheus_client multiprocess mode: the dead worker's counters and histograms are folded into
    # the master's archive file (kept, so /metrics stays monotonic) and its live gauges dropped.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        fold_dead_process(worker.pid)


def _return_large_blocks_to_the_os():
    """Each argon2 verification allocates 9 MiB (services/passwords.py). glibc raises its mmap
    threshold after the first such block is freed, so later ones come from per-thread heaps and stay
    resident: measured 650 MB of growth over 4 workers x 8 threads (bench/signin.py). A fixed threshold
    (1 MiB) keeps large blocks mmapped and unmapped on free; set here, in the master, before the
    workers are forked, so they inherit it."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if libc_name and "libc.so" in libc_name:
        m_mmap_threshold = -3
        ctypes.CDLL(libc_name).mallopt(m_mmap_threshold, 1024 * 1024)


_return_large_blocks_to_the_os()
