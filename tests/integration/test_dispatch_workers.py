"""Exactly-once dispatch with real `rq worker` processes: a worker SIGKILLed in the middle of a
submit, two workers on one campaign, and a Core outage that heals by itself — for bulk campaigns
and for the Trigger lane (issue 18: its own `rq worker -w jobs.worker.TriggerWorker trigger`,
which sends an OTP while a long bulk job occupies the bulk worker)."""
import os
import subprocess
import sys
import time

import pytest
from rq.registry import StartedJobRegistry
from sqlalchemy import func, select, text

from coresim.testing import stats
from extensions import db, redis_connection
from jobs import get_queue
from jobs.dispatch import dispatch_tick
from models import Campaign, DispatchBatch, Recipient
from services import tokens, trigger_lane
from services.trigger import push_numbers
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace
from tests.processes import kill_tree, stop_tree

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
pytestmark = pytest.mark.slow


@pytest.fixture
def worker_env(app, core):
    # An empty Redis database: no queued job, slot, lane turn, registered worker or abandoned
    # registry entry (a killed work horse leaves its job in StartedJobRegistry) of an earlier test.
    redis_connection().flushdb()
    env = dict(os.environ, MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               CORE_URL=core.url, CORE_CA=f"{core.certs_dir}/ca.pem", CORE_CLIENT_CERT=f"{core.certs_dir}/client.pem",
               CORE_CLIENT_KEY=f"{core.certs_dir}/client.key", DISPATCH_BATCH_SIZE="50",
               DISPATCH_LEASE_SECONDS="2", DISPATCH_TIME_BUDGET="60", MC_PRODUCTION="0")
    return env


def start_worker(env, burst=True, lane=False):
    """A bulk worker (`dispatch` queue), or with lane=True the Trigger lane's worker (Procfile `worker-trigger`)."""
    worker_class, queue = ("jobs.worker.TriggerWorker", "trigger") if lane else ("jobs.worker.AppWorker", "dispatch")
    args = [os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "-w", worker_class, "--url", env["REDIS_URL"],
            "--path", ROOT, queue]
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
    kill_tree(worker)   # the worker and its work horse, as when the host dies
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
            kill_tree(proc)


# --- the Trigger lane (issue 18) -----------------------------------------------------------------

def trigger_campaign():
    ws = make_workspace()
    return make_campaign(ws, make_user(workspace=ws), mode="Trigger", status="Sending", moderation="approved",
                         sender=make_sender(ws), ignore_daily_window=True)


def lane_up(timeout=60):
    wait_until(lambda: trigger_lane.lane_workers() >= 1, timeout, "the Trigger lane's worker to register")


def stop(*procs):
    for proc in procs:
        kill_tree(proc)
    # A SIGKILLed worker's PostgreSQL backend finishes its statement before it notices the client is
    # gone; the next test's clean-up would deadlock with it. Wait until only idle backends are left.
    if db.engine.dialect.name == "postgresql":
        deadline = time.time() + 30
        while time.time() < deadline and db.session.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle'")):
            db.session.rollback()
            time.sleep(0.2)
        db.session.rollback()


def test_trigger_push_is_sent_while_a_long_bulk_job_occupies_the_bulk_worker(sim, core, worker_env):
    env = dict(worker_env, DISPATCH_BATCH_SIZE="10", DISPATCH_TIME_BUDGET="600")  # a bulk job of minutes
    bulk = campaign_with(20_000)
    otp = trigger_campaign()
    enqueue(bulk.id)
    bulk_worker = start_worker(env, burst=False)
    lane = None
    try:
        wait_until(lambda: stats(sim, core)["accepted"] >= 100, 60, "the bulk job to be sending")
        # Without the lane's worker an OTP waits: the bulk worker never takes lane work.
        assert push_numbers(otp, ["491799000001"])["accepted"] == 1
        time.sleep(1.5)
        assert counts(otp.id).sent_count == 0

        lane = start_worker(env, burst=False, lane=True)
        wait_until(lambda: counts(otp.id).sent_count == 1, 30, "the waiting OTP to go out through the lane")
        started = time.perf_counter()
        assert push_numbers(otp, ["491799000002"])["accepted"] == 1
        wait_until(lambda: counts(otp.id).sent_count == 2, 10, "a fresh OTP to reach the Core")
        elapsed = time.perf_counter() - started
        # ... while the bulk job still runs, on the bulk worker, with most of its list left
        assert StartedJobRegistry(queue=get_queue("dispatch")).count == 1
        assert counts(bulk.id).queued_count > 1000
        assert elapsed < 2.0, f"push -> Core took {elapsed:.2f} s behind a running bulk job"
    finally:
        stop(bulk_worker, lane)
    numbers = sim.get(core.url + "/_sim/stats").json()
    assert numbers["max_per_destination"] == 1


def test_trigger_lane_worker_killed_during_submit_each_number_reaches_the_core_once(sim, core, worker_env):
    otp = trigger_campaign()
    sim.post(core.url + "/_sim/faults", json={"slow_seconds": 1.0}).raise_for_status()
    lane = start_worker(worker_env, burst=False, lane=True)
    replacement = None
    try:
        lane_up()
        numbers = [f"4917990001{i:02d}" for i in range(30)]
        assert push_numbers(otp, numbers)["accepted"] == 30
        wait_until(lambda: db.session.scalar(select(func.count(DispatchBatch.id)).where(
            DispatchBatch.campaign_id == otp.id)) == 1 or db.session.rollback(), 30, "the lane to claim the batch")
        time.sleep(0.4)  # the submit is in flight (the Core answers after 1 s)
        kill_tree(lane)
        assert counts(otp.id).sent_count == 0

        sim.post(core.url + "/_sim/faults", json={"slow_seconds": 0}).raise_for_status()
        time.sleep(2.2)  # the dead worker's lease runs out
        replacement = start_worker(worker_env, burst=False, lane=True)
        lane_up()
        dispatch_tick()  # the tick finds the claim due for a replay and routes it through the lane
        wait_until(lambda: counts(otp.id).sent_count == 30, 60, "the replayed batch")
    finally:
        # The replacement is not part of the fault: stop it warmly (SIGTERM lets its turn commit) so no
        # half-done transaction of it meets the clean-up's DELETE (a deadlock on PostgreSQL otherwise).
        stop_tree(replacement, timeout=30)
        stop(lane, replacement)
    final = stats(sim, core)
    assert final["accepted"] == 30 and final["max_per_destination"] == 1
    assert db.session.scalar(select(func.count(Recipient.id)).where(Recipient.state == "claimed")) == 0
    assert counts(otp.id).queued_count == 0


def test_trigger_push_while_the_core_is_down_is_delivered_once_it_is_back(client, sim, core, worker_env):
    otp = trigger_campaign()
    _, token = tokens.create_token(otp.author, otp.workspace, "otp service")
    sim.post(core.url + "/_sim/faults", json={"down": True}).raise_for_status()
    lane = start_worker(worker_env, burst=False, lane=True)
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
        lane_up()
        response = client.post(f"/api/v1/campaigns/{otp.id}/recipients",
                               json={"numbers": [f"4917990002{i:02d}" for i in range(5)]},
                               headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json["accepted"] == 5
        time.sleep(3)
        assert stats(sim, core)["accepted"] == 0
        sim.post(core.url + "/_sim/faults", json={"down": False}).raise_for_status()
        wait_until(lambda: counts(otp.id).sent_count == 5, 60, "the OTPs to be sent after the outage")
    finally:
        stop(lane, cron)
    assert stats(sim, core)["max_per_destination"] == 1
    assert get_queue("dispatch").count == 0  # the lane had a live worker: nothing went the bulk way
