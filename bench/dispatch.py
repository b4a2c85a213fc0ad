"""Dispatch benchmark: N recipients sent to the reference Core over mutual TLS by real RQ workers.

Self-contained: makes its own data dir, database (SQLite there, or a fresh database on the
PostgreSQL server named by DATABASE_URL), Redis (REDIS_URL, else the embedded one), development
certificates, the reference Core (`python -m coresim`) and `--workers` RQ workers. Measures:

- core_raw_per_s: the Core's own accept rate for batches of 500 posted directly over mTLS (the
  baseline, same run, same machine);
- msgs_per_s: from the enqueue of the dispatch jobs until every recipient was accepted by the Core;
- ratio = msgs_per_s / core_raw_per_s; duplicates = messages the Core received more than once.

    python bench/dispatch.py [--recipients 100000] [--workers 2]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python bench/dispatch.py

Last line: RESULT messages=… msgs_per_s=… core_raw_per_s=… ratio=… duplicates=…
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.proctree import stop_tree  # noqa: E402
from tools.scratch import drop_database, free_port, fresh_database  # noqa: E402


def run(cmd, env):
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--raw-messages", type=int, default=50_000)
    parser.add_argument("--pushes", type=int, default=40, help="Trigger pushes timed until the Core has them")
    parser.add_argument("--keep", action="store_true", help="keep the data dir")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-dispatch-")
    db_url, db_handle = fresh_database(data_dir, "mc_bench_dispatch")
    procs, started_redis = [], False
    env = dict(os.environ, MC_DATA_DIR=data_dir, DATABASE_URL=db_url, MC_PRODUCTION="0",
               SECRET_KEY="bench", DISPATCH_BATCH_SIZE=str(args.batch), DISPATCH_TIME_BUDGET="3600",
               DISPATCH_PARALLEL=str(args.workers))
    try:
        if not env.get("REDIS_URL"):
            from tools.embedded_redis import start

            env["REDIS_URL"] = start(os.path.join(data_dir, "redis"))
            started_redis = True
        port = free_port()
        env.update(CORE_URL=f"https://127.0.0.1:{port}", CORE_PORT=str(port))
        flask = os.path.join(os.path.dirname(sys.executable), "flask")
        run([flask, "db", "upgrade"], env)
        run([flask, "certs", "dev"], env)
        procs.append(subprocess.Popen([sys.executable, "-m", "coresim", "--port", str(port), "--latency", "0.5",
                                       "--failure-ratio", "0"], cwd=ROOT, env=env, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        os.environ.update(env)
        from app import create_app

        app = create_app()
        with app.app_context():
            wait_for_core()
            raw = core_raw_rate(args.raw_messages, args.batch)
            campaign_id = make_campaign(args.recipients)
            rq = os.path.join(os.path.dirname(sys.executable), "rq")
            for _ in range(args.workers):
                procs.append(subprocess.Popen([rq, "worker", "-w", "jobs.worker.AppWorker", "--url", env["REDIS_URL"], "--path", ROOT, "dispatch"],
                                              cwd=ROOT, env=env, start_new_session=True,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.5)  # workers up
            from jobs.dispatch import schedule_campaign

            t0 = time.perf_counter()
            schedule_campaign(campaign_id)
            sent = wait_until_sent(campaign_id, args.recipients)
            elapsed = time.perf_counter() - t0
            stats = sim_stats()
            # Trigger pushes go out through their own lane (issue 18): its worker, as in the Procfile.
            procs.append(subprocess.Popen([rq, "worker", "-w", "jobs.worker.TriggerWorker", "--url", env["REDIS_URL"],
                                           "--path", ROOT, "trigger"], cwd=ROOT, env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.5)  # the lane's worker up
            push_p95 = trigger_push_latency(args.pushes)
        rate = sent / elapsed
        duplicates = stats["accepted"] - args.recipients + (stats["max_per_destination"] > 1)
        duplicates = max(duplicates, 0)
        print(f"recipients   {args.recipients:>12,}")
        print(f"workers      {args.workers:>12}")
        print(f"database     {'postgresql' if db_handle else 'sqlite':>12}")
        print(f"elapsed      {elapsed:>12.2f} s")
        print(f"msgs/s       {rate:>12,.0f}")
        print(f"core raw/s   {raw:>12,.0f}   (direct batch posts of {args.batch}, same run)")
        print(f"ratio        {rate / raw:>12.2f}")
        print(f"core stats   accepted={stats['accepted']} duplicates_refused={stats['duplicates_refused']} "
              f"max_per_destination={stats['max_per_destination']}")
        print(f"trigger push → Core p95 {push_p95 * 1000:>8.0f} ms   ({args.pushes} single-number pushes)")
        print(f"RESULT messages={sent} msgs_per_s={rate:.0f} core_raw_per_s={raw:.0f} ratio={rate / raw:.2f} "
              f"duplicates={duplicates} push_p95_ms={push_p95 * 1000:.0f}")
    finally:
        for proc in procs:
            stop_tree(proc, timeout=10)
        if started_redis:
            from tools.embedded_redis import stop

            stop(os.path.join(data_dir, "redis"))
        drop_database(db_handle)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def trigger_push_latency(pushes):
    """p95 seconds from a Trigger API push (one number) until the Core has accepted it."""
    from extensions import db
    from models import Campaign, SenderRevision, User, Workspace
    from services import tokens

    ws = db.session.scalars(db.select(Workspace).filter_by(slug="bench")).one()
    user = db.session.scalars(db.select(User).filter_by(email="bench@example.com")).one()
    revision = db.session.scalars(db.select(SenderRevision).filter_by(workspace_id=ws.id)).first()
    campaign = Campaign(workspace_id=ws.id, author_id=user.id, name="otp", mode="Trigger", status="Sending",
                        moderation="approved", sender_revision_id=revision.id, message_text="Your code is 1234",
                        ignore_daily_window=True, wizard_step=5)
    db.session.add(campaign)
    db.session.commit()
    approve_as_stored(campaign)
    _, token = tokens.create_token(user, ws, "bench trigger")
    client = __import__("flask").current_app.test_client()
    latencies = []
    for i in range(pushes):
        before = sim_stats()["accepted"]
        t0 = time.perf_counter()
        response = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": [f"4916{i:08d}"]},
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.get_data(as_text=True)
        while sim_stats()["accepted"] <= before:
            if time.perf_counter() - t0 > 30:
                raise SystemExit("a pushed number did not reach the Core within 30 s")
            time.sleep(0.02)
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    return latencies[max(0, int(len(latencies) * 0.95) - 1)]


def wait_for_core():
    from gateway import CoreError, get_client

    for _ in range(100):
        try:
            get_client().health()
            return
        except CoreError:
            time.sleep(0.1)
    raise SystemExit("the reference Core did not start")


def sim_session():
    from flask import current_app

    from coresim.testing import sim_session as make

    return make(os.path.dirname(current_app.config["CORE_CA"]))


def sim_stats():
    from flask import current_app

    with sim_session() as s:
        return s.get(current_app.config["CORE_URL"] + "/_sim/stats").json()


def core_raw_rate(total, batch):
    """Direct batch posts to the Core over the same mTLS client: its accept rate without us."""
    from flask import current_app

    from gateway import get_client

    client = get_client()
    t0 = time.perf_counter()
    for start in range(0, total, batch):
        messages = [{"id": f"raw-{i}", "destination": f"4990{i:08d}", "saddr": "BENCH", "ston": 5, "snpi": 0,
                     "dton": 1, "dnpi": 1, "text": "benchmark", "data_coding": 0}
                    for i in range(start, min(start + batch, total))]
        client.submit_batch(uuid.uuid4().hex, messages)
    rate = total / (time.perf_counter() - t0)
    with sim_session() as s:
        s.post(current_app.config["CORE_URL"] + "/_sim/reset").raise_for_status()
    return rate


def make_campaign(n):
    from sqlalchemy import text

    from extensions import db
    from models import Campaign, SenderName, SenderRevision
    from services import accounts, members, workspaces
    from services.numbers import ctn_hash

    ws = workspaces.create_workspace("bench", "Benchmark")
    user = accounts.create_user("bench@example.com", "benchmark password long", enforce_policy=False)
    members.add_member(ws, user, "admin")
    sender = SenderName(workspace_id=ws.id, label="BENCH")
    db.session.add(sender)
    db.session.flush()
    revision = SenderRevision(sender_id=sender.id, workspace_id=ws.id, number=1, saddr="BENCH", ton=5, npi=0,
                              state="approved")
    db.session.add(revision)
    db.session.flush()
    campaign = Campaign(workspace_id=ws.id, author_id=user.id, name="bench", mode="OnDemand", status="Sending",
                        moderation="approved", sender_revision_id=revision.id, message_text="Benchmark message",
                        recipients_count=n, queued_count=n, wizard_step=5)
    db.session.add(campaign)
    db.session.commit()
    for start in range(0, n, 50_000):
        rows = [{"c": campaign.id, "n": f"4917{i:08d}", "h": ctn_hash(f"4917{i:08d}", ws.id)}
                for i in range(start, min(start + 50_000, n))]
        db.session.execute(text("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                "VALUES (:c, :n, :h, 'queued')"), rows)
        db.session.commit()
    approve_as_stored(campaign)
    return campaign.id


def approve_as_stored(campaign):
    """The fingerprint a moderator's approval stores (services/approval.py): dispatch refuses an
    approved campaign without it."""
    from extensions import db
    from services import approval

    for key, value in approval.approval_values(campaign).items():
        setattr(campaign, key, value)
    db.session.commit()


def wait_until_sent(campaign_id, n, timeout=3600):
    from extensions import db
    from models import Campaign

    deadline = time.time() + timeout
    while time.time() < deadline:
        db.session.expire_all()
        campaign = db.session.get(Campaign, campaign_id)
        done = campaign.sent_count + campaign.failed_count
        db.session.rollback()
        if done >= n:
            return done
        time.sleep(0.05)
    raise SystemExit(f"timed out: {done} of {n} sent")


if __name__ == "__main__":
    main()
