"""Three "hosts" with no shared disk: one web (gunicorn) and two worker hosts (rq worker + the leased
scheduler), each started as the Procfile starts it (tools/supervise.py) under `unshare -m` with the
other hosts' data directories covered by an empty tmpfs — so a path written on one host does not
resolve on another, as on separate machines. They share only the database and Redis (and reach the
reference Core over TLS with their own copy of the certificates).

- a 200k-line upload through the web host is ingested by a worker; the worker host that is ingesting
  is SIGKILLed (its supervisor, worker and scheduler) and the other finishes with the same counts;
- the other worker host builds an export that the web host serves;
- the scheduler holding the lease is SIGKILLed (its host's supervisor first, so nothing restarts
  it); the standby takes over and the campaign still finishes, every recipient at the Core once.
"""
import contextlib
import os
import shutil
import signal
import time

import pytest
import requests
from rq import Worker

from coresim.testing import sim_session, start_core
from extensions import db, redis_connection
from models import Campaign, Recipient, Upload
from services import scheduler_lease, tokens
from services.scheduler_lease import LEASE_KEY
from tests.campaign_factories import bind_approval, make_campaign, make_sender
from tests.factories import make_user, make_workspace
from tests.processes import Procfile, descendants, parent_of, venv_env, wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="needs root for `unshare -m` and tmpfs mounts")]

LINES = 200_000
WEB_PORT = 52201   # this branch's port range (52200-52209)
HOSTS = ("web", "worker-b", "worker-c")


def hidden_prefix(hidden):
    """`unshare -m` + an empty tmpfs over each of `hidden`, then run the command."""
    mounts = " && ".join(f"mount -t tmpfs -o size=1m tmpfs {path}" for path in hidden)
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh"]


@pytest.fixture
def core(tmp_path):
    server = start_core(str(tmp_path / "core-data"), latency_seconds=0.05, failure_ratio=0.0)
    yield server
    server.stop()


@pytest.fixture
def hosts(app, tmp_path, core):
    dirs = {name: str(tmp_path / name) for name in HOSTS}
    for path in dirs.values():
        os.makedirs(os.path.join(path, "certs"), mode=0o700)
        for name in ("ca.pem", "client.pem", "client.key"):     # each host has its own copy
            shutil.copy(os.path.join(core.certs_dir, name), os.path.join(path, "certs", name))
    redis_connection().flushdb()
    common = dict(DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
                  SECRET_KEY=app.config["SECRET_KEY"], MC_PRODUCTION="0", FILE_STORE="database",
                  CORE_URL=core.url, UPLOAD_CHUNK_LINES=2000, STALLED_JOB_SECONDS=10,
                  DISPATCH_BATCH_SIZE=500, WEB_WORKERS=2, WEB_THREADS=4, PORT=WEB_PORT)
    lines = {
        "web": {"web": "gunicorn --config deploy/gunicorn.conf.py wsgi:app"},
        "worker": {"worker": "rq worker -w jobs.worker.AppWorker --with-scheduler --maintenance-interval 30 --logging_level WARNING "
                             "-c jobs.rq_settings --path . uploads dispatch exports default",
                   "cron": "python -m jobs.scheduler --logging-level warning jobs/cron.py"},
    }
    started, orphans = {}, []

    def start(name):
        others = [path for other, path in dirs.items() if other != name]
        started[name] = Procfile(str(tmp_path), name, lines["web" if name == "web" else "worker"],
                                 venv_env(MC_DATA_DIR=dirs[name], **common), prefix=hidden_prefix(others)).start()
        return started[name]

    try:
        for name in HOSTS:
            start(name)
        wait_until(lambda: _answers(f"http://127.0.0.1:{WEB_PORT}/healthz"), 60, "the web host")
        yield {"dirs": dirs, "procs": started, "start": start, "orphans": orphans}
    finally:
        for proc in started.values():
            proc.stop()
        for pid in orphans:   # what a test left of a host whose supervisor it killed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for name in HOSTS:    # what the worker hosts left in their own data directories is theirs alone
        assert not os.path.exists(os.path.join(dirs[name], "spool")) or not os.listdir(os.path.join(dirs[name], "spool"))


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def kill_host(procfile):
    """A host dies: its supervisor and every process under it (workers, work horses, the scheduler)
    at once, with no chance to clean up."""
    tree = [procfile.proc.pid, *descendants(procfile.proc.pid)]
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    procfile.proc.wait()


def host_of(pid, hosts):
    """Which host (supervisor) process `pid` runs under."""
    supervisors = {proc.proc.pid: name for name, proc in hosts["procs"].items()}
    while pid > 1:
        if pid in supervisors:
            return supervisors[pid]
        pid = parent_of(pid)
    raise AssertionError("process belongs to no host")


def test_three_hosts_without_a_shared_disk(app, hosts, core, tmp_path):
    ws = make_workspace("acme")
    user = make_user("boss@example.com", workspace=ws, role="admin", can_view_numbers=True)
    sender = make_sender(ws, created_by=user)
    campaign = make_campaign(ws, user, status="New", sender=sender, name="Hosts")
    _, token = tokens.create_token(user, ws, "hosts")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    base = f"http://127.0.0.1:{WEB_PORT}/api/v1"

    # 1. Upload through the web host: the spool goes to the database store, not the web host's disk.
    body = b"".join(b"4915%08d\n" % i for i in range(LINES))
    response = api.put(f"{base}/campaigns/{campaign.id}/recipients", data=body,
                       headers={"Content-Type": "text/csv", "X-Filename": "list.csv"}, timeout=60)
    assert response.status_code in (201, 202), response.text
    upload_id = response.json()["id"]
    assert db.session.get(Upload, upload_id).spool_path.startswith("db:")

    # 2. Find the worker that ingests it and kill its whole host mid-ingest.
    def ingesting_worker():
        for worker in Worker.all(connection=redis_connection()):
            job_id = worker.get_current_job_id()
            if job_id and job_id.startswith(f"ingest-{upload_id}-"):
                db.session.expire_all()
                upload = db.session.get(Upload, upload_id)
                if 0 < upload.bytes_done < upload.bytes_total:
                    return worker
        return None

    worker = wait_until(ingesting_worker, 60, "a worker in the middle of the ingest", interval=0.05)
    victim = host_of(worker.pid, hosts)
    kill_host(hosts["procs"][victim])
    db.session.expire_all()
    done_at_kill = db.session.get(Upload, upload_id).bytes_done
    assert done_at_kill < len(body)

    def ingested():
        db.session.expire_all()
        return db.session.get(Upload, upload_id).state in ("done", "failed")

    wait_until(ingested, 180, "the surviving host to finish the ingest", interval=1)
    upload = db.session.get(Upload, upload_id)
    assert (upload.state, upload.lines, upload.accepted, upload.rejected) == ("done", LINES, LINES, 0)
    campaign = db.session.get(Campaign, campaign.id)
    assert campaign.recipients_count == LINES
    assert db.session.query(Recipient).filter_by(campaign_id=campaign.id).count() == LINES
    assert campaign.status == "New"   # the draft, built: next it is submitted and approved
    hosts["start"](victim)   # the host comes back (with its empty data directory)

    # 3. An export built by a worker host and served by the web host.
    response = api.post(f"{base}/campaigns/{campaign.id}/exports", json={"format": "csv"}, timeout=10)
    assert response.status_code == 202, response.text
    export_url = f"http://127.0.0.1:{WEB_PORT}" + response.headers["Location"]
    wait_until(lambda: api.get(export_url, timeout=5).json()["state"] == "done", 120, "the export")
    download = api.get(export_url + "/download", timeout=60)
    assert download.status_code == 200
    rows = download.content.splitlines()
    assert len(rows) == LINES + 1 and rows[0].startswith(b"number,")
    assert not os.listdir(os.path.join(hosts["dirs"]["web"])) or not os.path.exists(
        os.path.join(hosts["dirs"]["web"], "exports"))

    # 4. Approve (as a moderator's approval stores it) and send; kill the scheduling host's scheduler.
    campaign.status, campaign.moderation = "Sending", "approved"
    db.session.commit()
    bind_approval(campaign)
    sim = sim_session(core.certs_dir)
    stats = lambda: sim.get(core.url + "/_sim/stats").json()  # noqa: E731
    wait_until(lambda: stats()["accepted"] >= 5000, 120, "the dispatch to start")
    holder = scheduler_lease.current(redis_connection())
    scheduling_host = host_of(holder["pid"], hosts)
    hosts["orphans"].extend(descendants(hosts["procs"][scheduling_host].proc.pid))   # its worker: stopped at the end
    os.kill(hosts["procs"][scheduling_host].proc.pid, signal.SIGKILL)   # no supervisor to restart it
    hosts["procs"][scheduling_host].proc.wait()
    os.kill(holder["pid"], signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: (scheduler_lease.current(redis_connection()) or {}).get("pid") not in (None, holder["pid"]),
               15, "the standby scheduler to take over")
    takeover = time.monotonic() - killed
    assert takeover <= 10, f"takeover after {takeover:.1f} s"
    assert redis_connection().exists(LEASE_KEY)

    def finished():
        db.session.expire_all()
        return db.session.get(Campaign, campaign.id).status == "Done"

    wait_until(finished, 600, "the campaign to finish", interval=2)
    final = stats()
    assert final["accepted"] == LINES and final["max_per_destination"] == 1, final
    print(f"ingest host killed at byte {done_at_kill}; scheduler takeover in {takeover:.1f} s; "
          f"{final['accepted']} messages, each once")
