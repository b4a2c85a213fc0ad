"""./run.sh heals itself (tools/supervise.py): a process that dies is restarted with a log line while
the others keep running, `rq cron` comes back after a Redis outage, and SIGTERM/SIGINT stop
everything, grandchildren included."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTED = re.compile(r"started (\w+) \(pid (\d+)\)")
pytestmark = pytest.mark.slow


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        return []


def _descendants(pid):
    return [d for c in _children(pid) for d in [c] + _descendants(c)]


class Supervised:
    def __init__(self, tmp_path, procfile, *extra):
        self.log = tmp_path / "supervise.log"
        (tmp_path / "Procfile").write_text(procfile)
        self.out = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "supervise.py"),
                                      "-f", str(tmp_path / "Procfile"), *extra],
                                     cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def text(self):
        return self.log.read_text(errors="replace")

    def pids(self):
        """name -> pid of the latest start."""
        found = {}
        for name, pid in STARTED.findall(self.text()):
            found[name] = int(pid)
        return found

    def wait_for(self, predicate, timeout=30, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            result = predicate()
            if result:
                return result
            assert self.proc.poll() is None, self.text()
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")

    def stop(self, signum=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise
        self.out.close()


SLEEPER = f"{sys.executable} -c \"import time; print('up', flush=True); time.sleep(1000)\""


def test_a_killed_process_is_restarted_alone_and_sigterm_leaves_no_orphan(tmp_path):
    # `family` has a child of its own, like an rq worker and its work-horse.
    sup = Supervised(tmp_path, f"steady: {SLEEPER}\nfamily: sh -c 'sleep 1000 & wait'\n")
    try:
        first = sup.wait_for(lambda: len(sup.pids()) == 2 and sup.pids(), what="both started")
        grandchild = sup.wait_for(lambda: _children(first["family"]), what="the child of family")[0]

        os.kill(first["family"], signal.SIGKILL)
        again = sup.wait_for(lambda: sup.pids()["family"] != first["family"] and sup.pids(), what="a restart")
        text = sup.text()
        assert re.search(rf"family \(pid {first['family']}\) exited with signal SIGKILL after [\d.]+ s; restarting in",
                         text), text
        assert again["steady"] == first["steady"] and _alive(first["steady"])  # the other one kept running
        assert _alive(again["family"])
        # The dead process's child did not live on beside its replacement.
        sup.wait_for(lambda: not _alive(grandchild), timeout=5, what="the leftover child to be killed")

        # A process that keeps dying is restarted with growing back-off, not in a tight loop.
        os.kill(again["family"], signal.SIGKILL)
        sup.wait_for(lambda: len(STARTED.findall(sup.text())) >= 4, what="the second restart")
        delays = [float(d) for d in re.findall(r"family .*restarting in ([\d.]+) s", sup.text())]
        assert delays[1] > delays[0], sup.text()

        everyone = [sup.proc.pid] + _descendants(sup.proc.pid)
        assert len(everyone) >= 4
        sup.stop(signal.SIGTERM)
        assert sup.proc.returncode == 0
        time.sleep(0.2)
        assert [pid for pid in everyone if _alive(pid)] == [], sup.text()
        assert "all processes stopped" in sup.text()
    finally:
        sup.stop(signal.SIGKILL)


def test_ctrl_c_stops_a_process_that_ignores_sigterm(tmp_path):
    stubborn = (f"{sys.executable} -c \"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"print('up', flush=True); time.sleep(1000)\"")
    sup = Supervised(tmp_path, f"stubborn: {stubborn}\nsteady: {SLEEPER}\n", "--stop-timeout", "2")
    try:
        pids = sup.wait_for(lambda: len(sup.pids()) == 2 and sup.pids(), what="both started")
        sup.wait_for(lambda: re.search(r"stubborn +\| up", sup.text()), what="the SIGTERM handler in place")
        started = time.time()
        sup.stop(signal.SIGINT)
        assert time.time() - started < 10
        time.sleep(0.2)
        assert not any(_alive(pid) for pid in pids.values()), sup.text()
        assert "did not stop in 2 s" in sup.text()
    finally:
        sup.stop(signal.SIGKILL)


def test_rq_cron_comes_back_after_a_redis_outage(tmp_path):
    redis_dir = tempfile.mkdtemp(prefix="mc-sv-")  # a unix socket path must stay short
    start = [sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "start", str(redis_dir)]
    url = subprocess.run(start, check=True, capture_output=True, text=True).stdout.strip()
    client = redis.Redis.from_url(url)
    cron_file = tmp_path / "cron_noop.py"
    cron_file.write_text("from rq import cron\ncron.register(print, queue_name='default', interval=2)\n")
    rq = os.path.join(os.path.dirname(sys.executable), "rq")
    sup = Supervised(tmp_path, f"cron: {rq} cron --url {url} --path {ROOT} {cron_file}\nsteady: {SLEEPER}\n",
                     "--max-backoff", "2")
    try:
        first = sup.wait_for(lambda: len(sup.pids()) == 2 and sup.pids(), what="both started")
        sup.wait_for(lambda: client.keys("rq:cron_scheduler:*"), what="rq cron registered")

        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", str(redis_dir)],
                       check=True)
        sup.wait_for(lambda: re.search(r"cron \(pid \d+\) exited with code [1-9]", sup.text()), timeout=60,
                     what="rq cron to exit on the outage")
        time.sleep(3)  # it keeps failing while Redis is down; the supervisor keeps trying
        subprocess.run(start, check=True, capture_output=True)
        client = redis.Redis.from_url(url)
        sup.wait_for(lambda: client.keys("rq:cron_scheduler:*"), timeout=30, what="rq cron back after the outage")
        assert sup.pids()["steady"] == first["steady"] and _alive(first["steady"])
        assert sup.pids()["cron"] != first["cron"]
    finally:
        sup.stop(signal.SIGTERM)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "embedded_redis.py"), "stop", str(redis_dir)],
                       check=False)
        shutil.rmtree(redis_dir, ignore_errors=True)
