"""Real processes for the several-hosts tests: a Redis master + replica + Sentinel on free ports, and
a Procfile run by tools/supervise.py exactly as ./run.sh runs it (restarts included)."""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import redis

from tools.proctree import descendants, kill_tree, parent_of, stop_tree  # noqa: F401 - the tests' helpers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV_BIN = os.path.dirname(sys.executable)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class SentinelRedis:
    """Debian's redis-server as a master, a replica and a Sentinel (quorum 1) in `directory`."""

    SERVICE = "mymaster"

    def __init__(self, directory):
        self.directory = directory
        self.ports = {"master": free_port(), "replica": free_port(), "sentinel": free_port()}
        self.procs: dict = {}

    @property
    def url(self):
        return f"redis+sentinel://127.0.0.1:{self.ports['sentinel']}/{self.SERVICE}/0"

    def _server(self, name, *extra):
        work = os.path.join(self.directory, name)
        os.makedirs(work, exist_ok=True)
        args = ["redis-server", "--port", str(self.ports[name]), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", work, "--logfile", os.path.join(work, "redis.log"), *extra]
        self.procs[name] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.ports[name], socket_connect_timeout=1)
        wait_until(lambda: _pings(client), 10, f"redis {name}")

    def start(self):
        self._server("master")
        self._server("replica", "--replicaof", "127.0.0.1", str(self.ports["master"]))
        work = os.path.join(self.directory, "sentinel")
        os.makedirs(work, exist_ok=True)
        conf = os.path.join(work, "sentinel.conf")
        with open(conf, "w", encoding="ascii") as fh:
            fh.write(f"port {self.ports['sentinel']}\nbind 127.0.0.1\ndir {work}\n"
                     f"logfile {os.path.join(work, 'sentinel.log')}\n"
                     f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.ports['master']} 1\n"
                     f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                     f"sentinel failover-timeout {self.SERVICE} 5000\n"
                     f"sentinel parallel-syncs {self.SERVICE} 1\n")
        self.procs["sentinel"] = subprocess.Popen(["redis-server", conf, "--sentinel"],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sentinel = redis.Redis(port=self.ports["sentinel"], socket_connect_timeout=1)
        wait_until(lambda: _pings(sentinel), 10, "redis sentinel")
        replica = redis.Redis(port=self.ports["replica"])
        wait_until(lambda: replica.info("replication").get("master_link_status") == "up", 20, "replication")
        wait_until(lambda: self.master_port() == self.ports["master"], 10, "sentinel to know the master")
        return self

    def master_port(self):
        try:
            found = redis.Redis(port=self.ports["sentinel"], socket_connect_timeout=1).execute_command(
                "SENTINEL", "get-master-addr-by-name", self.SERVICE)
        except redis.RedisError:
            return None
        return int(found[1]) if found else None

    def kill_master(self):
        proc = self.procs.pop("master")
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _pings(client):
    try:
        return client.ping()
    except (redis.RedisError, OSError):
        return False


class Procfile:
    """`tools/supervise.py -f <procfile>` with the given environment (and optionally a command
    prefix such as `unshare -m …`), output to a log file."""

    def __init__(self, directory, name, lines, env, prefix=()):
        self.path = os.path.join(directory, f"{name}.Procfile")
        with open(self.path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(f"{proc}: {command}" for proc, command in lines.items()) + "\n")
        self.log_path = os.path.join(directory, f"{name}.log")
        self.env, self.prefix = env, list(prefix)
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the supervisor's lifetime
        self.proc = subprocess.Popen([*self.prefix, sys.executable, os.path.join(ROOT, "tools", "supervise.py"),
                                      "-f", self.path, "--stop-timeout", "5", "--max-backoff", "2"],
                                     cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        return self

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        kill_tree(self.proc)   # what a supervisor stopped too late left behind (work horses among it)


def venv_env(**extra):
    """The environment for our processes: the venv's bin first on PATH (rq, gunicorn)."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update({k: str(v) for k, v in extra.items()})
    return env
