"""Approval fingerprint benchmark: what the per-run check at the dispatch entry costs with N
recipients, what taking the fingerprint at approval costs, and how fast an upload's SHA-256 is.

`services/approval.check()` runs once per dispatch job run (not per message): it rebuilds the
canonical document from the campaign row and its uploads' rows and counts the campaign's recipient
rows on an index. This seeds one approved campaign with N recipients (one INSERT … SELECT; SQLite
there, or a fresh database on the PostgreSQL server named by DATABASE_URL, dropped afterwards),
then times check() and approval_values(), and hashes a generated file the size of --file-mb the
way the ingest does (1 MiB blocks).

    python bench/approval_check.py [--rows 1000000] [--runs 30] [--file-mb 200]

Last line: RESULT recipients=… check_p50_ms=… check_p95_ms=… approve_ms=… sha256_mb_s=… backend=…
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from export import create_database  # noqa: E402  (same fresh-database helper)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def seed(app, rows):
    from flask_migrate import upgrade
    from sqlalchemy import text

    from extensions import db
    from models import Campaign, SenderName, SenderRevision, Upload, User, Workspace
    from services import approval

    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        ws = Workspace(slug="bench", name="Bench", timezone="UTC")
        user = User(email="bench@example.com", password_hash="x")
        db.session.add_all([ws, user])
        db.session.flush()
        sender = SenderName(workspace_id=ws.id, label="Bench")
        db.session.add(sender)
        db.session.flush()
        revision = SenderRevision(sender_id=sender.id, workspace_id=ws.id, number=1, saddr="BENCH", ton=5, npi=0,
                                  state="approved")
        db.session.add(revision)
        db.session.flush()
        campaign = Campaign(workspace_id=ws.id, author_id=user.id, name="Bench", mode="OnDemand", status="Sending",
                            moderation="approved", sender_revision_id=revision.id, saddr="BENCH", ston=5, snpi=0,
                            dton=1, dnpi=1, message_text="Bench message", recipients_count=rows, queued_count=rows)
        db.session.add(campaign)
        db.session.flush()
        db.session.add(Upload(workspace_id=ws.id, campaign_id=campaign.id, source="api", spool_path="-",
                              state="done", sha256="0" * 64, bytes_total=rows * 13, lines=rows, accepted=rows))
        started = time.perf_counter()
        numbers = "CAST(491700000000 + g AS TEXT)"
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text(f"INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                    f"SELECT :c, {numbers}, md5(g::text), 'queued' FROM generate_series(1, :n) g"),
                               {"c": campaign.id, "n": rows})
        else:
            db.session.execute(text(f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < :n) "
                                    f"INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                                    f"SELECT :c, {numbers}, hex(g), 'queued' FROM s"), {"c": campaign.id, "n": rows})
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("VACUUM ANALYZE recipients"))
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        values = approval.approval_values(campaign)
        approve_ms = (time.perf_counter() - started) * 1000
        for key, value in values.items():
            setattr(campaign, key, value)
        db.session.commit()
        return campaign.id, load_s, approve_ms


def time_checks(app, campaign_id, runs):
    from extensions import db
    from models import Campaign
    from services import approval

    times = []
    with app.app_context():
        for _ in range(runs + 3):
            db.session.expire_all()
            started = time.perf_counter()
            approval.check(db.session.get(Campaign, campaign_id))   # as the job: load the row, then check
            times.append((time.perf_counter() - started) * 1000)
            db.session.rollback()
    return times[3:]  # the first runs warm the caches


def hash_speed(data_dir, megabytes):
    import hashlib

    path = os.path.join(data_dir, "upload.bin")
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as fh:
        for _ in range(megabytes):
            fh.write(block)
    started = time.perf_counter()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return megabytes / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--file-mb", type=int, default=200)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-approval-")
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
                          "TESTING": False})
        print(f"seeding {args.rows:,} recipients ({backend}) …", flush=True)
        campaign_id, load_s, approve_ms = seed(app, args.rows)
        print(f"  loaded in {load_s:.1f} s; taking the fingerprint at approval: {approve_ms:.1f} ms", flush=True)
        times = time_checks(app, campaign_id, args.runs)
        p50, p95 = percentile(times, 50), percentile(times, 95)
        print(f"check per dispatch run: p50 {p50:.1f} ms, p95 {p95:.1f} ms", flush=True)
        speed = hash_speed(data_dir, args.file_mb)
        print(f"upload SHA-256: {speed:,.0f} MB/s ({args.file_mb} MB file)", flush=True)
        print(f"RESULT recipients={args.rows} check_p50_ms={p50:.1f} check_p95_ms={p95:.1f} "
              f"approve_ms={approve_ms:.1f} sha256_mb_s={speed:.0f} backend={backend}")
    finally:
        if redis_dir:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", redis_dir],
                           check=False)
        if drop:
            drop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
