"""Export benchmark: build a CSV export of a campaign with N delivery records and watch memory.

Self-contained: makes its own data dir and database (SQLite there, or a fresh database on the
PostgreSQL server named by DATABASE_URL, dropped afterwards), migrates it, bulk-loads N recipients
(COPY on PostgreSQL, batched inserts on SQLite) with realistic states, SMPP codes and times, then
runs `services.exports.build` — the function the RQ job runs — in a fresh child process twice:
a 1,000-row export (the memory baseline) and the N-row export. Each child samples its own RSS.

    python bench/export.py [--rows 10000000] [--format csv|txt] [--keep]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python bench/export.py

Last line: RESULT rows=… rows_per_s=… rss_growth_mb=… small_rss_growth_mb=… file_mb=… backend=…
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def rss_kb(pid="self"):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    def __init__(self):
        self.base, self.peak, self._stop = rss_kb(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kb())
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return max(self.peak - self.base, 0) / 1024


def make_app(data_dir, db_url):
    from app import create_app

    config = {"MC_DATA_DIR": data_dir, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": db_url,
              "AUDIT_EMBEDDED_DIR": os.path.join(data_dir, "audit"), "TESTING": False}
    return create_app(config)


# --- child: one export ------------------------------------------------------------------------

def child(data_dir, db_url, export_id):
    app = make_app(data_dir, db_url)
    with app.app_context():
        from extensions import db
        from services import exports

        db.session.execute(db.text("SELECT 1"))  # warm: connection and imports before the baseline
        db.session.rollback()
        sampler = Sampler()
        started = time.perf_counter()
        export = exports.build(export_id)
        elapsed = time.perf_counter() - started
        growth = sampler.stop()
        print(json.dumps({"rows": export.rows, "seconds": elapsed, "rss_growth_mb": growth,
                          "bytes": os.path.getsize(export.path)}))


# --- parent: set up, seed, run both exports ------------------------------------------------------

def create_database(url):
    """A fresh PostgreSQL database next to the one DATABASE_URL names; returns (url, drop)."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"mc_bench_export_{uuid.uuid4().hex[:8]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.set(database=name).render_as_string(hide_password=False), drop


def seed(app, rows, fmt):
    from flask_migrate import upgrade

    from extensions import db
    from models import Campaign, User, Workspace, utcnow
    from models.exports import Export

    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        ws = Workspace(slug="bench", name="Bench", timezone="UTC")
        user = User(email="bench@example.com", password_hash="x")
        db.session.add_all([ws, user])
        db.session.flush()
        campaigns = []
        for name, n in (("small", 1000), ("big", rows)):
            c = Campaign(workspace_id=ws.id, author_id=user.id, name=name, mode="OnDemand", status="Done",
                         moderation="approved", recipients_count=n)
            db.session.add(c)
            db.session.flush()
            campaigns.append(c.id)
        db.session.commit()
        started = time.perf_counter()
        for cid, n in zip(campaigns, (1000, rows)):
            load_recipients(db, cid, n)
        load_s = time.perf_counter() - started
        ids = []
        for cid in campaigns:
            e = Export(workspace_id=ws.id, campaign_id=cid, created_by_id=user.id, format=fmt, state="queued",
                       unmasked=False, rows=0, expires_at=utcnow())
            db.session.add(e)
            db.session.flush()
            ids.append(e.id)
        db.session.query(Export).update({Export.expires_at: utcnow().replace(year=utcnow().year + 1)})
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(db.text("VACUUM ANALYZE recipients"))
        return ids, load_s


STATES = ("delivered",) * 8 + ("failed", "sent")
CODES = {"delivered": "DELIVRD", "failed": "0x0000000B", "sent": ""}


def _rows(campaign_id, n):
    t0 = "2026-01-01 10:00:00+00"
    t1 = "2026-01-01 10:00:05+00"
    for i in range(n):
        state = STATES[i % 10]
        yield (campaign_id, f"49{1500000000 + i:010d}", f"{i:064x}", state, CODES[state] or None,
               t0, t1 if state != "sent" else None)


def load_recipients(db, campaign_id, n):
    engine = db.engine
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy("COPY recipients (campaign_id, number, ctn_hash, state, smpp_status, submitted_at, "
                          "delivered_at) FROM STDIN") as copy:
                for row in _rows(campaign_id, n):
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")
        batch = []
        sql = ("INSERT INTO recipients (campaign_id, number, ctn_hash, state, smpp_status, submitted_at, "
               "delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
        for cid, number, h, state, code, a, d in _rows(campaign_id, n):
            batch.append((cid, number, h, state, code, "2026-01-01 10:00:00.000000",
                          "2026-01-01 10:00:05.000000" if d else None))
            if len(batch) >= 100_000:
                cur.executemany(sql, batch)
                batch.clear()
        if batch:
            cur.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()


def run_child(data_dir, db_url, export_id):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", data_dir, db_url, str(export_id)],
                         check=True, capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, MC_PRODUCTION="0"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--format", choices=("csv", "txt"), default="csv")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and PostgreSQL database)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))

    data_dir = tempfile.mkdtemp(prefix="mc-bench-export-")
    drop = None
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        db_url, drop = create_database(os.environ["DATABASE_URL"])
        backend = "postgresql"
    else:
        db_url, backend = f"sqlite:///{os.path.join(data_dir, 'bench.db')}", "sqlite"
    try:
        app = make_app(data_dir, db_url)
        print(f"seeding {args.rows:,} recipients ({backend}) …", flush=True)
        (small_id, big_id), load_s = seed(app, args.rows, args.format)
        print(f"  loaded in {load_s:.1f} s", flush=True)
        small = run_child(data_dir, db_url, small_id)
        print(f"small export: {small['rows']:,} rows, RSS growth {small['rss_growth_mb']:.1f} MB", flush=True)
        big = run_child(data_dir, db_url, big_id)
        rate = big["rows"] / big["seconds"]
        print(f"big export:   {big['rows']:,} rows in {big['seconds']:.1f} s = {rate:,.0f} rows/s, "
              f"RSS growth {big['rss_growth_mb']:.1f} MB, file {big['bytes'] / 1e6:,.0f} MB", flush=True)
        print(f"RESULT rows={big['rows']} rows_per_s={rate:.0f} rss_growth_mb={big['rss_growth_mb']:.1f} "
              f"small_rss_growth_mb={small['rss_growth_mb']:.1f} file_mb={big['bytes'] / 1e6:.0f} "
              f"format={args.format} backend={backend}")
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if drop:
                drop()


if __name__ == "__main__":
    main()
