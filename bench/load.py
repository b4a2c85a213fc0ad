"""Load test: 50 operators browse the portal while a 1M-recipient ingest and a dispatch run.

Self-contained like bench/dispatch.py: makes its own data dir, database (SQLite there, or a fresh
database on the PostgreSQL server named by DATABASE_URL, dropped afterwards), Redis (REDIS_URL on a
free database number 5–15, else the embedded one), development certificates, and starts the real
processes: the reference Core, gunicorn (deploy/gunicorn.conf.py), two
`rq worker -w jobs.worker.AppWorker --with-scheduler` and `rq cron jobs/cron.py`. Then:

- seeds a workspace with `--campaigns` finished campaigns (some with recipients), `--operators`
  member accounts, a draft for the ingest and a Sending campaign of `--dispatch-recipients`;
- starts the ingest: a generated CSV of `--recipients` numbers PUT to
  /api/v1/campaigns/<id>/recipients with a token from `flask tokens create`;
- signs `--operators` operators in through /login, all at once (reported as the `sign-in` line,
  not part of the browsing figures; their stored hashes use the shipped argon2id parameters);
- then resumes the dispatch campaign, starts the ingest and runs the operators concurrently
  (threads, one `requests.Session` each) for `--duration` seconds, each looping over the campaign
  list, a campaign detail page and the dashboard (+ its Live Pulse JSON), with `--think` seconds
  between requests;
- prints p50 / p95 / max per page, errors, how far the ingest and the dispatch got, and where
  the machine's CPU went meanwhile (cores busy per part: web, postgres, workers, …; Linux /proc).

    python bench/load.py [--operators 50] [--duration 60] [--recipients 1000000]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        python bench/load.py

Target (issue 10): p95 ≤ 500 ms and 0 errors.
Last line: RESULT p95_ms=… errors=… requests=… (plus per-page p95 and the ingest/dispatch figures)
"""
import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.proctree import kill_tree  # noqa: E402
from tools.scratch import drop_database, free_port, fresh_database  # noqa: E402

BIN = os.path.dirname(sys.executable)
SLUG = "load"
PASSWORD = "load test operator passphrase"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')








def redis_db_url(url, number):
    base, _, query = url.partition("?")
    params = [(k, v) for k, v in urllib.parse.parse_qsl(query) if k != "db"]
    if url.startswith("unix://"):
        params.append(("db", str(number)))
    else:
        scheme, rest = base.split("://", 1)
        base = f"{scheme}://{rest.split('/', 1)[0]}/{number}"
    return base + ("?" + urllib.parse.urlencode(params) if params else "")


def claim_redis(base):
    import redis

    for number in range(5, 16):
        url = redis_db_url(base, number)
        conn = redis.Redis.from_url(url)
        if conn.dbsize() == 0 and conn.set("mc:load:claim", os.getpid(), nx=True, ex=7200):
            return url, conn
        conn.close()
    raise SystemExit(f"no empty Redis database 5..15 on {base}")


class Stack:
    def __init__(self, args):
        self.args = args
        self.data_dir = tempfile.mkdtemp(prefix="mc-bench-load-")
        self.procs, self.logs = [], []
        self.session_names = {}  # session id of each spawned process group -> its name
        self.db_handle = self.redis_conn = None
        self.started_redis = False

    def start(self):
        db_url, self.db_handle = fresh_database(self.data_dir, "mc_load")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MC_", "CORE_"))}
        if os.environ.get("REDIS_URL"):
            redis_url, self.redis_conn = claim_redis(os.environ["REDIS_URL"])
        else:
            from tools.embedded_redis import start

            redis_url = start(os.path.join(self.data_dir, "redis"))
            self.started_redis = True
        web, core = free_port(), free_port()
        self.base = f"http://127.0.0.1:{web}"
        env.update(MC_DATA_DIR=self.data_dir, DATABASE_URL=db_url, REDIS_URL=redis_url, MC_PRODUCTION="0",
                   SECRET_KEY="load-bench", CORE_URL=f"https://127.0.0.1:{core}", PORT=str(web),
                   FLASK_APP="app:create_app", WEB_WORKERS=str(self.args.web_workers),
                   WEB_THREADS=str(self.args.web_threads),
                   # Every operator signs in from 127.0.0.1: lift the per-IP sign-in limit (30/min).
                   LOGIN_RATE_LIMIT="1000 per minute")
        self.env = env
        self.flask("db", "upgrade")
        self.flask("certs", "dev")
        # The Core is another machine in production; here it shares the CPU, so it yields like the workers.
        self.spawn("coresim", [sys.executable, "-m", "coresim", "--port", str(core), "--latency", "0.5",
                               "--failure-ratio", "0.01"], nice=self.args.worker_nice)
        self.spawn("web", [os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"])
        for n, queues in enumerate((["uploads", "dispatch", "exports", "default"],
                                    ["dispatch", "uploads", "exports", "default"])):
            # As the Procfile and the systemd unit run it: AppWorker builds the app once per worker.
            self.spawn(f"worker-{n}", [os.path.join(BIN, "rq"), "worker", "-w", "jobs.worker.AppWorker",
                                       "--with-scheduler", "--url", redis_url, "--path", ".", *queues],
                       nice=self.args.worker_nice)
        self.spawn("cron", [os.path.join(BIN, "rq"), "cron", "--url", redis_url, "--path", ".", "jobs/cron.py"],
                   nice=self.args.worker_nice)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise SystemExit("the portal did not start; run with --keep and read the logs in " + self.data_dir)

    def flask(self, *args):
        return subprocess.run([os.path.join(BIN, "flask"), *args], cwd=ROOT, env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def spawn(self, name, cmd, nice=0):
        log = open(os.path.join(self.data_dir, f"{name}.log"), "w")  # noqa: SIM115
        self.logs.append(log)
        self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True,
                                           preexec_fn=(lambda: os.nice(nice)) if nice else None))
        self.session_names[self.procs[-1].pid] = name.split("-")[0]

    def cpu_seconds(self):
        """CPU seconds used so far per part of the installation (Linux /proc; {} elsewhere)."""
        tick = os.sysconf("SC_CLK_TCK")
        totals = {}
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    raw = fh.read()
            except OSError:
                continue
            comm, fields = raw[raw.index("(") + 1:raw.rindex(")")], raw[raw.rindex(")") + 2:].split()
            # Own time plus that of ended children (rq's work horses, database connections).
            session, used = int(fields[3]), sum(int(v) for v in fields[11:15]) / tick
            if int(entry) == os.getpid():
                name = "load generator"
            elif comm in ("postgres", "redis-server"):
                name = comm
            else:
                name = self.session_names.get(session)
            if name:
                totals[name] = totals.get(name, 0.0) + used
        return totals

    def stop(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            kill_tree(proc)
        for log in self.logs:
            log.close()
        if self.redis_conn is not None:
            self.redis_conn.flushdb()
        if self.started_redis:
            from tools.embedded_redis import stop

            stop(os.path.join(self.data_dir, "redis"))
        drop_database(self.db_handle)
        if not self.args.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def seed(args):
    """Workspace, operators, finished campaigns (some with recipients), a draft and a Sending campaign."""
    from argon2 import PasswordHasher
    from sqlalchemy import text

    from extensions import db
    from models import Campaign, SenderName, SenderRevision
    from services import accounts, members, passwords, workspaces
    from services.numbers import ctn_hash

    shipped = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # seeding only
    ws = workspaces.create_workspace(SLUG, "Load test", "UTC", "00:00-24:00")
    owner = accounts.create_user("owner@load.example.org", PASSWORD, enforce_policy=False)
    members.add_member(ws, owner, "admin")
    operators, users = [], [owner]
    for i in range(args.operators):
        email = f"operator{i:03d}@load.example.org"
        user = accounts.create_user(email, PASSWORD, enforce_policy=False)
        members.add_member(ws, user, "admin" if i % 5 == 0 else "moderator")
        operators.append(email)
        users.append(user)
    # The operators' stored hashes use the shipped argon2id parameters (one hash, shared), so the
    # sign-in line measures verification as on a real morning, not a one-off re-hash as well.
    real_hash = shipped.hash(PASSWORD)
    for user in users:
        user.password_hash = real_hash
    passwords._hasher = shipped
    sender = SenderName(workspace_id=ws.id, label="LOAD")
    db.session.add(sender)
    db.session.flush()
    revision = SenderRevision(sender_id=sender.id, workspace_id=ws.id, number=1, saddr="LOAD", ton=5, npi=0,
                              state="approved")
    db.session.add(revision)
    db.session.flush()
    rng = random.Random(7)
    done_ids = []
    for i in range(args.campaigns):
        n = rng.randint(100, 50_000)
        c = Campaign(workspace_id=ws.id, author_id=owner.id, name=f"Seeded campaign {i}", mode="OnDemand",
                     status="Done", moderation="approved", sender_revision_id=revision.id,
                     message_text="Seeded message", recipients_count=n, sent_count=n, delivered_count=n - n // 50,
                     failed_count=n // 50, wizard_step=5)
        db.session.add(c)
        if i % 500 == 0:
            db.session.flush()
    db.session.flush()
    done_ids = [row[0] for row in db.session.execute(text("SELECT id FROM campaigns WHERE workspace_id = :w"),
                                                     {"w": ws.id})]
    for cid in done_ids[:20]:  # detail pages with a real recipients tab
        rows = [{"c": cid, "n": f"4916{cid:04d}{j:05d}", "h": ctn_hash(f"4916{cid:04d}{j:05d}", ws.id)}
                for j in range(500)]
        db.session.execute(text("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                "VALUES (:c, :n, :h, 'delivered')"), rows)
    draft = Campaign(workspace_id=ws.id, author_id=owner.id, name="Ingest 1M", mode="OnDemand", status="New",
                     moderation="awaiting", sender_revision_id=revision.id, message_text="Ingest test",
                     wizard_step=4)
    # Paused until the browsing starts (main resumes it), so the dispatch overlaps the measurement.
    sending = Campaign(workspace_id=ws.id, author_id=owner.id, name="Dispatch run", mode="OnDemand",
                       status="Paused", moderation="approved", sender_revision_id=revision.id,
                       message_text="Dispatch under load", recipients_count=args.dispatch_recipients,
                       queued_count=args.dispatch_recipients, wizard_step=5)
    db.session.add_all([draft, sending])
    db.session.commit()
    for start in range(0, args.dispatch_recipients, 50_000):
        rows = [{"c": sending.id, "n": f"4917{i:08d}", "h": ctn_hash(f"4917{i:08d}", ws.id)}
                for i in range(start, min(start + 50_000, args.dispatch_recipients))]
        db.session.execute(text("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                "VALUES (:c, :n, :h, 'queued')"), rows)
        db.session.commit()
    approve_as_stored(sending)
    return operators, done_ids, draft.id, sending.id



def approve_as_stored(campaign):
    """The fingerprint a moderator's approval stores (services/approval.py): dispatch refuses an
    approved campaign without it."""
    from extensions import db
    from services import approval

    for key, value in approval.approval_values(campaign).items():
        setattr(campaign, key, value)
    db.session.commit()


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.times = {}
        self.errors = {}
        self.samples = []
        self.started = []  # (perf_counter at the request's start, ms) for the per-phase figures

    def add(self, page, ms, error=None):
        with self.lock:
            self.times.setdefault(page, []).append(ms)
            if page != "sign-in":
                self.started.append((time.perf_counter() - ms / 1000, ms))
            if error:
                self.errors[page] = self.errors.get(page, 0) + 1
                if len(self.samples) < 10:
                    self.samples.append(f"{page}: {error}")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else 0.0


def sign_in(base, email, rec):
    """One operator's session, signed in through the login form (None when refused)."""
    s = requests.Session()
    t0 = time.perf_counter()
    token = CSRF_RE.search(s.get(base + "/login", timeout=60).text).group(1)
    r = s.post(base + "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}, timeout=60)
    if "/login" in r.url:
        rec.add("sign-in", (time.perf_counter() - t0) * 1000, f"sign-in refused (HTTP {r.status_code})")
        return None
    rec.add("sign-in", (time.perf_counter() - t0) * 1000)
    return s


def operator(base, s, email, campaign_ids, stop_at, think, rec):
    if s is None:
        return
    rng = random.Random(email)
    pages = [("list", lambda: f"/w/{SLUG}/campaigns"),
             ("list sorted/filtered", lambda: f"/w/{SLUG}/campaigns?status=Done&sort=sender&dir=asc&page=2"),
             ("detail", lambda: f"/w/{SLUG}/campaigns/{rng.choice(campaign_ids)}"),
             ("dashboard", lambda: f"/w/{SLUG}/"),
             ("pulse.json", lambda: f"/w/{SLUG}/pulse.json")]
    while time.time() < stop_at:
        name, path = rng.choice(pages)
        t0 = time.perf_counter()
        error = None
        try:
            response = s.get(base + path(), timeout=30)
            if response.status_code != 200 or "/login" in response.url:
                error = f"HTTP {response.status_code} {response.url}"
        except requests.RequestException as exc:
            error = repr(exc)
        rec.add(name, (time.perf_counter() - t0) * 1000, error)
        time.sleep(think * rng.uniform(0.5, 1.5))


def write_csv(path, n):
    with open(path, "w", encoding="ascii") as fh:
        fh.write("phone\n")
        block = 100_000
        for start in range(0, n, block):
            fh.write("".join(f"+49 160 {i:08d}\n" for i in range(start, min(start + block, n))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--operators", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60, help="seconds of browsing")
    parser.add_argument("--think", type=float, default=0.5, help="mean pause between an operator's requests (s)")
    parser.add_argument("--recipients", type=int, default=1_000_000, help="size of the ingested list")
    parser.add_argument("--dispatch-recipients", type=int, default=100_000)
    parser.add_argument("--campaigns", type=int, default=2_000, help="finished campaigns in the workspace")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=8)
    parser.add_argument("--worker-nice", type=int, default=10,
                        help="CPU niceness of the workers, cron and Core (the systemd units use Nice=10)")
    parser.add_argument("--baseline", type=float, default=10,
                        help="seconds of the quiet baseline: one operator alone, before the load starts")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and the process logs in it)")
    args = parser.parse_args()

    stack = Stack(args)
    try:
        stack.start()
        os.environ.update(stack.env)
        from app import create_app

        app = create_app()
        with app.app_context():
            operators, campaign_ids, draft_id, sending_id = seed(args)
        token = stack.flask("tokens", "create", "--email", "owner@load.example.org", "--workspace", SLUG,
                            "--name", "load").strip().splitlines()[-1]
        csv_path = os.path.join(stack.data_dir, "recipients.csv")
        write_csv(csv_path, args.recipients)
        print(f"seeded: {len(campaign_ids):,} campaigns, {args.operators} operators; "
              f"list {os.path.getsize(csv_path) / 1e6:.1f} MB; dispatch {args.dispatch_recipients:,} recipients",
              flush=True)

        rec = Recorder()
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        upload = {}

        def ingest():
            t0 = time.perf_counter()
            with open(csv_path, "rb") as fh:
                r = api.put(f"{stack.base}/api/v1/campaigns/{draft_id}/recipients", data=fh,
                            headers={"Content-Type": "text/csv", "X-Filename": "recipients.csv"}, timeout=600)
            upload["put_s"] = time.perf_counter() - t0
            upload["response"] = r.status_code
            upload["status_url"] = r.json().get("status_url") if r.status_code == 202 else None
            upload["t0"] = t0

        # Everyone signs in first (50 argon2id verifications and re-hashes at once: reported as its
        # own line), then the ingest and the dispatch start together with the browsing.
        with ThreadPoolExecutor(max_workers=args.operators) as pool:
            sessions = list(pool.map(lambda email: sign_in(stack.base, email, rec), operators))
        # Baseline in the same run: one operator alone, no pause, nothing else running.
        quiet = Recorder()
        operator(stack.base, sessions[0], "quiet baseline", campaign_ids, time.time() + args.baseline, 0.0, quiet)
        with app.app_context():
            from extensions import db
            from models import Campaign
            from services import campaigns as lifecycle

            lifecycle.apply(db.session.get(Campaign, sending_id), "resume")
        started, cpu_before = time.perf_counter(), stack.cpu_seconds()
        ingest_thread = threading.Thread(target=ingest)
        ingest_thread.start()
        stop_at = time.time() + args.duration
        with ThreadPoolExecutor(max_workers=args.operators) as pool:
            futures = [pool.submit(operator, stack.base, session, email, campaign_ids, stop_at, args.think, rec)
                       for session, email in zip(sessions, operators)]
            for f in futures:
                f.result()
        browse_s = time.perf_counter() - started
        cpu_after = stack.cpu_seconds()
        ingest_thread.join()

        state = {}
        if upload.get("status_url"):
            deadline = time.time() + 900
            while time.time() < deadline:
                state = api.get(stack.base + upload["status_url"], timeout=30).json()
                if state.get("state") not in ("queued", "running"):
                    break
                time.sleep(1)
            ingest_s = time.perf_counter() - upload["t0"]
            if state.get("created_at") and state.get("finished_at"):
                # The upload's own timestamps: it may have finished well before this first poll.
                from datetime import datetime

                ingest_s = (datetime.fromisoformat(state["finished_at"])
                            - datetime.fromisoformat(state["created_at"])).total_seconds()
        with app.app_context():
            from extensions import db
            from models import Campaign

            sending = db.session.get(Campaign, sending_id)
            dispatched = sending.sent_count  # accepted by the Core (failed_count also counts failed reports)
            delivered = sending.delivered_count

        all_times = [t for page, ts in rec.times.items() if page != "sign-in" for t in ts] or [0.0]
        errors = sum(rec.errors.values())
        print(f"\n{'page':<22}{'requests':>10}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}{'errors':>8}")
        for page in sorted(rec.times):
            ts = rec.times[page]
            print(f"{page:<22}{len(ts):>10}{statistics.median(ts):>10.0f}{pct(ts, 95):>10.0f}{max(ts):>10.0f}"
                  f"{rec.errors.get(page, 0):>8}")
        print(f"{'all':<22}{len(all_times):>10}{statistics.median(all_times):>10.0f}{pct(all_times, 95):>10.0f}"
              f"{max(all_times):>10.0f}{errors:>8}")
        during_ingest = []
        if state.get("state") == "done":
            ingest_end = upload["t0"] + ingest_s
            during_ingest = [ms for at, ms in rec.started if at < ingest_end]
        quiet_times = [t for ts in quiet.times.values() for t in ts] or [0.0]
        quiet_p95 = pct(quiet_times, 95)
        ratio = pct(all_times, 95) / quiet_p95 if quiet_p95 else 0.0
        print(f"\nquiet      one operator alone (same pages, no pause, before the load): {len(quiet_times)} requests, "
              f"p50 {statistics.median(quiet_times):.0f} ms, p95 {quiet_p95:.0f} ms; loaded/quiet p95 ratio {ratio:.1f}")
        print(f"browsing   {browse_s:.0f} s, {args.operators} operators, {len(all_times) / browse_s:.0f} req/s")
        print(f"database   {'postgresql' if stack.db_handle else 'sqlite'}")
        # Where the machine's CPU went while the operators browsed (cores busy on average).
        cpu = {k: (cpu_after[k] - cpu_before.get(k, 0.0)) / browse_s for k in cpu_after}
        print(f"cpu        {os.cpu_count()} cores; busy: " + ", ".join(
            f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])))
        if state:
            print(f"ingest     {args.recipients:,} lines: PUT {upload['put_s']:.1f} s (HTTP {upload['response']}), "
                  f"{state.get('state')} {ingest_s:.0f} s after the upload began (browsing lasted {browse_s:.0f} s), "
                  f"accepted {state.get('accepted', 0):,}, "
                  f"{state.get('accepted', 0) / ingest_s:,.0f} rows/s")
            if during_ingest:
                print(f"           while it ran: {len(during_ingest)} requests, p50 {statistics.median(during_ingest):.0f} ms, "
                      f"p95 {pct(during_ingest, 95):.0f} ms")
        else:
            print(f"ingest     failed to start: HTTP {upload.get('response')}")
        print(f"dispatch   {dispatched:,} of {args.dispatch_recipients:,} submitted, {delivered:,} delivered "
              f"(during the run and the ingest wait)")
        for sample in rec.samples:
            print("error sample:", sample)
        page_p95 = " ".join(f"p95_{re.sub(r'[^a-z0-9]+', '_', p).strip('_')}={pct(ts, 95):.0f}"
                            for p, ts in sorted(rec.times.items()))
        print(f"RESULT p95_ms={pct(all_times, 95):.0f} errors={errors} requests={len(all_times)} "
              f"quiet_p95_ms={quiet_p95:.0f} ratio={ratio:.2f} {page_p95} "
              f"ingest_state={state.get('state', 'none')} ingest_accepted={state.get('accepted', 0)} "
              f"p95_during_ingest={pct(during_ingest, 95) if during_ingest else 0:.0f} "
              f"dispatched={dispatched}")
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
