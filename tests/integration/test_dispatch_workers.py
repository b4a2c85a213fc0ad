"""Exactly-once dispatch with real `rq worker` processes: a worker SIGKILLed in the middle of a
submit, two workers on one campaign, and a Core outage that heals by itself."""
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from coresim.testing import stats
from extensions import db, redis_connection
from jobs import get_queue
from models import Campaign, Recipient
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
pytestmark = pytest.mark.slow


@pytest.fixture
def worker_env(app, core):
    redis_connection().delete("rq:queue:dispatch")
    for key in redis_connection().scan_iter("mc:dispatch:*"):
        redis_connection().delete(key)
    env = dict(os.environ, MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               CORE_URL=core.url, CORE_CA=f"{core.certs_dir}/ca.pem", CORE_CLIENT_CERT=f"{core.certs_dir}/client.pem",
               CORE_CLIENT_KEY=f"{core.certs_dir}/client.key", DISPATCH_BATCH_SIZE="50",
               DISPATCH_LEASE_SECONDS="2", DISPATCH_TIME_BUDGET="60", MC_PRODUCTION="0")
    return env


def start_worker(env, burst=True):
    args = [os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "-w", "jobs.worker.AppWorker", "--url", env["REDIS_URL"],
            "--path", ROOT, "dispatch"]
    if burst:
        args.insert(2, "--burst")
    # Own process group: SIGKILL reaches the work horse too, as when a host dies.
    return subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def campaign_with(n):
    ws = make_workspace()
    campaign = make_campaign(ws, make_user(workspace=ws), status="Sending", moderation="approved",
                             sender=make_sender(ws))
    add_recipients(campaign, [f"4915{i:08d}" for i in range(1, n + 1)])
    campaign.queued_count = n
    db.session.commit()
    return campaign


def enqueue(campaign_id, slots=1):
    from jobs.dispatch import dispatch_campaign

    for slot in range(slots):
        get_queue("dispatch").enqueue(dispatch_campaign, campaign_id, slot, job_timeout=300)


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def counts(campaign_id):
    db.session.expire_all()
    campaign = db.session.get(Campaign, campaign_id)
    return campaign


def test_worker_killed_during_submit_every_recipient_reaches_the_core_once(sim, core, worker_env):
    campaign = campaign_with(300)
    sim.post(core.url + "/_sim/faults", json={"slow_seconds": 1.0}).raise_for_status()
    enqueue(campaign.id)
    worker = start_worker(worker_env)
    wait_until(lambda: stats(sim, core)["accepted"] >= 100, 60, "two batches at the Core")
    time.sleep(0.4)  # the next submit is in flight (the Core answers after 1 s)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    killed_at = stats(sim, core)["accepted"]
    assert killed_at < 300

    sim.post(core.url + "/_sim/faults", json={"slow_seconds": 0}).raise_for_status()
    time.sleep(2.2)  # the dead worker's lease runs out
    enqueue(campaign.id)
    start_worker(worker_env).wait(timeout=120)

    final = stats(sim, core)
    assert final["accepted"] == 300
    assert final["max_per_destination"] == 1
    campaign = counts(campaign.id)
    assert campaign.sent_count == 300 and campaign.queued_count == 0
    assert db.session.scalar(select(func.count(Recipient.id)).where(Recipient.state == "claimed")) == 0


def test_two_workers_on_one_campaign_send_no_duplicates(sim, core, worker_env):
    campaign = campaign_with(1000)
    enqueue(campaign.id, slots=2)
    workers = [start_worker(worker_env), start_worker(worker_env)]
    for worker in workers:
        assert worker.wait(timeout=180) == 0
    final = stats(sim, core)
    assert final["accepted"] == 1000 and final["max_per_destination"] == 1
    assert counts(campaign.id).sent_count == 1000


def test_core_down_then_back_resumes_without_help(sim, core, worker_env):
    campaign = campaign_with(100)
    sim.post(core.url + "/_sim/faults", json={"down": True}).raise_for_status()
    worker = start_worker(worker_env, burst=False)
    cron = subprocess.Popen([sys.executable, "-c", (
        "import time\n"
        "from app import create_app\n"
        "from jobs.dispatch import dispatch_tick\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    for _ in range(200):\n"
        "        dispatch_tick(); time.sleep(0.5)\n")], cwd=ROOT, env=worker_env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        assert stats(sim, core)["accepted"] == 0
        sim.post(core.url + "/_sim/faults", json={"down": False}).raise_for_status()
        wait_until(lambda: counts(campaign.id).sent_count == 100, 60, "the campaign to be sent after the outage")
        assert stats(sim, core)["max_per_destination"] == 1
    finally:
        for proc in (worker, cron):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
