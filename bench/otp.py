"""OTP benchmark (issue 18): Trigger push -> accepted by the Core, idle and behind bulk work.

Self-contained, production-shaped installation: its own data dir, database (SQLite there, or a
fresh database on the PostgreSQL server DATABASE_URL names), Redis (REDIS_URL, else the embedded
one), development certificates, the reference Core, the portal under gunicorn
(deploy/gunicorn.conf.py), `--bulk-workers` bulk workers at Nice 10 as in
deploy/systemd/mc-worker@.service, the Trigger lane's worker (Procfile `worker-trigger`) and
`rq cron` (ticks, delivery reports). `--clients` API clients (one token each) push one fresh number
per call into a Trigger campaign with IgnoreDailyWindow, `--rate` pushes per second in total:

1. idle: for `--seconds`;
2. bulk alone (the throughput baseline of this run): an ingest of `--ingest-rows` lines through
   the API and a bulk dispatch of `--dispatch-recipients`, concurrently, no OTPs;
3. loaded: the same ingest and bulk dispatch again (new campaigns, new numbers) with the OTP
   pushes running for as long as the bulk work runs.

Latency = the Core's own acceptance time of the number (the reference Core's message store)
minus the client's clock just before it sent the push (same host, same clock). duplicates =
messages the Core received more than once (every destination of the run, bulk included); lost =
numbers a push reported accepted that never reached the Core (waited for up to 60 s).

    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python bench/otp.py
    python bench/otp.py --ingest-rows 1000000 --dispatch-recipients 100000   # a reduced run

Last line: RESULT pushes=… idle_p95_ms=… loaded_p95_ms=… loaded_p99_ms=… ratio=… duplicates=… lost=…
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import ingest as ingest_bench  # noqa: E402
from tools.proctree import kill_tree  # noqa: E402
from tools.scratch import drop_database, free_port, fresh_database  # noqa: E402

BIN = os.path.dirname(sys.executable)


def run(cmd, env):
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spawn(cmd, env, log_path):
    log = open(log_path, "wb")  # noqa: SIM115 (lives as long as the process)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)


def quantile(values, q):
    values = sorted(values)
    return values[max(0, math.ceil(q * len(values)) - 1)] if values else float("nan")


# --- set-up (in this process, through the services) ---------------------------------------------

def seed(clients):
    from extensions import db
    from models import Campaign, SenderName, SenderRevision
    from services import accounts, members, tokens, workspaces

    ws = workspaces.create_workspace("bench", "Benchmark", "UTC", "00:00-24:00")
    user = accounts.create_user("bench@example.com", "benchmark password long", enforce_policy=False)
    members.add_member(ws, user, "admin")
    sender = SenderName(workspace_id=ws.id, label="BENCH")
    db.session.add(sender)
    db.session.flush()
    revision = SenderRevision(sender_id=sender.id, workspace_id=ws.id, number=1, saddr="BENCH", ton=5, npi=0,
                              state="approved")
    db.session.add(revision)
    db.session.flush()
    otp = Campaign(workspace_id=ws.id, author_id=user.id, name="otp", mode="Trigger", status="Sending",
                   moderation="approved", sender_revision_id=revision.id, message_text="Your code is 123456",
                   ignore_daily_window=True, wizard_step=5)
    db.session.add(otp)
    db.session.commit()
    approve_as_stored(otp)
    client_tokens = [tokens.create_token(user, ws, f"otp client {i}")[1] for i in range(clients)]
    return {"ws": ws.id, "user": user.id, "revision": revision.id, "otp": otp.id, "tokens": client_tokens}


def approve_as_stored(campaign):
    from extensions import db
    from services import approval

    for key, value in approval.approval_values(campaign).items():
        setattr(campaign, key, value)
    db.session.commit()


def bulk_campaign(world, n, prefix):
    """An approved OnDemand campaign in Sending with n queued recipients (numbers prefix + 8 digits)."""
    from sqlalchemy import text

    from extensions import db
    from models import Campaign
    from services.numbers import ctn_hasher, hash_key

    # Pending until its recipients and approval fingerprint are stored: the running tick must not
    # dispatch it half-made (dispatch would refuse it as "changed after approval").
    campaign = Campaign(workspace_id=world["ws"], author_id=world["user"], name=f"bulk {prefix}", mode="OnDemand",
                        status="Pending", moderation="approved", sender_revision_id=world["revision"],
                        message_text="Bulk benchmark message", recipients_count=n, queued_count=n, wizard_step=5)
    db.session.add(campaign)
    db.session.commit()
    hasher = ctn_hasher(hash_key(world["ws"]))
    for start in range(0, n, 50_000):
        rows = [{"c": campaign.id, "n": f"{prefix}{i:08d}", "h": hasher(f"{prefix}{i:08d}".encode()).decode()}
                for i in range(start, min(start + 50_000, n))]
        db.session.execute(text("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                "VALUES (:c, :n, :h, 'queued')"), rows)
        db.session.commit()
    approve_as_stored(campaign)
    campaign.status = "Sending"
    db.session.commit()
    return campaign.id


def ingest_campaign(world, name):
    from extensions import db
    from models import Campaign

    campaign = Campaign(workspace_id=world["ws"], author_id=world["user"], name=name, mode="OnDemand", status="New")
    db.session.add(campaign)
    db.session.commit()
    return campaign.id


def sent_so_far(campaign_id):
    from extensions import db
    from models import Campaign

    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign_id)
    done = campaign.sent_count + campaign.failed_count
    db.session.rollback()
    return done


# --- the OTP clients -------------------------------------------------------------------------------

class Pushers:
    """`clients` threads, one token each, pushing one fresh number per call at `rate` calls/s in total."""

    def __init__(self, base_url, campaign_id, tokens, rate, prefix):
        self.url = f"{base_url}/api/v1/campaigns/{campaign_id}/recipients"
        self.tokens, self.rate, self.prefix = tokens, rate, prefix
        self.pushed: dict[str, float] = {}   # number -> client clock just before sending (accepted pushes)
        self.errors: list[str] = []
        self.answered_ms: list[float] = []   # HTTP round trip of each accepted push
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self):
        self.started = time.time()
        for index, token in enumerate(self.tokens):
            thread = threading.Thread(target=self._client, args=(index, token), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _client(self, index, token):
        import requests

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        interval = len(self.tokens) / self.rate
        k = 0
        while not self._stop.is_set():
            due = self.started + index / self.rate + k * interval
            wait = due - time.time()
            if wait > 0 and self._stop.wait(wait):
                break
            number = f"{self.prefix}{index:03d}{k:05d}"
            k += 1
            sent_at = time.time()
            try:
                response = session.post(self.url, json={"numbers": [number]}, timeout=30)
                body = response.json()
            except (requests.RequestException, ValueError) as exc:
                with self._lock:
                    self.errors.append(f"{number}: {exc}")
                continue
            with self._lock:
                if response.status_code == 200 and body.get("accepted") == 1:
                    self.pushed[number] = sent_at
                    self.answered_ms.append((time.time() - sent_at) * 1000)
                else:
                    self.errors.append(f"{number}: HTTP {response.status_code} {body}")

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        return time.time() - self.started


def core_accepts(core_db, numbers):
    """{destination: first acceptance time} and {destination: times received} from the Core's store."""
    conn = sqlite3.connect(f"file:{core_db}?mode=ro", uri=True, timeout=30)
    try:
        accepted = {}
        for destination, at in conn.execute("SELECT destination, MIN(accepted_at) FROM messages "
                                            "WHERE destination IN (SELECT value FROM json_each(?)) "
                                            "GROUP BY destination", (json.dumps(list(numbers)),)):
            accepted[destination] = at
        duplicates = conn.execute("SELECT COALESCE(SUM(n - 1), 0) FROM dest_counts WHERE n > 1").fetchone()[0]
    finally:
        conn.close()
    return accepted, int(duplicates)


def settle(core_db, pushers, timeout=60):
    """Wait until every accepted push reached the Core (or the timeout); returns latencies (ms), lost."""
    deadline = time.time() + timeout
    while True:
        accepted, _ = core_accepts(core_db, pushers.pushed)
        missing = [n for n in pushers.pushed if n not in accepted]
        if not missing or time.time() > deadline:
            break
        time.sleep(0.5)
    latencies = [(accepted[n] - at) * 1000 for n, at in pushers.pushed.items() if n in accepted]
    return latencies, len(missing)


# --- bulk work -------------------------------------------------------------------------------------

def bulk_round(world, base_url, token, path, rows, recipients, prefix, data_dir):
    """Start an API ingest of `path` and a bulk dispatch of `recipients` at once; returns a handle whose
    wait() gives {"ingest_s", "ingest_rows", "dispatch_s", "dispatch_msgs"}."""
    from services.queues import schedule_campaign

    ingest_id = ingest_campaign(world, f"ingest {prefix}")
    dispatch_id = bulk_campaign(world, recipients, prefix)
    result: dict = {}

    def ingest():
        status, start, _, finished, _ = ingest_bench.upload_and_wait(base_url, token, ingest_id, path)
        result.update(ingest_s=finished - start, ingest_rows=status["lines"])

    thread = threading.Thread(target=ingest, daemon=True)
    started = time.perf_counter()
    thread.start()
    schedule_campaign(dispatch_id)

    class Handle:
        @staticmethod
        def done():
            return not thread.is_alive() and sent_so_far(dispatch_id) >= recipients

        @staticmethod
        def wait(timeout=7200):
            deadline = time.time() + timeout
            while sent_so_far(dispatch_id) < recipients:
                if time.time() > deadline:
                    raise SystemExit("bulk dispatch timed out")
                time.sleep(0.1)
            result.update(dispatch_s=time.perf_counter() - started, dispatch_msgs=recipients)
            thread.join(timeout=max(1, deadline - time.time()))
            if "ingest_s" not in result:
                raise SystemExit("the ingest did not finish")
            return result

    return Handle


def empty_queues(url):
    """Jobs and lane keys left in a shared REDIS_URL by an earlier run name campaigns of another
    database: drop them so this run's workers see only its own work."""
    from redis import Redis
    from rq import Worker

    from services.queues import QUEUES

    redis = Redis.from_url(url)
    others = Worker.all(connection=redis)
    if others:  # they would take this run's jobs (with their own database): the figures would be wrong
        raise SystemExit(f"{len(others)} RQ worker(s) already registered on {url}: use a Redis database of "
                         "your own (REDIS_URL=redis://…/<n>) or stop them")
    redis.delete(*[f"rq:queue:{name}" for name in QUEUES])
    for pattern in ("mc:trigger:*", "mc:dispatch:*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


# --- main ----------------------------------------------------------------------------------------

def _terminate(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")  # run the clean-up: no worker or Core left behind


def main():
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="idle phase length (s)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10, help="pushes per second, all clients together")
    parser.add_argument("--ingest-rows", type=int, default=10_000_000)
    parser.add_argument("--dispatch-recipients", type=int, default=1_000_000)
    parser.add_argument("--bulk-workers", type=int, default=2, help="bulk `rq worker` processes")
    parser.add_argument("--bulk-nice", type=int, default=10,
                        help="nice of the bulk workers and rq cron (10 as in deploy/systemd; 0 on a machine shared "
                             "with other busy processes, where 10 would starve the bulk work instead of testing it)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the bulk-alone round")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-otp-")
    db_url, db_handle = fresh_database(data_dir, "mc_bench_otp")
    procs, started_redis = [], False
    env = dict(os.environ, MC_DATA_DIR=data_dir, DATABASE_URL=db_url, MC_PRODUCTION="0", SECRET_KEY="bench",
               PYTHONUNBUFFERED="1", TRIGGER_RATE_PER_MINUTE=str(max(600, int(args.rate * 60))))
    try:
        if not env.get("REDIS_URL"):
            from tools.embedded_redis import start

            env["REDIS_URL"] = start(os.path.join(data_dir, "redis"))
            started_redis = True
        empty_queues(env["REDIS_URL"])
        core_port, web_port = free_port(), free_port()
        env.update(CORE_URL=f"https://127.0.0.1:{core_port}", CORE_PORT=str(core_port), PORT=str(web_port))
        run([os.path.join(BIN, "flask"), "db", "upgrade"], env)
        run([os.path.join(BIN, "flask"), "certs", "dev"], env)
        path = os.path.join(data_dir, "recipients.csv")
        t = time.perf_counter()
        ingest_bench.generate(path, args.ingest_rows)
        print(f"generated {args.ingest_rows:,} lines in {time.perf_counter() - t:.1f} s", flush=True)

        logs = os.path.join(data_dir, "logs")
        os.makedirs(logs)
        rq = os.path.join(BIN, "rq")
        procs.append(spawn([sys.executable, "-m", "coresim", "--port", str(core_port), "--latency", "0.5",
                            "--failure-ratio", "0", "--tps", "5000"], env, os.path.join(logs, "core.log")))
        procs.append(spawn([os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"], env,
                           os.path.join(logs, "web.log")))
        for i in range(args.bulk_workers):
            procs.append(spawn(["nice", "-n", str(args.bulk_nice), rq, "worker", "-w", "jobs.worker.AppWorker", "--with-scheduler",
                                "--logging_level", "WARNING", "--url", env["REDIS_URL"], "--path", ROOT,
                                "uploads", "dispatch", "exports", "default"], env, os.path.join(logs, f"worker{i}.log")))
        procs.append(spawn([rq, "worker", "-w", "jobs.worker.TriggerWorker", "--logging_level", "WARNING",
                            "--url", env["REDIS_URL"], "--path", ROOT, "trigger"], env, os.path.join(logs, "lane.log")))
        procs.append(spawn(["nice", "-n", str(args.bulk_nice), rq, "cron", "--logging-level", "warning", "--url", env["REDIS_URL"],
                            "--path", ROOT, "jobs/cron.py"], env, os.path.join(logs, "cron.log")))
        os.environ.update(env)
        from app import create_app
        from coresim.sim import db_path

        core_db = db_path(data_dir)
        app = create_app()
        with app.app_context():
            from bench.dispatch import wait_for_core

            wait_for_core()
            base_url = f"http://127.0.0.1:{web_port}"
            ingest_bench.wait_http(base_url + "/healthz")
            world = seed(args.clients + 1)  # the last token uploads the bulk lists
            pushers, uploader = world["tokens"][:args.clients], world["tokens"][-1]
            from services import trigger_lane

            deadline = time.time() + 60
            while trigger_lane.lane_workers() < 1 and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(2)  # every worker registered and idle

            # 1. idle
            print(f"idle: {args.clients} clients, {args.rate:g} pushes/s for {args.seconds:g} s", flush=True)
            idle = Pushers(base_url, world["otp"], pushers, args.rate, "4915")
            idle.start()
            time.sleep(args.seconds)
            idle.stop()
            idle_ms, idle_lost = settle(core_db, idle)

            # 2. bulk alone: this run's throughput baseline
            baseline = None
            if not args.no_baseline:
                print(f"bulk alone: ingest {args.ingest_rows:,} lines + dispatch {args.dispatch_recipients:,}",
                      flush=True)
                baseline = bulk_round(world, base_url, uploader, path, args.ingest_rows,
                                      args.dispatch_recipients, "4917", data_dir).wait()

            # 3. loaded: the same bulk work with the OTP pushes running throughout
            print("loaded: the same bulk work with OTP pushes throughout", flush=True)
            handle = bulk_round(world, base_url, uploader, path, args.ingest_rows,
                                args.dispatch_recipients, "4918", data_dir)
            loaded = Pushers(base_url, world["otp"], pushers, args.rate, "4916")
            loaded.start()
            bulk = handle.wait()
            loaded_s = loaded.stop()
            loaded_ms, loaded_lost = settle(core_db, loaded)
            _, duplicates = core_accepts(core_db, [])
            otp_sent = sent_so_far(world["otp"])

        pushes = len(idle.pushed) + len(loaded.pushed)
        idle_p95, loaded_p95, loaded_p99 = quantile(idle_ms, .95), quantile(loaded_ms, .95), quantile(loaded_ms, .99)
        ratio = loaded_p95 / idle_p95 if idle_p95 else float("nan")
        database = "postgresql" if db_handle else "sqlite"
        print(f"database          {database}   bulk workers {args.bulk_workers} (nice {args.bulk_nice}) "
              f"+ 1 Trigger-lane worker (nice 0)")
        print(f"idle              {len(idle.pushed):6d} pushes  p50 {quantile(idle_ms, .5):7.0f} ms  "
              f"p95 {idle_p95:7.0f} ms  p99 {quantile(idle_ms, .99):7.0f} ms  max {max(idle_ms, default=0):7.0f} ms")
        print(f"loaded            {len(loaded.pushed):6d} pushes  p50 {quantile(loaded_ms, .5):7.0f} ms  "
              f"p95 {loaded_p95:7.0f} ms  p99 {loaded_p99:7.0f} ms  max {max(loaded_ms, default=0):7.0f} ms  "
              f"over {loaded_s:.0f} s")
        for name, pushed in (("idle", idle), ("loaded", loaded)):
            print(f"{name + ' HTTP answer':<18}p50 {quantile(pushed.answered_ms, .5):7.0f} ms  "
                  f"p95 {quantile(pushed.answered_ms, .95):7.0f} ms  (the push request alone, audit write included)")
        print(f"push errors       {len(idle.errors) + len(loaded.errors)}"
              + (f"  first: {(idle.errors + loaded.errors)[0][:200]}" if idle.errors or loaded.errors else ""))
        print(f"bulk with OTPs    ingest {bulk['ingest_rows']:,} lines in {bulk['ingest_s']:.1f} s "
              f"({bulk['ingest_rows'] / bulk['ingest_s']:,.0f} rows/s)  dispatch {bulk['dispatch_msgs']:,} in "
              f"{bulk['dispatch_s']:.1f} s ({bulk['dispatch_msgs'] / bulk['dispatch_s']:,.0f} msgs/s)")
        if baseline:
            ingest_ratio = baseline["ingest_s"] / bulk["ingest_s"]
            dispatch_ratio = baseline["dispatch_s"] / bulk["dispatch_s"]
            print(f"bulk alone        ingest {baseline['ingest_rows']:,} lines in {baseline['ingest_s']:.1f} s "
                  f"({baseline['ingest_rows'] / baseline['ingest_s']:,.0f} rows/s)  dispatch "
                  f"{baseline['dispatch_msgs']:,} in {baseline['dispatch_s']:.1f} s "
                  f"({baseline['dispatch_msgs'] / baseline['dispatch_s']:,.0f} msgs/s)")
            print(f"bulk throughput with OTPs / alone: ingest {ingest_ratio:.2f}  dispatch {dispatch_ratio:.2f}")
        print(f"OTP campaign      {otp_sent} sent (counters)")
        print(f"RESULT pushes={pushes} idle_p95_ms={idle_p95:.0f} loaded_p95_ms={loaded_p95:.0f} "
              f"loaded_p99_ms={loaded_p99:.0f} ratio={ratio:.2f} duplicates={duplicates} "
              f"lost={idle_lost + loaded_lost}")
    finally:
        for proc in procs:  # every process group at once, then whatever is left is killed
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 15
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.time()))
            kill_tree(proc)
        if started_redis:
            from tools.embedded_redis import stop

            stop(os.path.join(data_dir, "redis"))
        drop_database(db_handle)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"kept {data_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
