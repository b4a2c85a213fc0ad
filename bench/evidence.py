"""Evidence pack benchmark: build the pack of a campaign with N recipients and watch memory.

Self-contained like bench/export.py (whose seeding it reuses): its own data dir and database (SQLite,
or a fresh database on the PostgreSQL server named by DATABASE_URL, dropped afterwards), N recipients
bulk-loaded, then `services.evidence.build` — the function the RQ job runs — in a fresh child
process twice: a 1,000-recipient pack (the memory baseline) and the N-recipient pack. Each child
samples its own RSS; the pack's manifest is checked (every file's SHA-256) after the big build.

    python bench/evidence.py [--rows 10000000] [--keep]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python bench/evidence.py

Last line: RESULT rows=… rows_per_s=… rss_growth_mb=… small_rss_growth_mb=… zip_mb=… backend=…
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import export as export_bench  # noqa: E402 - bench/export.py: app, sampler, seeding (after the path is set)


def child(data_dir, db_url, pack_id):
    app = export_bench.make_app(data_dir, db_url)
    with app.app_context():
        from extensions import db
        from services import evidence, file_store

        db.session.execute(db.text("SELECT 1"))
        db.session.rollback()
        sampler = export_bench.Sampler()
        started = time.perf_counter()
        pack = evidence.build(pack_id)
        elapsed = time.perf_counter() - started
        growth = sampler.stop()
        with file_store.open_file(pack.path) as fh:   # read back from whichever store holds it
            files = check_manifest(fh)
        print(json.dumps({"rows": pack.recipients, "seconds": elapsed, "rss_growth_mb": growth,
                          "bytes": pack.size, "path": pack.path, "sha256": pack.sha256, "files": files}))


def seed(app, rows):
    from flask_migrate import upgrade

    from extensions import db
    from models import Campaign, Membership, User, Workspace, utcnow
    from models.evidence import EvidencePack

    with app.app_context():
        upgrade(directory=os.path.join(ROOT, "migrations"))
        ws = Workspace(slug="bench", name="Bench", timezone="UTC")
        user = User(email="bench@example.com", password_hash="x")
        db.session.add_all([ws, user])
        db.session.flush()
        db.session.add(Membership(workspace_id=ws.id, user_id=user.id, role="admin"))
        ids = []
        started = None
        for name, n in (("small", 1000), ("big", rows)):
            c = Campaign(workspace_id=ws.id, author_id=user.id, name=name, mode="OnDemand", status="Done",
                         moderation="approved", recipients_count=n)
            db.session.add(c)
            db.session.flush()
            db.session.commit()
            started = started or time.perf_counter()
            export_bench.load_recipients(db, c.id, n)
            p = EvidencePack(workspace_id=ws.id, campaign_id=c.id, created_by_id=user.id, state="queued",
                             unmasked=False, recipients=0, expires_at=utcnow().replace(year=utcnow().year + 1))
            db.session.add(p)
            db.session.commit()
            ids.append(p.id)
        load_s = time.perf_counter() - started
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(db.text("VACUUM ANALYZE recipients"))
        return ids, load_s


def check_manifest(fh):
    with zipfile.ZipFile(fh) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for entry in manifest["files"]:
            sha = hashlib.sha256()
            with zf.open(entry["name"]) as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            assert sha.hexdigest() == entry["sha256"], entry["name"]
    return len(manifest["files"])


def run_child(data_dir, db_url, pack_id):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", data_dir, db_url, str(pack_id)],
                         capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, MC_PRODUCTION="0"))
    if out.returncode:
        raise SystemExit(f"the pack build failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the data dir (and PostgreSQL database)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))

    data_dir = tempfile.mkdtemp(prefix="mc-bench-evidence-")
    drop = None
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        db_url, drop = export_bench.create_database(os.environ["DATABASE_URL"])
        backend = "postgresql"
    else:
        db_url, backend = f"sqlite:///{os.path.join(data_dir, 'bench.db')}", "sqlite"
    try:
        app = export_bench.make_app(data_dir, db_url)
        print(f"seeding {args.rows:,} recipients ({backend}) …", flush=True)
        (small_id, big_id), load_s = seed(app, args.rows)
        print(f"  loaded in {load_s:.1f} s", flush=True)
        small = run_child(data_dir, db_url, small_id)
        print(f"small pack: {small['rows']:,} recipients, RSS growth {small['rss_growth_mb']:.1f} MB", flush=True)
        big = run_child(data_dir, db_url, big_id)
        rate = big["rows"] / big["seconds"]
        files = big["files"]
        print(f"big pack:   {big['rows']:,} recipients in {big['seconds']:.1f} s = {rate:,.0f} rows/s, "
              f"RSS growth {big['rss_growth_mb']:.1f} MB, ZIP {big['bytes'] / 1e6:,.0f} MB, "
              f"manifest of {files} files verified", flush=True)
        print(f"RESULT rows={big['rows']} rows_per_s={rate:.0f} rss_growth_mb={big['rss_growth_mb']:.1f} "
              f"small_rss_growth_mb={small['rss_growth_mb']:.1f} zip_mb={big['bytes'] / 1e6:.0f} backend={backend}")
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
            if drop:
                drop()


if __name__ == "__main__":
    main()
