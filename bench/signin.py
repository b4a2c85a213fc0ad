"""Sign-in under load (issue 14): what 50 people signing in at once, and a flood of attempts on
unknown accounts, cost the real web process.

Self-contained like bench/load.py: makes its own data dir, database (SQLite there, or a fresh database
on the PostgreSQL server named by DATABASE_URL, dropped afterwards — or, with --in-database, the
database DATABASE_URL names itself, its public schema wiped first), Redis (REDIS_URL as given, else
the embedded one), then starts gunicorn exactly as deployed (deploy/gunicorn.conf.py: 2 processes per
core, 8 threads each) with PROXY_FIX_HOPS=1, so that each simulated browser can come from its own
address (X-Forwarded-For) as it would in production: the per-IP limits stay at their shipped values
and are not what is measured. Accounts are stored with the shipped argon2id parameters.

- sign-in: `--users` browsers fetch /login, then all post the right password at once (released by a
  barrier), `--rounds` times; p50 / p95 / max of the POST, busy answers (503) and other errors;
- flood: `--unknown` threads post unknown e-mail addresses, `--attempts` each, all at once, while one
  thread polls /healthz every 50 ms: p95 of /healthz meanwhile, and the answers the flood got;
- web RSS: the gunicorn processes' resident memory summed (Linux /proc), sampled every 50 ms; growth
  = peak during the two phases minus the figure after warm-up.

    python bench/signin.py [--users 50] [--rounds 3] [--unknown 64] [--attempts 3]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/mc_signin REDIS_URL=redis://127.0.0.1:6379/3 \\
        python bench/signin.py --in-database

Targets on a 2-core machine: sign-in p95 <= 1,500 ms, /healthz p95 <= 200 ms, RSS growth <= 300 MB.
Last line: RESULT signin_p95_ms=… healthz_p95_ms=… rss_growth_mb=…
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.proctree import stop_tree  # noqa: E402
from tools.scratch import drop_database, free_port, fresh_database  # noqa: E402

BIN = os.path.dirname(sys.executable)
PASSWORD = "signin bench operator passphrase"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def p95(values):
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)] if ordered else float("nan")


def wipe_schema(url):
    import psycopg

    plain = re.sub(r"^postgresql\+\w+://", "postgresql://", url)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


class Web:
    """gunicorn as deployed, on a fresh database and data dir."""

    def __init__(self, args):
        self.args = args
        self.data_dir = tempfile.mkdtemp(prefix="mc-signin-bench-")
        self.db_handle = None
        self.started_redis = False
        self.proc = None
        self.log = None

    def start(self):
        if self.args.in_database:
            db_url = os.environ["DATABASE_URL"]
            wipe_schema(db_url)
        else:
            db_url, self.db_handle = fresh_database(self.data_dir, prefix="mc_signin_bench")
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            from tools.embedded_redis import start

            redis_url = start(os.path.join(self.data_dir, "redis"))
            self.started_redis = True
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "CORE_"))}
        env.update(MC_DATA_DIR=self.data_dir, DATABASE_URL=db_url, REDIS_URL=redis_url, MC_PRODUCTION="0",
                   SECRET_KEY="signin-bench", PORT=str(port), FLASK_APP="app:create_app", PROXY_FIX_HOPS="1")
        self.env = env
        subprocess.run([os.path.join(BIN, "flask"), "db", "upgrade"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        self.redis_url = redis_url
        seed(env, self.args.users + WARM_UP_SIGN_INS)
        self.log = open(os.path.join(self.data_dir, "web.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen([os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py",
                                      "wsgi:app"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise SystemExit("gunicorn did not start; see " + os.path.join(self.data_dir, "web.log"))

    def rss_mb(self):
        """Resident memory of the gunicorn master and its workers (same session), in MB."""
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getsid(int(entry)) != self.proc.pid:
                    continue
                with open(f"/proc/{entry}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except (OSError, ProcessLookupError):
                continue
        return total / 1024

    def stop(self):
        if self.proc is not None:
            stop_tree(self.proc, timeout=20)
        if self.log:
            self.log.close()
        if self.args.in_database or os.environ.get("REDIS_URL"):
            import redis

            conn = redis.Redis.from_url(self.redis_url)
            for key in conn.scan_iter("LIMITS:*"):
                conn.delete(key)
        if self.started_redis:
            from tools.embedded_redis import stop

            stop(os.path.join(self.data_dir, "redis"))
        drop_database(self.db_handle)
        if not self.args.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


WARM_UP_SIGN_INS = 8  # one or more per gunicorn process (at most 8 processes)


def seed(env, users):
    """A workspace and its members, stored with the shipped argon2id parameters (one hash, shared)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from app import create_app
        from extensions import db
        from services import accounts, members, passwords, workspaces

        app = create_app()
        with app.app_context():
            ws = workspaces.create_workspace("signin", "Sign-in bench", "UTC", "00:00-24:00")
            shipped_hash = passwords.hash_password(PASSWORD)
            for i in range(users):
                user = accounts.create_user(f"operator{i:03d}@signin.example.org", PASSWORD, enforce_policy=False)
                user.password_hash = shipped_hash
                members.add_member(ws, user, "author")
            db.session.commit()
            db.engine.dispose()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def address(n):
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def browser(base, ip):
    session = requests.Session()
    session.headers["X-Forwarded-For"] = ip
    token = CSRF_RE.search(session.get(base + "/login", timeout=30).text).group(1)
    return session, token


def sign_in_round(web, users, round_no):
    """All users post the right password at once; returns (latencies ms, statuses)."""
    sessions = [browser(web.base, address(1000 * (round_no + 1) + i)) for i in range(users)]
    barrier = threading.Barrier(users, timeout=60)

    def post(i):
        session, token = sessions[i]
        barrier.wait()
        started = time.perf_counter()
        response = session.post(web.base + "/login", data={"email": f"operator{i:03d}@signin.example.org",
                                                          "password": PASSWORD, "csrf_token": token},
                                allow_redirects=False, timeout=60)
        return (time.perf_counter() - started) * 1000, response.status_code

    with ThreadPoolExecutor(max_workers=users) as pool:
        results = list(pool.map(post, range(users)))
    return [r[0] for r in results], [r[1] for r in results]


def flood(web, threads, attempts):
    """`threads` unknown-user attempts at once (`attempts` each) while /healthz is polled."""
    browsers = [browser(web.base, address(200_000 + i)) for i in range(threads)]
    barrier = threading.Barrier(threads + 1, timeout=60)
    done = threading.Event()
    healthz = []

    def poll():
        barrier.wait()
        with requests.Session() as session:
            while not done.is_set():
                started = time.perf_counter()
                session.get(web.base + "/healthz", timeout=30)
                healthz.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

    def attack(i):
        session, token = browsers[i]
        barrier.wait()
        codes = []
        for n in range(attempts):
            codes.append(session.post(web.base + "/login", data={"email": f"nobody{i}-{n}@signin.example.org",
                                                                 "password": "a guess that fails",
                                                                 "csrf_token": token},
                                      allow_redirects=False, timeout=60).status_code)
        return codes

    poller = threading.Thread(target=poll)
    poller.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        codes = [c for batch in pool.map(attack, range(threads)) for c in batch]
    took = time.perf_counter() - started
    done.set()
    poller.join()
    return healthz, codes, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unknown", type=int, default=64)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--in-database", action="store_true",
                        help="use DATABASE_URL itself (its public schema is wiped) instead of a fresh database")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    args = parser.parse_args()

    web = Web(args)
    peak = {"mb": 0.0}
    sampling = threading.Event()
    try:
        web.start()
        # Every web process signs someone in once before the clock runs (first POST: imports, the
        # audit store opened, argon2's first allocation); reported here, not in the rounds.
        warm = []
        for n in range(WARM_UP_SIGN_INS):
            session, token = browser(web.base, address(500 + n))
            started = time.perf_counter()
            session.post(web.base + "/login", data={"email": f"operator{args.users + n:03d}@signin.example.org",
                                                    "password": PASSWORD, "csrf_token": token},
                         allow_redirects=False, timeout=60)
            warm.append((time.perf_counter() - started) * 1000)
        print(f"warm-up: {WARM_UP_SIGN_INS} sign-ins one after another, {min(warm):.0f}-{max(warm):.0f} ms each",
              flush=True)
        time.sleep(1)
        baseline = web.rss_mb()

        def sample():
            while not sampling.is_set():
                peak["mb"] = max(peak["mb"], web.rss_mb())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        latencies, statuses = [], []
        for round_no in range(args.rounds):
            lat, codes = sign_in_round(web, args.users, round_no)
            latencies += lat
            statuses += codes
            print(f"sign-in round {round_no + 1}: {args.users} at once  p50 {statistics.median(lat):6.0f} ms  "
                  f"p95 {p95(lat):6.0f} ms  max {max(lat):6.0f} ms  answers {sorted(set(codes))}", flush=True)
            time.sleep(1)
        healthz, flood_codes, took = flood(web, args.unknown, args.attempts)
        sampling.set()
        sampler.join()
    finally:
        sampling.set()
        web.stop()

    growth = max(0.0, peak["mb"] - baseline)
    signed_in = statuses.count(302)
    signed_in_latencies = [lat for lat, code in zip(latencies, statuses) if code == 302]
    other = len(statuses) - signed_in - statuses.count(503)
    print(f"sign-in: {len(statuses)} POSTs, {signed_in} signed in, {statuses.count(503)} busy (503), {other} other; "
          f"all answers p50 {statistics.median(latencies):.0f} ms, p95 {p95(latencies):.0f} ms, "
          f"max {max(latencies):.0f} ms; the sign-ins that succeeded: p95 {p95(signed_in_latencies):.0f} ms")
    counts = {code: flood_codes.count(code) for code in sorted(set(flood_codes))}
    print(f"flood: {args.unknown} threads x {args.attempts} unknown-user attempts in {took:.1f} s, answers {counts}; "
          f"/healthz meanwhile: {len(healthz)} probes, p50 {statistics.median(healthz):.0f} ms, "
          f"p95 {p95(healthz):.0f} ms, max {max(healthz):.0f} ms")
    print(f"web RSS: {baseline:.0f} MB after warm-up, peak {peak['mb']:.0f} MB, growth {growth:.0f} MB")
    print("targets: sign-in p95 <= 1500 ms, /healthz p95 <= 200 ms, RSS growth <= 300 MB")
    # The p95 of every answer: a busy answer (503) is a sign-in that did not happen, counted with its
    # (short) time, so the line above also gives the successful ones' p95 and the number of 503s.
    print(f"RESULT signin_p95_ms={p95(latencies):.0f} healthz_p95_ms={p95(healthz):.0f} rss_growth_mb={growth:.0f}")


if __name__ == "__main__":
    main()
