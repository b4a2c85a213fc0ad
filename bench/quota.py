"""Workspace quota benchmark: what the daily quota adds to a dispatch claim.

`services/quotas.cap_claim` runs inside every `claim_batch` of a workspace with a daily quota: it
locks the workspace row (PostgreSQL) and sums today's `daily_sent` rows of the workspace's
campaigns (index on `daily_sent.day`). This seeds one workspace with --history campaigns that each
have --days days of `daily_sent` rows (a busy installation's history) plus four Sending campaigns
of --rows queued recipients, then times claim_batch (batches of --batch) on two campaigns without a
quota and on two with a quota large enough never to trim (SQLite there, or a fresh database on the
PostgreSQL server named by DATABASE_URL, dropped afterwards).

    python bench/quota.py [--rows 20000] [--batch 500] [--history 500] [--days 60]

Last line: RESULT claim_p50_ms=… claim_quota_p50_ms=… overhead_p50_ms=… quota_sum_ms=… backend=…
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from export import create_database  # noqa: E402  (same fresh-database helper)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def seed(app, rows, history, days):
    from flask_migrate import upgrade
    from sqlalchemy import text

    from extensions import db
    from models import Campaign, DailySent, User, Workspace, utcnow

    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        ws = Workspace(slug="bench", name="Bench", timezone="Europe/Berlin")
        user = User(email="bench@example.com", password_hash="x")
        db.session.add_all([ws, user])
        db.session.flush()

        def campaign(status, queued=0):
            row = Campaign(workspace_id=ws.id, author_id=user.id, name="Bench", mode="OnDemand", status=status,
                           moderation="approved", saddr="BENCH", ston=5, snpi=0, dton=1, dnpi=1,
                           message_text="Bench message", recipients_count=queued, queued_count=queued)
            db.session.add(row)
            db.session.flush()
            return row

        old = [campaign("Done") for _ in range(history)]
        today = utcnow().date()
        db.session.execute(db.insert(DailySent), [{"campaign_id": c.id, "day": today - timedelta(days=d), "sent": 1000}
                                                  for c in old for d in range(1, days + 1)])
        sending = [campaign("Sending", rows) for _ in range(4)]
        numbers = "CAST(491700000000 + g AS TEXT)"
        for n, c in enumerate(sending):
            if db.engine.dialect.name == "postgresql":
                db.session.execute(text(f"INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                        f"SELECT :c, {numbers}, md5(g::text), 'queued' "
                                        f"FROM generate_series(CAST(:a AS bigint), CAST(:b AS bigint)) g"), {"c": c.id, "a": n * rows + 1,
                                                                             "b": (n + 1) * rows})
            else:
                db.session.execute(text(f"WITH RECURSIVE s(g) AS (SELECT :a UNION ALL SELECT g + 1 FROM s WHERE g < :b) "
                                        f"INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                        f"SELECT :c, {numbers}, hex(g), 'queued' FROM s"),
                                   {"c": c.id, "a": n * rows + 1, "b": (n + 1) * rows})
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE"))
        return ws.id, [c.id for c in sending], len(old) * days


def time_claims(app, campaign_ids, workspace_id, quota):
    from extensions import db
    from models import Workspace
    from services import dispatch

    times = []
    with app.app_context():
        db.session.get(Workspace, workspace_id).quota_daily_messages = quota
        db.session.commit()
        while True:
            got = None
            for campaign_id in campaign_ids:
                started = time.perf_counter()
                got = dispatch.claim_batch(campaign_id)
                times.append((time.perf_counter() - started) * 1000)
            if got is None:
                break
    return times[:-len(campaign_ids)]


def time_sum(app, workspace_id, runs=50):
    from extensions import db
    from models import Workspace
    from services import quotas

    with app.app_context():
        ws = db.session.get(Workspace, workspace_id)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            quotas.used_on(ws.id, quotas.local_day(ws))
            times.append((time.perf_counter() - started) * 1000)
            db.session.rollback()
    return percentile(times, 50)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--history", type=int, default=500)
    parser.add_argument("--days", type=int, default=60)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-quota-")
    drop, redis_dir = None, None
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        db_url, drop = create_database(os.environ["DATABASE_URL"])
        backend = "postgresql"
    else:
        db_url, backend = f"sqlite:///{os.path.join(data_dir, 'bench.db')}", "sqlite"
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        redis_dir = os.path.join(data_dir, "redis")
        redis_url = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "start",
                                    redis_dir], check=True, capture_output=True, text=True).stdout.strip()
    try:
        from app import create_app

        app = create_app({"MC_DATA_DIR": data_dir, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": db_url,
                          "REDIS_URL": redis_url, "AUDIT_EMBEDDED_DIR": os.path.join(data_dir, "audit"),
                          "DISPATCH_BATCH_SIZE": args.batch, "TESTING": False})
        print(f"seeding 4 × {args.rows:,} recipients, {args.history} campaigns × {args.days} days of history "
              f"({backend}) …", flush=True)
        workspace_id, campaigns, history_rows = seed(app, args.rows, args.history, args.days)
        plain = time_claims(app, campaigns[:2], workspace_id, None)
        limited = time_claims(app, campaigns[2:], workspace_id, 10 ** 12)
        p50, q50 = percentile(plain, 50), percentile(limited, 50)
        p95, q95 = percentile(plain, 95), percentile(limited, 95)
        sum_ms = time_sum(app, workspace_id)
        print(f"claim of {args.batch} without a quota: p50 {p50:.2f} ms, p95 {p95:.2f} ms ({len(plain)} claims)")
        print(f"claim of {args.batch} with a daily quota: p50 {q50:.2f} ms, p95 {q95:.2f} ms ({len(limited)} claims)")
        print(f"today's use of the workspace ({history_rows:,} daily_sent rows of history): {sum_ms:.2f} ms")
        print(f"RESULT claim_p50_ms={p50:.2f} claim_quota_p50_ms={q50:.2f} overhead_p50_ms={q50 - p50:.2f} "
              f"quota_sum_ms={sum_ms:.2f} history_rows={history_rows} batch={args.batch} backend={backend}")
    finally:
        if redis_dir:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", redis_dir],
                           check=False)
        if drop:
            drop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
