"""The shipped systemd units: hardened (systemd-analyze security ≤ 4.0 "OK"), warm worker stop
(KillMode=mixed: SIGTERM reaches the main `rq worker` only, which lets the work-horse finish its
job), network-online pulled in, metrics directory per unit — and the warm stop itself, shown with
a real `rq worker`: SIGTERM to the main process finishes the running job; SIGTERM to the whole
process of the unit (what KillMode=control-group did) kills the work-horse and fails it."""
import configparser
import glob
import inspect
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from rq.job import Job, JobStatus

from extensions import redis_connection
from jobs import get_queue
from tests.processes import kill_tree

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
UNITS = sorted(glob.glob(os.path.join(ROOT, "deploy", "systemd", "*.service")))


def unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    with open(path, encoding="utf-8") as fh:
        parser.read_string(fh.read())
    return parser


@pytest.mark.parametrize("path", UNITS, ids=os.path.basename)
def test_units_stop_warmly_and_wait_for_the_network(path):
    u = unit(path)
    assert u["Unit"]["Wants"] == "network-online.target"
    assert "network-online.target" in u["Unit"]["After"]
    assert u["Service"]["KillMode"] == "mixed"
    assert u["Service"]["UMask"] == "0077"
    assert u["Service"]["RuntimeDirectory"].startswith("message-center/metrics/")
    assert "PROMETHEUS_MULTIPROC_DIR=/run/" + u["Service"]["RuntimeDirectory"] in open(path, encoding="utf-8").read()


def test_the_worker_stop_timeout_is_longer_than_an_ordinary_job():
    from services.queues import enqueue_job

    default_timeout = inspect.signature(enqueue_job).parameters["timeout"].default  # 600 s unless a job says
    assert int(unit(os.path.join(ROOT, "deploy", "systemd", "mc-worker@.service"))["Service"]["TimeoutStopSec"]) \
        > default_timeout


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
@pytest.mark.parametrize("path", UNITS, ids=os.path.basename)
def test_systemd_analyze_security_rates_each_unit_ok(path):
    # --threshold is in tenths on the 0–100 scale behind the 0.0–10.0 rating: 40 = "4.0".
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=40", "--no-pager", path],
                            capture_output=True, text=True, timeout=60)
    last = (result.stdout.strip().splitlines() or [""])[-1]
    assert result.returncode == 0 and " OK " in last, result.stdout[-2000:] + result.stderr


def _worker(app, tmp_path, name):
    env = dict(os.environ, MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"])
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed by the caller's Popen lifetime)
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "rq"), "worker", "-w", "jobs.worker.AppWorker",
                             "--url", app.config["REDIS_URL"], "--path", ROOT, "default"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_started(job, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if job.get_status(refresh=True) == JobStatus.STARTED:
            return
        assert proc.poll() is None
        time.sleep(0.1)
    raise AssertionError("the job did not start")


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [False, True], ids=["KillMode=mixed", "KillMode=control-group"])
def test_sigterm_to_the_main_process_lets_the_job_finish(app, tmp_path, whole_group):
    queue = get_queue("default")
    queue.empty()
    job = queue.enqueue("time.sleep", 4, job_timeout=60, result_ttl=600, failure_ttl=600)
    proc = _worker(app, tmp_path, "worker")
    try:
        _wait_started(job, proc)
        time.sleep(0.5)  # the work-horse is inside the job
        if whole_group:
            # systemd's control-group kill reaches every process of the unit; the work-horse runs in
            # its own session (rq calls setsid), so a process-group signal would miss it.
            horses = [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
            assert horses
            for pid in (proc.pid, *horses):
                os.kill(pid, signal.SIGTERM)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        kill_tree(proc)
    status = Job.fetch(job.id, connection=redis_connection()).get_status(refresh=True)
    if whole_group:
        assert status != JobStatus.FINISHED  # the work-horse died with the job: why the units say mixed
    else:
        assert status == JobStatus.FINISHED, (tmp_path / "worker.log").read_text()
