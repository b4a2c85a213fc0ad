"""The standby scheduler: two real `python -m jobs.scheduler jobs/cron.py` processes on one Redis —
one enqueues, the other stands by and takes over within 10 s of a SIGKILL; Diagnostics names the
active host and since when. The lease itself: never renewed by one that lost it."""
import os
import signal
import subprocess
import sys
import time

import pytest

from extensions import redis_connection
from services import diagnostics, scheduler_lease
from services.scheduler_lease import LEASE_KEY, SchedulerLease
from tests.processes import kill_tree

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(autouse=True)
def _no_lease():
    redis_connection().delete(LEASE_KEY)
    yield
    redis_connection().delete(LEASE_KEY)


def test_one_holder_and_a_lost_lease_is_never_renewed():
    redis = redis_connection()
    a, b = SchedulerLease(redis, 0.5, name="a"), SchedulerLease(redis, 0.5, name="b")
    assert a.hold() and not b.hold()
    assert a.hold()                       # renewal
    assert scheduler_lease.current(redis)["name"] == "a"
    time.sleep(0.7)                       # a "paused" past its lease
    assert b.hold()                       # b takes over
    assert not a.hold()                   # a finds it lost and does not steal it back…
    assert scheduler_lease.current(redis)["name"] == "b" and not a.held
    a.release()                           # …nor can it release b's
    assert scheduler_lease.current(redis)["name"] == "b"
    b.release()
    assert scheduler_lease.current(redis) is None and a.hold()


def start_scheduler(env):
    return subprocess.Popen([sys.executable, "-m", "jobs.scheduler", "--logging-level", "warning", "jobs/cron.py"],
                            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def holder_pid():
    holder = scheduler_lease.current(redis_connection())
    return holder and holder["pid"]


@pytest.mark.slow
def test_standby_takes_over_within_10_seconds_of_a_sigkill(app):
    env = dict(os.environ, REDIS_URL=app.config["REDIS_URL"], MC_DATA_DIR=app.config["MC_DATA_DIR"],
               SECRET_KEY=app.config["SECRET_KEY"], DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
               MC_PRODUCTION="0")
    redis = redis_connection()
    redis.delete("rq:queue:default")
    first = start_scheduler(env)
    second = None
    try:
        wait_for(lambda: holder_pid() == first.pid, 30, "the first scheduler to take the lease")
        second = start_scheduler(env)
        wait_for(lambda: len(diagnostics.cron_status()["schedulers"]) == 2, 30, "the standby to register")
        time.sleep(3)
        assert holder_pid() == first.pid          # the standby did not take it
        status = diagnostics.cron_status()
        assert status["leader"]["pid"] == first.pid and status["leader"]["since"] is not None
        assert [s["active"] for s in status["schedulers"]].count(True) == 1

        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        redis.delete("rq:queue:default")
        wait_for(lambda: holder_pid() == second.pid, 15, "the standby to take over")
        took = time.monotonic() - killed
        assert took <= 10, f"takeover after {took:.1f} s"
        # …and it enqueues: the dispatch tick appears on the default queue again.
        wait_for(lambda: any(b"dispatch_tick" in (redis.hget(f"rq:job:{j.decode()}", "description") or b"")
                             for j in redis.lrange("rq:queue:default", 0, -1)), 10, "a tick from the new scheduler")
        leader = diagnostics.cron_status()["leader"]
        assert leader["pid"] == second.pid

        # A clean stop gives the lease up at once.
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
        assert holder_pid() is None
    finally:
        for proc in (first, second):
            kill_tree(proc)
        redis.delete("rq:queue:default")


def test_diagnostics_page_names_the_scheduling_host(client):
    import socket

    from jobs.scheduler import LeasedCronScheduler
    from tests.factories import make_user

    active = LeasedCronScheduler(redis_connection(), 60)   # long enough for the page, renewed by nobody here
    standby = LeasedCronScheduler(redis_connection(), 60)
    active.register_birth()
    standby.register_birth()
    try:
        assert active.enqueue_jobs() == [] and active.lease.held      # no jobs registered: only the lease
        assert standby.enqueue_jobs() == [] and not standby.lease.held
        assert standby.calculate_sleep_interval() == standby.lease.renew_every   # a standby does not spin
        status = diagnostics.cron_status()
        assert status["leader"]["name"] == active.name, status
        make_user("root@example.com", superadmin=True)
        client.login("root@example.com")
        html = client.get("/admin/diagnostics").get_data(as_text=True)
        assert "Scheduling now" in html and socket.gethostname() in html and active.name in html
        assert "standing by" in html and standby.name in html   # (other schedulers of earlier tests may still be listed)
    finally:
        active.register_death()
        standby.register_death()
    assert scheduler_lease.current(redis_connection()) is None    # a clean stop gives the lease up
