"""Dispatch under faults (issue 15): every scenario driven through the reference Core (real HTTPS,
mutual TLS) and real `rq worker` + `rq cron` processes; prints a table and one RESULT line.

Scenarios — each a fresh campaign, a fresh Core, its own workers:
- worker_kill  every worker SIGKILLed mid-submit, new ones started: Done, reports of the replayed
               batches applied (issue 15 item 1);
- pg_cut       (PostgreSQL) every other backend terminated (pg_terminate_backend) while submits are
               in flight: Done;
- throttle     every message answered 0x00000058 for --throttle-seconds, then accepted: Done with
               at most 3 submissions per recipient (item 2; by default the 2-minute throttle and
               the 30 s resubmission delay are scaled by 1/10 — `--full-throttle` runs them as is);
- core_down    the Core answers 503 for --down-seconds: Done, one [core-down] and one [core-up]
               log line, no batch claimed while it was known down (item 4);
- refuse_4xx   every batch answered HTTP 400: Failed with failure_reason after 3 refusals;
- reject_all   every message rejected 0x00000045: system-Paused by the breaker ("ESME_RSUBMITFAIL
               for the last 500 messages", item 3);
- give_up      throttled for ever: system-Paused after DISPATCH_GIVE_UP_MINUTES (6 s here).

    python bench/faults.py [--recipients 1000] [--scenarios worker_kill,throttle]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/mydb python bench/faults.py

With DATABASE_URL the bench runs in that (migrated) database — its own workspace; it resets the
Core events cursor — else in a SQLite file of its own. Last line:
RESULT worker_kill=Done/12.3s … duplicates=0 max_submissions=3 core_down_lines=1 …

tests/integration/test_dispatch_faults_workers.py runs the same scenarios (this module's `run`).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools.proctree import kill_tree, stop_tree  # noqa: E402

SCENARIOS = ("worker_kill", "pg_cut", "throttle", "core_down", "refuse_4xx", "reject_all", "give_up")
# Times shortened so that a scenario takes seconds (resubmission 3 s ×4, capped at 30 s: the shipped
# 30 s / 300 s scaled by 1/10); the rules are the shipped ones.
BASE_ENV = {"DISPATCH_BATCH_SIZE": "100", "DISPATCH_PARALLEL": "2", "DISPATCH_LEASE_SECONDS": "2",
            "DISPATCH_TIME_BUDGET": "5", "DISPATCH_BACKOFF_BASE_SECONDS": "0.5", "DISPATCH_BACKOFF_MAX_SECONDS": "30",
            "DISPATCH_RESUBMIT_SECONDS": "3", "DISPATCH_MAX_REFUSALS": "3", "DISPATCH_BREAKER_REJECTIONS": "500",
            "DISPATCH_GIVE_UP_MINUTES": "60", "CORE_CONNECT_TIMEOUT": "2", "CORE_READ_TIMEOUT": "5",
            "MC_PRODUCTION": "0"}


@dataclass
class Outcome:
    scenario: str
    status: str = "?"
    reason: str = ""
    seconds: float = 0.0
    recipients: int = 0
    accepted: int = 0
    duplicates: int = 0
    max_submissions: int = 0
    counters_add_up: bool = False
    core_down_lines: int = 0
    core_up_lines: int = 0
    claimed_while_down: int = 0
    job_errors: int = 0
    notes: dict = field(default_factory=dict)


class Rig:
    """Real processes around one scenario: `workers` × `rq worker` and one `rq cron jobs/cron.py`,
    each in its own process group (SIGKILL reaches the work horse too), logs in `log_dir`."""

    def __init__(self, env, log_dir, workers=2):
        self.env, self.log_dir, self.workers = env, log_dir, workers
        self.rq = os.path.join(os.path.dirname(sys.executable), "rq")
        self.worker_procs, self.cron = [], None
        self._n = 0

    def _spawn(self, args, name):
        self._n += 1
        log = open(os.path.join(self.log_dir, f"{self._n:02d}-{name}.log"), "wb")  # noqa: SIM115 - closed by the child
        try:
            return subprocess.Popen(args, cwd=ROOT, env=self.env, start_new_session=True, stdout=log,
                                    stderr=subprocess.STDOUT)
        finally:
            log.close()

    def start_workers(self):
        for _ in range(self.workers):
            self.worker_procs.append(self._spawn(
                [self.rq, "worker", "-w", "jobs.worker.AppWorker", "--logging_level", "WARNING",
                 "--url", self.env["REDIS_URL"], "--path", ROOT, "dispatch", "default"], "worker"))

    def start(self):
        self.start_workers()
        self.cron = self._spawn([self.rq, "cron", "--logging-level", "warning", "--url", self.env["REDIS_URL"],
                                 "--path", ROOT, "jobs/cron.py"], "cron")
        return self

    def kill_workers(self):
        for proc in self.worker_procs:
            _kill(proc, signal.SIGKILL)
        self.worker_procs = []

    def stop(self):
        for proc in self.worker_procs + ([self.cron] if self.cron else []):
            _kill(proc, signal.SIGTERM)
        self.worker_procs, self.cron = [], None

    def logs(self):
        text = []
        for name in sorted(os.listdir(self.log_dir)):
            with open(os.path.join(self.log_dir, name), encoding="utf-8", errors="replace") as fh:
                text.append(fh.read())
        return "\n".join(text)


def _kill(proc, sig):
    if sig == signal.SIGKILL:
        kill_tree(proc)   # the work horse too: RQ puts it in a process group of its own
    else:
        stop_tree(proc, sig, timeout=10)


# --- inside an app context -------------------------------------------------------------------

def reset_queues():
    """Nothing queued or locked by a previous scenario (dispatch slots, tick backlog, cron lease)."""
    from extensions import redis_connection

    redis = redis_connection()
    for pattern in ("mc:dispatch:*", "rq:queue:dispatch", "rq:queue:default", "rq:cron*"):
        for key in redis.scan_iter(pattern):
            redis.delete(key)


def make_campaign(recipients, label):
    """A Sending, approved OnDemand campaign with `recipients` queued numbers in a new workspace."""
    from extensions import db
    from models import Campaign, Recipient, SenderName, SenderRevision, utcnow
    from services import accounts, approval, members, workspaces
    from services.numbers import ctn_hash

    tag = uuid.uuid4().hex[:8]
    ws = workspaces.create_workspace(f"faults-{tag}", f"Faults {label} {tag}")
    user = accounts.create_user(f"faults-{tag}@example.com", f"faults bench password {tag}")
    members.add_member(ws, user, "author")
    sender = SenderName(workspace_id=ws.id, label=f"FAULTS {tag}")
    db.session.add(sender)
    db.session.flush()
    revision = SenderRevision(sender_id=sender.id, workspace_id=ws.id, number=1, saddr="FAULTS", ton=5, npi=0,
                              state="approved", submitted_at=utcnow(), decided_at=utcnow())
    db.session.add(revision)
    db.session.flush()
    now = utcnow()
    campaign = Campaign(workspace_id=ws.id, author_id=user.id, name=f"faults {label}", mode="OnDemand",
                        status="Sending", moderation="approved", sender_revision_id=revision.id, saddr="FAULTS",
                        ston=5, snpi=0, dton=1, dnpi=1, message_text="Fault drill", wizard_step=5, auto_start=True,
                        submitted_at=now, started_at=now, recipients_count=recipients, queued_count=recipients)
    db.session.add(campaign)
    db.session.flush()
    prefix = 4910 + (int(tag, 16) % 80)
    numbers = [f"{prefix}{i:08d}" for i in range(1, recipients + 1)]
    db.session.add_all(Recipient(campaign_id=campaign.id, number=n, ctn_hash=ctn_hash(n, ws.id), state="queued")
                       for n in numbers)
    db.session.flush()
    for key, value in approval.approval_values(campaign).items():  # as a moderator's approval stores it
        setattr(campaign, key, value)
    db.session.commit()
    return campaign.id


def snapshot(campaign_id):
    from extensions import db
    from models import Campaign

    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign_id)
    db.session.rollback()
    return campaign


def settled(campaign):
    return campaign.status in ("Done", "Failed", "Expired", "Cancelled") or (
        campaign.status == "Paused" and bool(campaign.pause_reason))


def counters_add_up(campaign_id):
    from sqlalchemy import func, select

    from extensions import db
    from models import Recipient

    c = snapshot(campaign_id)
    states = dict(db.session.execute(select(Recipient.state, func.count()).where(
        Recipient.campaign_id == campaign_id).group_by(Recipient.state)).all())
    db.session.rollback()
    ok = (c.delivered_count == states.get("delivered", 0) and c.inflight_count == states.get("sent", 0)
          and c.queued_count == states.get("queued", 0) + states.get("claimed", 0)
          and c.failed_count == states.get("failed", 0) and sum(states.values()) == c.recipients_count)
    if c.status == "Done":
        ok = ok and c.delivered_count + c.failed_count == c.recipients_count and c.inflight_count == 0
    return ok


def run(scenario, *, env, core_url, sim, log_dir, recipients=1000, timeout=180, throttle_seconds=12.0,
        down_seconds=6.0, workers=2):
    """Run one scenario inside an app context whose database the workers share; returns an Outcome."""
    from sqlalchemy import delete, func, select

    from extensions import db
    from models import DispatchBatch, JobError, SystemState

    env = {**env, **BASE_ENV}
    if scenario == "give_up":
        env["DISPATCH_GIVE_UP_MINUTES"] = "0.1"
    if scenario == "throttle" and throttle_seconds >= 60:  # a real 2-minute throttle: the shipped timings
        env.update(DISPATCH_RESUBMIT_SECONDS="30", DISPATCH_BACKOFF_BASE_SECONDS="2", DISPATCH_BACKOFF_MAX_SECONDS="300")
    sim.post(core_url + "/_sim/reset").raise_for_status()
    db.session.execute(delete(SystemState))  # the fresh Core's events start again at cursor 0
    db.session.commit()
    reset_queues()
    faults = {"worker_kill": {"slow_seconds": 0.5}, "pg_cut": {"slow_seconds": 0.3},
              "throttle": {"reject_code": "0x00000058"}, "core_down": {}, "refuse_4xx": {"refuse_status": 400},
              "reject_all": {"reject_code": "0x00000045"}, "give_up": {"reject_code": "0x00000058"}}[scenario]
    if faults:
        sim.post(core_url + "/_sim/faults", json=faults).raise_for_status()
    campaign_id = make_campaign(recipients, scenario)
    os.makedirs(log_dir, exist_ok=True)
    rig = Rig(env, log_dir, workers=workers).start()
    outcome = Outcome(scenario, recipients=recipients)
    started = time.monotonic()

    def stats():
        return sim.get(core_url + "/_sim/stats").json()

    def wait(predicate, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False

    try:
        if scenario == "worker_kill":
            wait(lambda: stats()["accepted"] >= recipients // 4, 60)
            time.sleep(0.25)  # a submit is in flight (the Core answers after 0.5 s)
            rig.kill_workers()
            outcome.notes["accepted_at_kill"] = stats()["accepted"]
            sim.post(core_url + "/_sim/faults", json={"slow_seconds": 0}).raise_for_status()
            rig.start_workers()
        elif scenario == "pg_cut":
            if db.engine.dialect.name != "postgresql":
                outcome.status = "skipped (PostgreSQL only)"
                return outcome
            wait(lambda: stats()["accepted"] >= recipients // 5, 60)
            cuts = 0
            for _ in range(6):
                cuts += db.session.execute(db.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
                db.session.commit()
                time.sleep(0.6)
            outcome.notes["backends_cut"] = cuts
            sim.post(core_url + "/_sim/faults", json={"slow_seconds": 0}).raise_for_status()
        elif scenario == "throttle":
            time.sleep(throttle_seconds)
            sim.post(core_url + "/_sim/faults", json={"reject_code": None}).raise_for_status()
        elif scenario == "core_down":
            wait(lambda: stats()["accepted"] >= recipients // 5, 60)
            sim.post(core_url + "/_sim/faults", json={"down": True}).raise_for_status()
            down_at = time.monotonic()
            wait(lambda: _outage_since() is not None, down_seconds)
            since = _outage_since()
            time.sleep(max(0.0, down_seconds - (time.monotonic() - down_at)))
            if since is not None:
                outcome.claimed_while_down = db.session.scalar(select(func.count(DispatchBatch.id)).where(
                    DispatchBatch.campaign_id == campaign_id, DispatchBatch.created_at > since))
                db.session.rollback()
            sim.post(core_url + "/_sim/faults", json={"down": False}).raise_for_status()
        wait(lambda: settled(snapshot(campaign_id)), timeout - (time.monotonic() - started))
        outcome.seconds = time.monotonic() - started
        campaign = snapshot(campaign_id)
        outcome.status = campaign.status
        outcome.reason = campaign.failure_reason or campaign.pause_reason or ""
        final = stats()
        outcome.accepted = final["accepted"]
        outcome.duplicates = final["accepted"] - final["destinations"]
        outcome.max_submissions = final["max_submissions_per_destination"]
        outcome.counters_add_up = counters_add_up(campaign_id)
        outcome.job_errors = db.session.scalar(select(func.count(JobError.id)).where(
            JobError.campaign_id == campaign_id))
        db.session.rollback()
    finally:
        rig.stop()
        logs = rig.logs()
        outcome.core_down_lines = logs.count("[core-down]")
        outcome.core_up_lines = logs.count("[core-up]")
        outcome.notes["tracebacks"] = logs.count("Traceback")
        sim.post(core_url + "/_sim/faults", json={"down": False, "reject_code": None, "refuse_status": None,
                                                   "slow_seconds": 0}).raise_for_status()
    return outcome


def _outage_since():
    from extensions import db
    from services import core_outage

    outage = core_outage.current()
    db.session.rollback()
    return outage["since"] if outage else None


def table(outcomes):
    lines = [f"{'scenario':<12} {'status':<8} {'seconds':>8} {'accepted':>8} {'dup':>4} {'max_sub':>7} "
             f"{'counters':>8} {'down/up':>7} {'claimed_down':>12} {'job_err':>7}  reason"]
    for o in outcomes:
        lines.append(f"{o.scenario:<12} {o.status:<8} {o.seconds:>8.1f} {o.accepted:>8} {o.duplicates:>4} "
                     f"{o.max_submissions:>7} {'ok' if o.counters_add_up else 'WRONG':>8} "
                     f"{o.core_down_lines:>3}/{o.core_up_lines:<3} {o.claimed_while_down:>12} {o.job_errors:>7}  "
                     f"{o.reason[:90]}")
    return "\n".join(lines)


def result_line(outcomes):
    parts = [f"{o.scenario}={o.status.split()[0]}/{o.seconds:.1f}s" for o in outcomes]
    ran = [o for o in outcomes if not o.status.startswith("skipped")]
    parts.append(f"duplicates={sum(o.duplicates for o in ran)}")
    parts.append(f"max_submissions_throttle={max([o.max_submissions for o in ran if o.scenario == 'throttle'] or [0])}")
    parts.append(f"counters_ok={sum(o.counters_add_up for o in ran)}/{len(ran)}")
    down = [o for o in ran if o.scenario == "core_down"]
    if down:
        parts.append(f"core_down_lines={down[0].core_down_lines} core_up_lines={down[0].core_up_lines} "
                     f"claimed_while_down={down[0].claimed_while_down}")
    return "RESULT " + " ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--throttle-seconds", type=float, default=12.0)
    parser.add_argument("--full-throttle", action="store_true", help="a 120 s throttle, 30 s resubmission delay")
    parser.add_argument("--down-seconds", type=float, default=6.0)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds a scenario may take to settle")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (process logs under logs/)")
    args = parser.parse_args()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    from tools.scratch import free_port

    data_dir = tempfile.mkdtemp(prefix="mc-bench-faults-")
    db_url = os.environ.get("DATABASE_URL") or f"sqlite:///{os.path.join(data_dir, 'faults.db')}"
    env = dict(os.environ, MC_DATA_DIR=data_dir, DATABASE_URL=db_url, SECRET_KEY="bench-faults", MC_PRODUCTION="0")
    procs, started_redis = [], False
    try:
        if not env.get("REDIS_URL"):
            from tools.embedded_redis import start

            env["REDIS_URL"] = start(os.path.join(data_dir, "redis"))
            started_redis = True
        port = free_port()
        env.update(CORE_URL=f"https://127.0.0.1:{port}", CORE_PORT=str(port))
        flask = os.path.join(os.path.dirname(sys.executable), "flask")
        for cmd in ([flask, "db", "upgrade"], [flask, "certs", "dev"]):
            subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(subprocess.Popen([sys.executable, "-m", "coresim", "--port", str(port), "--latency", "0.3",
                                       "--failure-ratio", "0.02"], cwd=ROOT, env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        os.environ.update(env)
        from app import create_app
        from coresim.testing import sim_session

        app = create_app()
        outcomes = []
        with app.app_context(), sim_session(os.path.join(data_dir, "certs")) as sim:
            for _ in range(100):
                try:
                    sim.get(env["CORE_URL"] + "/_sim/stats").raise_for_status()
                    break
                except OSError:
                    time.sleep(0.1)
            for name in names:
                throttle = 120.0 if args.full_throttle else args.throttle_seconds
                outcome = run(name, env=env, core_url=env["CORE_URL"], sim=sim,
                              log_dir=os.path.join(data_dir, "logs", name), recipients=args.recipients,
                              timeout=args.timeout + throttle, throttle_seconds=throttle,
                              down_seconds=args.down_seconds, workers=args.workers)
                outcomes.append(outcome)
                print(f"  {name}: {outcome.status} in {outcome.seconds:.1f} s {outcome.notes}", flush=True)
        print(f"recipients per scenario {args.recipients}, workers {args.workers}, "
              f"database {'postgresql' if db_url.startswith('postgresql') else 'sqlite'}")
        print(table(outcomes))
        print(result_line(outcomes))
    finally:
        for proc in procs:
            _kill(proc, signal.SIGTERM)
        if started_redis:
            from tools.embedded_redis import stop

            stop(os.path.join(data_dir, "redis"))
        if args.keep:
            print(f"data and logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
