"""Ingest benchmark: upload a generated recipient list through the API and time it end to end.

Self-contained: makes its own data dir, database (SQLite there, or a fresh database on the
PostgreSQL server named by DATABASE_URL), Redis (REDIS_URL, else the embedded one), portal
(gunicorn, 1 worker) and RQ worker. Generates N rows (1% bad lines, 1% duplicates), uploads a
1 KB file first (the memory baseline), then the big file, and measures:

- rows_per_s: end-to-end, from the start of the PUT until the build finished (campaign back to New);
- copy_rows_per_s: the raw load of the same numbers into a bare table (COPY on PostgreSQL,
  executemany on SQLite) in the same run, and ratio = rows_per_s / copy_rows_per_s;
- parse_rows_per_s: read + normalise + hash of the same file without any database;
- indexed_floor_rows_per_s (PostgreSQL): the stored rows COPYed again into a copy of
  `recipients` with its indexes — what the database alone needs to store them — and
  ratio_to_indexed_floor;
- rss_growth_mb: peak RSS growth of the web worker and of the RQ work-horse during the big
  upload, next to the same growth for the 1 KB file.

    python bench/ingest.py [--rows 10000000] [--line-bytes 109] [--shuffled] [--keep]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres python bench/ingest.py --line-bytes 109
    python bench/ingest.py --url http://host:5000 --token mc_… --campaign 12   # a running portal
    DATABASE_URL=… python bench/ingest.py --file-store database   # also: the same file through FILE_STORE=local

With `--file-store database` the big file is uploaded twice in the same run, through two web
processes: one with FILE_STORE=local (spool in MC_DATA_DIR) and one with FILE_STORE=database
(spool as 1 MB chunks in the database; the worker reads it back from there). Both are printed, the
figures of the RESULT line are the database store's, and it adds
store_ratio = database rows_per_s / local rows_per_s.

Last line: RESULT rows=… rows_per_s=… copy_rows_per_s=… ratio=… rss_growth_mb=… (plus more fields).
"""
import argparse
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.scratch import free_port  # noqa: E402

# --- helpers ----------------------------------------------------------------------------------

def kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        return []




def generate(path, rows, seed=7, line_bytes=0, shuffled=False):
    """`rows` lines with a header: ~1% bad lines, ~1% duplicates of earlier numbers.

    `line_bytes` pads every line with a filler column to about that length (10M lines with
    `--line-bytes 109` make a file just under 1 GiB, the API limit); `shuffled` spreads
    consecutive lines over the whole number range (an affine permutation, so no list of numbers
    is held) instead of writing them sorted.
    """
    rnd = random.Random(seed)
    step = 1
    if shuffled:
        step = 7_919_993
        while math.gcd(step, rows) != 1:
            step += 2

    def number(i):
        return 1500000000 + (i * step) % rows

    pad = ";" + "x" * max(0, line_bytes - 21) if line_bytes else ""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("phone;name\n")
        block = []
        for i in range(1, rows):
            r = i % 100
            if r == 17:
                block.append(f"n/a-{i};bad{pad}\n")
            elif r == 53 and i > 100:
                block.append(f"+49 {number(i - rnd.randint(1, 99)):010d};dup{pad}\n")
            else:
                block.append(f"+49 {number(i):010d};ok{pad}\n")
            if len(block) >= 100_000:
                fh.write("".join(block))
                block.clear()
        fh.write("".join(block))
    return os.path.getsize(path)


class Sampler:
    """Samples one process's VmRSS every 20 ms in a thread; growth = peak - RSS when started."""

    def __init__(self, pid):
        import threading

        self.pid, self.base, self.peak = pid, kb(pid, "VmRSS") or 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, kb(self.pid, "VmRSS") or 0)
            time.sleep(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return max(self.peak - self.base, 0) / 1024

    def poll(self):
        pass


def horse_growth(report_dir, job_id):
    with open(os.path.join(report_dir, job_id)) as fh:
        start, peak = (int(v) for v in fh.read().split())
    return (peak - start) / 1024


# --- the worker process -----------------------------------------------------------------------

def worker_main():
    """An RQ worker whose parent already built the app, so each forked work-horse starts warm."""
    from redis import Redis
    from rq import Worker

    from app import create_app
    from extensions import db

    app = create_app()
    from jobs.worker import use_app

    use_app(app)
    with app.app_context():
        db.engine.dispose()  # no connection is shared with the forked horses
    report_dir = os.environ["BENCH_RSS_DIR"]

    class MeasuredWorker(Worker):
        def perform_job(self, job, queue, *args, **kwargs):
            # Runs in the forked work-horse: its RSS at the start vs its peak (VmHWM) at the end.
            start = kb(os.getpid(), "VmRSS")
            try:
                return super().perform_job(job, queue, *args, **kwargs)
            finally:
                with open(os.path.join(report_dir, job.id), "w") as fh:
                    fh.write(f"{start} {kb(os.getpid(), 'VmHWM')}")

    connection = Redis.from_url(app.config["REDIS_URL"])
    MeasuredWorker(["uploads"], connection=connection).work(with_scheduler=False)


# --- set-up -------------------------------------------------------------------------------------

def setup_database(args, data_dir, env):
    url = os.environ.get("DATABASE_URL")
    if not url or not url.startswith("postgresql"):
        env["DATABASE_URL"] = f"sqlite:///{os.path.join(data_dir, 'bench.db')}"
        return None
    import psycopg

    base = url.replace("postgresql+psycopg://", "postgresql://")
    name = f"mc_bench_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    env["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
    return base, name


def drop_database(created):
    if created:
        import psycopg

        base, name = created
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def seed(env):
    """Workspace, author, token and two draft campaigns, made through the services."""
    os.environ.update(env)
    from app import create_app
    from extensions import db
    from models import Campaign
    from services import accounts, members, tokens, workspaces

    app = create_app()
    with app.app_context():
        ws = workspaces.create_workspace("bench", "Bench", "UTC", "00:00-24:00")
        user = accounts.create_user("bench@example.com", "correct horse battery staple bench")
        members.add_member(ws, user, "author")
        db.session.commit()
        _, token = tokens.create_token(user, ws, "bench")
        ids = []
        for name in ("warm-up", "1 KB", "big", "big (local store)"):
            campaign = Campaign(workspace_id=ws.id, author_id=user.id, name=name, mode="OnDemand", status="New")
            db.session.add(campaign)
            db.session.commit()
            ids.append(campaign.id)
        db.session.remove()
        db.engine.dispose()
    return token, ids


def wait_http(url, timeout=60):
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"portal did not answer at {url}")


# --- measurements ----------------------------------------------------------------------------

def upload_and_wait(base_url, token, campaign_id, path, web_pid=None):
    import requests

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv",
               "X-Filename": os.path.basename(path)}
    web = Sampler(web_pid) if web_pid else None
    start = time.perf_counter()
    with open(path, "rb") as fh:
        response = requests.put(f"{base_url}/api/v1/campaigns/{campaign_id}/recipients", data=fh, headers=headers,
                                timeout=3600)
    if response.status_code != 202:
        raise SystemExit(f"upload refused: {response.status_code} {response.text}")
    uploaded = time.perf_counter()
    status_url = base_url + response.json()["status_url"]
    last = None
    while True:
        status = requests.get(status_url, headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        if "state" not in status:
            raise SystemExit(f"status request refused: {status}")
        if status["state"] in ("done", "failed"):
            if status["state"] == "failed":
                raise SystemExit(f"ingest failed: {status['error']}")
            break
        if status["percent"] != last and sys.stderr.isatty():
            print(f"\r  ingest {status['percent']:3d}%", end="", file=sys.stderr)
            last = status["percent"]
        time.sleep(0.05)
    finished = time.perf_counter()
    web_growth = web.stop() if web else None
    return status, start, uploaded, finished, web_growth


def job_of(env, upload_id):
    """The RQ job id of an upload (the Upload row records it)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        job_id = conn.execute(text("SELECT job_id FROM uploads WHERE id = :i"), {"i": upload_id}).scalar()
    engine.dispose()
    return job_id


def copy_baseline(env, path):
    """The same numbers loaded raw into a bare table: no index, no normalisation, no hashing."""
    url = env["DATABASE_URL"]
    start = time.perf_counter()
    rows = 0
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("CREATE TABLE bench_copy (number text)")
            start = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY bench_copy (number) FROM STDIN") as copy, \
                    open(path, "rb") as fh:
                fh.readline()
                while True:
                    block = fh.readlines(4 * 1024 * 1024)
                    if not block:
                        break
                    rows += len(block)
                    copy.write(b"".join(line.split(b";", 1)[0] + b"\n" for line in block))
            conn.commit()
    else:
        import sqlite3

        conn = sqlite3.connect(url.replace("sqlite:///", ""))
        conn.execute("CREATE TABLE bench_copy (number text)")
        start = time.perf_counter()
        with open(path, "rb") as fh:
            fh.readline()
            while True:
                block = fh.readlines(4 * 1024 * 1024)
                if not block:
                    break
                rows += len(block)
                conn.executemany("INSERT INTO bench_copy VALUES (?)", ((ln.split(b";", 1)[0].decode(),) for ln in block))
        conn.commit()
        conn.close()
    return rows / (time.perf_counter() - start)


def indexed_floor(env, campaign_id, data_dir):
    """The stored rows of the big upload COPYed again into a copy of `recipients` with all its
    indexes (PostgreSQL): what storing these rows costs the database alone, with no parsing,
    hashing or de-duplication. None on SQLite."""
    url = env["DATABASE_URL"]
    if not url.startswith("postgresql"):
        return None
    import psycopg

    dump = os.path.join(data_dir, "rows.copy")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur, open(dump, "wb") as out:
            with cur.copy(f"COPY (SELECT campaign_id, number, ctn_hash, state FROM recipients "
                          f"WHERE campaign_id = {int(campaign_id)}) TO STDOUT") as copy:
                for data in copy:
                    out.write(data)
        conn.execute("CREATE TABLE bench_floor (LIKE recipients INCLUDING ALL)")
        conn.commit()
        rows = 0
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_floor (campaign_id, number, ctn_hash, state) FROM STDIN") as copy, \
                open(dump, "rb") as fh:
            while True:
                block = fh.read(1024 * 1024)
                if not block:
                    break
                rows += block.count(b"\n")
                copy.write(block)
        conn.commit()
        rate = rows / (time.perf_counter() - start)
        conn.execute("DROP TABLE bench_floor")
        conn.commit()
    os.unlink(dump)
    return rate


def parse_baseline(env, path):
    """read + normalise + hash of the same file, no database (the ingest's CPU floor)."""
    os.environ.update(env)
    from app import create_app
    from services import recipient_files
    from services.numbers import ctn_hasher, hash_key

    app = create_app()
    with app.app_context():
        layout = recipient_files.read_head(path)
        hash_number = ctn_hasher(hash_key(1))   # any workspace: the cost is the same
        start = time.perf_counter()
        lines = 0
        with open(path, "rb") as fh:
            offset = 0
            while True:
                chunk = recipient_files.read_chunk(fh, offset, lines, layout, 50_000, 0)
                for number in chunk.numbers:
                    hash_number(number)
                if not chunk.lines:
                    break
                lines += chunk.lines
                offset = chunk.end_offset
        return lines / (time.perf_counter() - start)


# --- main ------------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", "--lines", dest="rows", type=int, default=10_000_000,
                        help="rows in the generated file (default 10,000,000, about 175 MB)")
    parser.add_argument("--line-bytes", type=int, default=0,
                        help="pad lines with a filler column to about this many bytes (10M rows with 109: just under 1 GiB)")
    parser.add_argument("--shuffled", action="store_true", help="write the numbers in scattered order, not sorted")
    parser.add_argument("--url", help="use a running portal instead of starting one (needs --token, --campaign)")
    parser.add_argument("--token")
    parser.add_argument("--campaign", type=int)
    parser.add_argument("--file", help="upload this file instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and database")
    parser.add_argument("--file-store", choices=("local", "database"), default=None,
                        help="FILE_STORE of the measured run; 'database' also runs the local store for store_ratio")
    parser.add_argument("--worker-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_process:
        return worker_main()

    data_dir = tempfile.mkdtemp(prefix="mc-bench-")
    path = args.file or os.path.join(data_dir, "recipients.csv")
    if not args.file:
        t = time.perf_counter()
        size = generate(path, args.rows, line_bytes=args.line_bytes, shuffled=args.shuffled)
        print(f"generated {args.rows:,} rows, {size / 1048576:.1f} MB in {time.perf_counter() - t:.1f}s")
    size = os.path.getsize(path)
    tiny = os.path.join(data_dir, "tiny.csv")
    with open(tiny, "w") as fh:
        fh.write("phone\n" + "".join(f"+49 170 {i:07d}\n" for i in range(60)))

    if args.url:  # a running portal: end-to-end figure only
        status, start, uploaded, finished, _ = upload_and_wait(args.url.rstrip("/"), args.token, args.campaign, path)
        rate = status["lines"] / (finished - start)
        print(f"RESULT rows={status['lines']} lines={status['lines']} rows_per_s={rate:.0f} lines_per_s={rate:.0f}")
        return None

    env = dict(os.environ, MC_DATA_DIR=data_dir, SECRET_KEY="bench-secret", MC_PRODUCTION="0",
               AUDIT_FALLBACK_PATH=os.path.join(data_dir, "audit-fallback.jsonl"), PYTHONUNBUFFERED="1")
    procs, created, redis_dir = [], None, None
    try:
        if not os.environ.get("REDIS_URL"):
            redis_dir = os.path.join(data_dir, "redis")
            env["REDIS_URL"] = subprocess.check_output(
                [sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "start", redis_dir],
                text=True).strip()
        created = setup_database(args, data_dir, env)
        subprocess.run([sys.executable, "-m", "flask", "--app", "app:create_app", "db", "upgrade"], cwd=ROOT,
                       env=env, check=True, capture_output=True)
        env["BENCH_RSS_DIR"] = os.path.join(data_dir, "rss")
        os.makedirs(env["BENCH_RSS_DIR"])
        token, (warm_campaign, tiny_campaign, big_campaign, local_campaign) = seed(env)
        port = free_port()
        gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        web_log = open(os.path.join(data_dir, "web.log"), "wb")
        web_env = dict(env, FILE_STORE=args.file_store) if args.file_store else env
        web = subprocess.Popen([gunicorn, "-w", "1", "-b", f"127.0.0.1:{port}", "--timeout", "3600", "wsgi:app"],
                               cwd=ROOT, env=web_env, stdout=web_log, stderr=subprocess.STDOUT)
        procs.append(web)
        local_url = None
        if args.file_store == "database":   # a second web process that spools to MC_DATA_DIR
            local_port = free_port()
            local_web = subprocess.Popen([gunicorn, "-w", "1", "-b", f"127.0.0.1:{local_port}", "--timeout", "3600",
                                          "wsgi:app"], cwd=ROOT, env=dict(env, FILE_STORE="local"),
                                         stdout=web_log, stderr=subprocess.STDOUT)
            procs.append(local_web)
            local_url = f"http://127.0.0.1:{local_port}"
            wait_http(local_url + "/healthz")
        worker_log = open(os.path.join(data_dir, "worker.log"), "wb")
        worker = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker-process"], cwd=ROOT, env=env,
                                  stdout=worker_log, stderr=subprocess.STDOUT)
        procs.append(worker)
        base_url = f"http://127.0.0.1:{port}"
        wait_http(base_url + "/healthz")
        web_pid = children(web.pid)[0]
        time.sleep(1.0)

        # Warm the web worker (first requests load code and caches), then measure.
        upload_and_wait(base_url, token, warm_campaign, tiny, web_pid)
        tiny_status, _, _, _, web_tiny = upload_and_wait(base_url, token, tiny_campaign, tiny, web_pid)
        local = None
        if local_url:   # the local store first, then the database store, on the same file and database
            local_pid = children(procs[-1].pid)[0]
            l_status, l_start, l_uploaded, l_finished, l_web = upload_and_wait(local_url, token, local_campaign, path,
                                                                               local_pid)
            local = {"rows_per_s": l_status["lines"] / (l_finished - l_start), "upload_s": l_uploaded - l_start,
                     "total_s": l_finished - l_start, "web_growth": l_web or 0,
                     "job_id": job_of(env, l_status["id"])}   # its RSS report is read at the end
        status, start, uploaded, finished, web_big = upload_and_wait(base_url, token, big_campaign, path, web_pid)
        if sys.stderr.isatty():
            print("", file=sys.stderr)
        rows = status["lines"]
        rows_per_s = rows / (finished - start)
        copy_rate = copy_baseline(env, path)
        floor_rate = indexed_floor(env, big_campaign, data_dir)
        parse_rate = parse_baseline(env, path)
        worker_growth = horse_growth(env["BENCH_RSS_DIR"], job_of(env, status["id"]))
        worker_tiny = horse_growth(env["BENCH_RSS_DIR"], job_of(env, tiny_status["id"]))
        growth = max(worker_growth, web_big or 0)
        backend = "postgresql" if env["DATABASE_URL"].startswith("postgresql") else "sqlite"
        print(f"backend             {backend}")
        print(f"file                {rows:,} rows, {size / 1048576:.1f} MB")
        print(f"upload (HTTP)       {uploaded - start:8.1f} s  ({size / 1048576 / (uploaded - start):.0f} MB/s)")
        print(f"end to end          {finished - start:8.1f} s  {rows_per_s:12,.0f} rows/s")
        print(f"raw load baseline   {copy_rate:21,.0f} rows/s  (bare table, {'COPY' if backend == 'postgresql' else 'executemany'})")
        print(f"parse baseline      {parse_rate:21,.0f} rows/s  (read + normalise + hash, no DB)")
        if floor_rate:
            print(f"indexed floor       {floor_rate:21,.0f} rows/s  (the stored rows COPYed into a copy of recipients "
                  f"with its indexes; ratio {rows_per_s / floor_rate:.2f})")
        print(f"accepted/dup/bad    {status['accepted']:,} / {status['duplicates']:,} / {status['rejected']:,}")
        print(f"RSS growth worker   {worker_growth:6.1f} MB   (1 KB file: {worker_tiny:.1f} MB)")
        print(f"RSS growth web      {web_big or 0:6.1f} MB   (1 KB file: {web_tiny or 0:.1f} MB)")
        store_field = ""
        if local is not None:
            local["worker_growth"] = horse_growth(env["BENCH_RSS_DIR"], local["job_id"])
            ratio = rows_per_s / local["rows_per_s"]
            print(f"file store          database: {rows_per_s:12,.0f} rows/s  (upload {uploaded - start:.1f} s, "
                  f"end to end {finished - start:.1f} s)")
            print(f"                    local:    {local['rows_per_s']:12,.0f} rows/s  (upload {local['upload_s']:.1f} s, "
                  f"end to end {local['total_s']:.1f} s; RSS growth worker {local['worker_growth']:.1f} MB, "
                  f"web {local['web_growth']:.1f} MB)")
            print(f"                    store_ratio {ratio:.3f} (database / local)")
            store_field = f" store_ratio={ratio:.3f} local_rows_per_s={local['rows_per_s']:.0f} file_store=database"
            growth = max(growth, local["worker_growth"], local["web_growth"])
        elif args.file_store:
            store_field = f" file_store={args.file_store}"
        print(f"RESULT rows={rows} lines={rows} rows_per_s={rows_per_s:.0f} lines_per_s={rows_per_s:.0f} "
              f"copy_rows_per_s={copy_rate:.0f} ratio={rows_per_s / copy_rate:.3f} "
              f"parse_rows_per_s={parse_rate:.0f} rss_growth_mb={growth:.1f} "
              f"rss_growth_worker_mb={worker_growth:.1f} rss_growth_web_mb={web_big or 0:.1f} "
              f"rss_growth_1kb_mb={max(worker_tiny, web_tiny or 0):.1f} backend={backend}"
              + (f" indexed_floor_rows_per_s={floor_rate:.0f} ratio_to_indexed_floor={rows_per_s / floor_rate:.2f}"
                 if floor_rate else "") + store_field)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if redis_dir:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", redis_dir],
                           check=False, capture_output=True)
        if not args.keep:
            drop_database(created)
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            print(f"kept {data_dir}", file=sys.stderr)
    return None


if __name__ == "__main__":
    main()
