"""Metrics from every process, as deployed: a real gunicorn (several workers) answers /metrics with
the series recorded in real `rq worker` work-horses (job durations, the Core's `events` calls) and
in its own workers, laid out as the systemd units do (one directory per process kind under
METRICS_COLLECT_DIR); successive scrapes never go down; finished work-horses are folded so the
directory does not grow per job."""
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from coresim.testing import sim_session, start_core
from jobs import get_queue
from services import core_probe, metrics
from tests.processes import stop_tree

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_core(str(tmp_path_factory.mktemp("metrics-core")), latency_seconds=0.01, failure_ratio=0.0)
    yield server
    server.stop()


def series(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def pick(found, name, **labels):
    return sum(v for (n, ls), v in found.items() if n == name and all(dict(ls).get(k) == val
                                                                       for k, val in labels.items()))


def wait_http(url, proc, log_path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return requests.get(url, timeout=3)
        except requests.RequestException:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer")


def stop(proc):
    stop_tree(proc, timeout=30)


def test_work_horse_series_reach_the_webs_metrics_and_scrapes_are_monotonic(app, core, tmp_path):
    root = tmp_path / "metrics"
    for kind in ("web", "worker-1"):
        (root / kind).mkdir(parents=True)
    base_env = dict(os.environ, MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
                    DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
                    AUDIT_FALLBACK_PATH=app.config["AUDIT_FALLBACK_PATH"],
                    CORE_URL=core.url, CORE_CA=f"{core.certs_dir}/ca.pem",
                    CORE_CLIENT_CERT=f"{core.certs_dir}/client.pem", CORE_CLIENT_KEY=f"{core.certs_dir}/client.key",
                    MC_PRODUCTION="0")
    home = tmp_path / "home"  # gunicorn's default control socket would go to $HOME/.gunicorn
    home.mkdir()
    web_env = dict(base_env, PROMETHEUS_MULTIPROC_DIR=str(root / "web"), METRICS_COLLECT_DIR=str(root),
                   PORT=str(free_port()), WEB_WORKERS="3", WEB_THREADS="2", HOME=str(home))
    worker_env = dict(base_env, PROMETHEUS_MULTIPROC_DIR=str(root / "worker-1"))
    queue_name = "default"
    get_queue(queue_name).empty()

    web_log = tmp_path / "web.log"
    with open(web_log, "wb") as log:
        web = subprocess.Popen([os.path.join(BIN, "gunicorn"), "--config", "deploy/gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=web_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = None
    try:
        url = f"http://127.0.0.1:{web_env['PORT']}"
        wait_http(url + "/healthz", web, web_log)
        # The control socket is this instance's own, under MC_DATA_DIR (not the shared $HOME one).
        ctl = os.path.join(app.config["MC_DATA_DIR"], f"gunicorn-{web_env['PORT']}.ctl")
        deadline = time.time() + 10
        while not os.path.exists(ctl) and time.time() < deadline:
            time.sleep(0.1)
        assert stat.S_ISSOCK(os.stat(ctl).st_mode) and not (home / ".gunicorn").exists()
        first = requests.get(url + "/metrics", timeout=30)
        assert first.status_code == 200
        assert first.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"  # one charset
        before = series(first.text)
        assert pick(before, "mc_job_duration_seconds_count", job_name="poll_delivery_reports") == 0

        from jobs.dispatch import poll_delivery_reports

        jobs = 3
        for _ in range(jobs):
            get_queue(queue_name).enqueue(poll_delivery_reports, job_timeout=60)
        worker_log = tmp_path / "worker.log"
        with open(worker_log, "wb") as log:
            worker = subprocess.Popen([os.path.join(BIN, "rq"), "worker", "-w", "jobs.worker.AppWorker", "--burst",
                                       "--url", base_env["REDIS_URL"], "--path", ROOT, queue_name],
                                      cwd=ROOT, env=worker_env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        assert worker.wait(timeout=120) == 0, worker_log.read_text()

        # Several scrapes, each answered by whichever gunicorn worker takes it: all see the same
        # work-horse series, and a counter never goes down from one scrape to the next.
        previous = None
        for _ in range(8):
            found = series(requests.get(url + "/metrics", timeout=30).text)
            jobs_seen = pick(found, "mc_job_duration_seconds_count", job_name="poll_delivery_reports",
                             queue=queue_name)
            events_calls = pick(found, "mc_core_request_seconds_count", operation="events")
            assert jobs_seen == jobs, found
            assert events_calls >= jobs
            assert ("mc_job_duration_seconds_bucket", (("job_name", "poll_delivery_reports"), ("le", "+Inf"),
                                                       ("queue", queue_name))) in found
            if previous is not None:
                for key, value in previous.items():
                    if key[0].endswith(("_total", "_count", "_sum", "_bucket")) and key in found:
                        assert found[key] >= value, (key, value, found[key])
            previous = found
        # Folded: no file per finished work-horse, only the worker's own and its archive.
        files = sorted(os.listdir(root / "worker-1"))
        assert [f for f in files if f.endswith(".db") and "archive" not in f and not f.split("_")[-1][:-3].isdigit()] == []
        pids = {f.rsplit("_", 1)[-1][:-3] for f in files if f.endswith(".db") and "archive" not in f}
        assert len(pids) <= 1, files  # the worker main process itself; no work-horse left behind
        assert any("archive" in f for f in files) and ".fold.lock" in files, files
    finally:
        if worker is not None:
            stop(worker)
        stop(web)


def test_fold_keeps_the_sum_and_removes_the_dead_process_files(tmp_path, monkeypatch):
    """Folding directly: values add up into the archive, files go, a missing pid is a no-op."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    key = mmap_key("mc_core_slow_total", "mc_core_slow_total", ["operation"], ["health"], "h")
    for pid, value in ((101, 2.0), (102, 3.0)):
        d = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        d.write_value(key, value, 0.0)
        d.close()
    assert metrics.fold_dead_process(101, str(tmp_path), into=1) == 1
    assert metrics.fold_dead_process(102, str(tmp_path), into=1) == 1
    assert metrics.fold_dead_process(999, str(tmp_path), into=1) == 0
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive-1.db"]
    values = {k: v for k, v, _ts, _pos in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_archive-1.db"))}
    assert values == {key: 5.0}


def test_core_latency_is_a_histogram_in_seconds(client, core, monkeypatch):
    """The Core's cumulative latency histogram becomes mc_core_channel_latency_seconds; no series
    with a `quantile` label or a unit other than seconds is left (promtool check metrics)."""
    session = sim_session(core.certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    app = client.application
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, f"{core.certs_dir}/{name}")
    monkeypatch.setitem(app.config, "CORE_URL", core.url)
    monkeypatch.setitem(core_probe.metrics_cache, "at", 0.0)
    text = client.get("/metrics").get_data(as_text=True)
    found = series(text)
    assert pick(found, "mc_core_up") == 1
    buckets = [k for k in found if k[0] == "mc_core_channel_latency_seconds_bucket"]
    assert buckets and any(dict(k[1]).get("le") == "+Inf" for k in buckets)
    assert "quantile" not in text and "_ms" not in text
    session.close()


@pytest.mark.parametrize("raw", [None, "x", {"buckets": "x"}, {"buckets": {"1": 2}},
                                 {"buckets": {"1": "two", "+Inf": 3}}, {"buckets": {"+Inf": 1}, "sum": "NaNx"}])
def test_a_malformed_latency_histogram_from_the_core_is_skipped(raw):
    assert metrics._latency_buckets(raw) is None


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian package prometheus) not installed")
def test_promtool_check_metrics_passes(client, core, monkeypatch):
    """Prometheus's own linter over a full scrape (Core channels included): naming, units, labels."""
    app = client.application
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, f"{core.certs_dir}/{name}")
    monkeypatch.setitem(app.config, "CORE_URL", core.url)
    monkeypatch.setitem(core_probe.metrics_cache, "at", 0.0)
    text = client.get("/metrics").get_data()
    assert b"mc_core_channel_up" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
