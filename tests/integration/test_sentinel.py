"""Redis Sentinel for real: a master, a replica and a Sentinel (Debian's redis-server) on free ports;
the worker and the scheduler run from a Procfile under tools/supervise.py with
REDIS_URL=redis+sentinel://…; the master is SIGKILLed in the middle of a dispatch. After the
failover the campaign finishes with every recipient at the Core exactly once."""
import shutil

import pytest
from limits.storage import storage_from_string
from redis.exceptions import RedisError
from sqlalchemy import func, select

from config import load_config, parse_sentinel_url
from coresim.testing import sim_session, start_core
from extensions import db, redis_client
from models import Campaign, Recipient
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace
from tests.processes import Procfile, SentinelRedis, venv_env, wait_until

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs Debian's redis-server")]

N = 2000


def test_sentinel_urls_reach_every_client(tmp_path):
    """One URL, every client: the app's client, RQ's CLI settings and Flask-Limiter's storage."""
    cfg = load_config({"SECRET_KEY": "x"}, env={"REDIS_URL": "redis+sentinel://:pw@a:26379,b:26380/mm/3",
                                               "MC_DATA_DIR": str(tmp_path)})
    assert cfg["RATELIMIT_STORAGE_URI"] == "redis+sentinel://:pw@a:26379,b:26380/mm"
    assert cfg["RATELIMIT_STORAGE_OPTIONS"]["db"] == 3
    parsed = parse_sentinel_url(cfg["REDIS_URL"])
    assert parsed.sentinels == (("a", 26379), ("b", 26380)) and (parsed.service, parsed.db) == ("mm", 3)
    assert parsed.password == "pw"
    for bad in ("redis+sentinel://a:26379", "redis+sentinel://a:x/mm", "redis+sentinel://a/mm/zero",
                "redis+sentinel:///mm"):
        with pytest.raises(Exception, match="REDIS_URL"):
            load_config({"SECRET_KEY": "x"}, env={"REDIS_URL": bad, "MC_DATA_DIR": str(tmp_path)})


@pytest.fixture
def sentinel(tmp_path):
    cluster = SentinelRedis(str(tmp_path / "redis")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def core(tmp_path):
    server = start_core(str(tmp_path / "core"), latency_seconds=0.05, failure_ratio=0.0)
    yield server
    server.stop()


def test_master_killed_mid_dispatch_the_campaign_finishes_exactly_once(app, tmp_path, sentinel, core):
    cfg = load_config({"SECRET_KEY": "x"}, env={"REDIS_URL": sentinel.url, "MC_DATA_DIR": str(tmp_path / "cfg")})
    client = redis_client(cfg, socket_connect_timeout=1, socket_timeout=2)
    client.set("mc:probe", "1")
    assert client.get("mc:probe") == b"1"   # the app's client finds the master through the Sentinel
    limits = storage_from_string(cfg["RATELIMIT_STORAGE_URI"], **cfg["RATELIMIT_STORAGE_OPTIONS"])
    assert limits.check() and limits.incr("mc/probe", 60) == 1   # Flask-Limiter's storage, the same way

    ws = make_workspace()
    campaign = make_campaign(ws, make_user(workspace=ws), status="Sending", moderation="approved",
                             sender=make_sender(ws))
    add_recipients(campaign, [f"4915{i:08d}" for i in range(1, N + 1)])
    campaign.queued_count = N
    db.session.commit()

    sim = sim_session(core.certs_dir)
    sim.post(core.url + "/_sim/faults", json={"slow_seconds": 0.25}).raise_for_status()
    env = venv_env(REDIS_URL=sentinel.url, MC_DATA_DIR=str(tmp_path / "host"), SECRET_KEY=app.config["SECRET_KEY"],
                   DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], MC_PRODUCTION="0",
                   CORE_URL=core.url, CORE_CA=f"{core.certs_dir}/ca.pem",
                   CORE_CLIENT_CERT=f"{core.certs_dir}/client.pem", CORE_CLIENT_KEY=f"{core.certs_dir}/client.key",
                   DISPATCH_BATCH_SIZE=50, DISPATCH_LEASE_SECONDS=3, DISPATCH_TIME_BUDGET=10,
                   STALLED_JOB_SECONDS=10, CORE_READ_TIMEOUT=10)
    procs = Procfile(str(tmp_path), "host", {
        "worker": "rq worker -w jobs.worker.AppWorker --with-scheduler --maintenance-interval 30 --logging_level WARNING "
                  "-c jobs.rq_settings --path . dispatch default",
        "cron": "python -m jobs.scheduler --logging-level warning jobs/cron.py",
    }, env).start()
    stats = lambda: sim.get(core.url + "/_sim/stats").json()  # noqa: E731
    try:
        wait_until(lambda: stats()["accepted"] >= N // 4, 90, "a quarter of the campaign at the Core")
        old_master = sentinel.ports["master"]
        sentinel.kill_master()
        at_kill = stats()["accepted"]
        assert at_kill < N, "the campaign was done before the master died; slow the Core down"
        wait_until(lambda: sentinel.master_port() == sentinel.ports["replica"], 30, "the Sentinel's failover")
        assert sentinel.master_port() != old_master
        wait_until(lambda: _limits_ok(limits), 30, "the rate-limit storage on the new master")
        assert client.set("mc:probe", "2") and client.get("mc:probe") == b"2"   # the app's client follows

        def done():
            db.session.expire_all()
            return db.session.get(Campaign, campaign.id).status == "Done"

        sim.post(core.url + "/_sim/faults", json={"slow_seconds": 0}).raise_for_status()
        wait_until(done, 180, "the campaign to finish after the failover", interval=1)
        final = stats()
        assert final["accepted"] == N and final["max_per_destination"] == 1, final
        campaign = db.session.get(Campaign, campaign.id)
        assert campaign.sent_count == N and campaign.queued_count == 0
        assert db.session.scalar(select(func.count(Recipient.id)).where(Recipient.state == "claimed")) == 0
    finally:
        procs.stop()
        sim.close()
    print(f"master killed at {at_kill}/{N} accepted; finished with {final['accepted']} exactly once")


def _limits_ok(storage):
    try:
        return storage.check() and storage.incr("mc/probe", 60) >= 1
    except (RedisError, OSError):
        return False
