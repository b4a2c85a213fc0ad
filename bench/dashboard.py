"""Dashboard benchmark: p95 of the Overview page and of the Live Pulse JSON with N recipients.

Self-contained: makes its own data dir and database (SQLite there, or a fresh database on the
PostgreSQL server named by DATABASE_URL, dropped afterwards), Redis (REDIS_URL, else an embedded
one), migrates, then seeds one workspace realistically: 200 campaigns in every status with their
counters, N recipient rows spread over them (bulk COPY / batched inserts — the dashboard must not
read them), 30 days of HourlyStat rows per sending campaign, and Live Pulse minutes in Redis.
It then signs in and times GET /w/bench/ and GET /w/bench/pulse.json through the whole Flask
stack (test client, no network), after a warm-up, with the shared figures cache off
(DASHBOARD_CACHE_SECONDS=0) so that every view runs the aggregate queries.

    python bench/dashboard.py [--rows 10000000] [--requests 200] [--keep]

Last line: RESULT recipients=… overview_p95_ms=… pulse_p95_ms=… overview_p50_ms=… pulse_p50_ms=… backend=…
"""
import argparse
import os
import random
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

STATUSES = (("New", 20), ("Building", 5), ("Pending", 15), ("Sending", 30), ("Paused", 10), ("Done", 90),
            ("Cancelled", 10), ("Failed", 10), ("Expired", 10))


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def seed(app, rows):
    from flask_migrate import upgrade

    from extensions import db
    from models import Campaign, HourlyStat, Workspace, utcnow
    from services import accounts, members, pulse

    rnd = random.Random(8)
    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        ws = Workspace(slug="bench", name="Bench Ltd", timezone="UTC")
        db.session.add(ws)
        db.session.flush()
        authors = []
        for i in range(8):
            user = accounts.create_user(f"author{i}@bench.test", "correct horse battery staple")
            members.add_member(ws, user, "admin" if i == 0 else "author")
            authors.append(user)
        db.session.commit()
        total_campaigns = sum(n for _, n in STATUSES)
        per_campaign = rows // total_campaigns
        now = utcnow()
        campaigns = []
        for status, n in STATUSES:
            for _ in range(n):
                sent = per_campaign if status in ("Done", "Cancelled", "Expired") else (
                    per_campaign * rnd.randint(10, 90) // 100 if status in ("Sending", "Paused") else 0)
                failed = sent * rnd.randint(1, 5) // 100
                inflight = sent * rnd.randint(1, 10) // 100 if status in ("Sending", "Paused") else 0
                c = Campaign(workspace_id=ws.id, author_id=rnd.choice(authors).id, name=f"{status} {len(campaigns)}",
                             mode="OnDemand", status=status, moderation="approved" if status != "New" else "awaiting",
                             recipients_count=per_campaign, queued_count=per_campaign - sent, sent_count=sent,
                             failed_count=failed, inflight_count=inflight, delivered_count=sent - failed - inflight,
                             created_at=now - timedelta(days=rnd.randint(0, 60)))
                db.session.add(c)
                campaigns.append(c)
        db.session.commit()
        started = time.perf_counter()
        load_recipients(db, [c.id for c in campaigns], per_campaign)
        load_s = time.perf_counter() - started
        hour0 = now.replace(minute=0, second=0, microsecond=0)
        stats = []
        for c in campaigns:
            if c.status in ("Sending", "Paused", "Done"):
                for h in range(0, 24 * 30, 1):
                    sent = rnd.randint(0, 5000)
                    stats.append({"campaign_id": c.id, "hour": hour0 - timedelta(hours=h), "workspace_id": ws.id,
                                  "sent": sent, "delivered": sent * 95 // 100, "failed": sent // 50})
        db.session.execute(db.insert(HourlyStat), stats)
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(db.text("VACUUM ANALYZE"))
        for _ in range(30):
            pulse.record(ws.id, sent=rnd.randint(100, 900), delivered=rnd.randint(100, 800), failed=rnd.randint(0, 30))
        return per_campaign * len(campaigns), len(campaigns), len(stats), load_s


def load_recipients(db, campaign_ids, per_campaign):
    def rows():
        n = 0
        for cid in campaign_ids:
            for _ in range(per_campaign):
                n += 1
                yield cid, f"49{1500000000 + n:010d}", f"{n:064x}", "delivered" if n % 10 else "queued"

    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        if db.engine.dialect.name == "postgresql":
            with cur.copy("COPY recipients (campaign_id, number, ctn_hash, state) FROM STDIN") as copy:
                for row in rows():
                    copy.write_row(row)
        else:
            cur.execute("PRAGMA synchronous=OFF")
            batch, sql = [], "INSERT INTO recipients (campaign_id, number, ctn_hash, state) VALUES (?, ?, ?, ?)"
            for row in rows():
                batch.append(row)
                if len(batch) >= 100_000:
                    cur.executemany(sql, batch)
                    batch.clear()
            if batch:
                cur.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()


def time_requests(client, url, n):
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        response.close()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-dashboard-")
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
                          "WTF_CSRF_ENABLED": False, "TESTING": False,
                          # Every view computes its figures: the worst case (production shares them 5 s).
                          "DASHBOARD_CACHE_SECONDS": 0})
        print(f"seeding {args.rows:,} recipients ({backend}) …", flush=True)
        recipients, campaigns, hourly_rows, load_s = seed(app, args.rows)
        print(f"  {recipients:,} recipients in {campaigns} campaigns loaded in {load_s:.0f} s; "
              f"{hourly_rows:,} hourly rows", flush=True)
        client = app.test_client()
        assert client.post("/login", data={"email": "author0@bench.test",
                                           "password": "correct horse battery staple"}).status_code == 302
        time_requests(client, "/w/bench/", 10)  # warm-up: imports, template compilation, pools
        time_requests(client, "/w/bench/pulse.json", 10)
        overview = time_requests(client, "/w/bench/", args.requests)
        pulse_times = time_requests(client, "/w/bench/pulse.json", args.requests)
        o95, p95 = percentile(overview, 95), percentile(pulse_times, 95)
        print(f"overview: p50 {percentile(overview, 50):.1f} ms, p95 {o95:.1f} ms; "
              f"pulse: p50 {percentile(pulse_times, 50):.1f} ms, p95 {p95:.1f} ms", flush=True)
        print(f"RESULT recipients={recipients} overview_p95_ms={o95:.1f} pulse_p95_ms={p95:.1f} "
              f"overview_p50_ms={percentile(overview, 50):.1f} pulse_p50_ms={percentile(pulse_times, 50):.1f} "
              f"campaigns={campaigns} hourly_rows={hourly_rows} backend={backend}")
    finally:
        if redis_dir:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", redis_dir],
                           check=False, capture_output=True)
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if drop:
                drop()


if __name__ == "__main__":
    main()
