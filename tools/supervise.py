"""A small process supervisor for ./run.sh: runs every line of a Procfile, restarts a process that
dies (with a log line and back-off) while the others keep running, and stops everything —
children and grandchildren included — on Ctrl-C (SIGINT) or SIGTERM.

honcho stops every process when one exits, so a killed worker or `rq cron` exiting on a Redis
blip took the web process and the Core down with it. Here each process runs in its own session
(its own process group), and this supervisor is a Linux "child subreaper": a grandchild whose
parent died (an RQ work-horse, a gunicorn worker) is re-parented here instead of to init, so
shutdown can find and stop it — no orphans. When a supervised process dies, every child of ours
that is not a supervised process is such an orphan and is killed before the restart (so a program
that daemonizes a helper of its own does not belong under this supervisor).

    python tools/supervise.py [-f Procfile] [--stop-timeout 15] [--max-backoff 30]

Procfile lines are `name: command`; the command runs with /bin/sh, so `${VAR}` expands from the
environment. Output lines are prefixed with the time and the process name, as honcho does.
"""
import argparse
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
LINE_RE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
HEALTHY_AFTER = 30.0  # a process that ran this long restarts without back-off


def parse_procfile(path):
    """[(name, command)] in file order; blank lines and # comments are skipped."""
    entries: list = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = LINE_RE.match(line)
            if not match:
                raise SystemExit(f"{path}:{number}: expected 'name: command', got {line!r}")
            if match.group(1) in {name for name, _ in entries}:
                raise SystemExit(f"{path}:{number}: the process name {match.group(1)!r} is used twice")
            entries.append((match.group(1), match.group(2)))
    if not entries:
        raise SystemExit(f"{path}: no processes")
    return entries


class Supervisor:
    def __init__(self, entries, *, stop_timeout=15.0, min_backoff=1.0, max_backoff=30.0, out=sys.stdout):
        self.entries = entries
        self.stop_timeout = stop_timeout
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.out = out
        self.width = max([len(name) for name, _ in entries] + [len("supervise")])
        self.procs = {}        # name -> Popen
        self.started_at = {}   # name -> monotonic start
        self.backoff = {name: min_backoff for name, _ in entries}
        self.restart_at = {}   # name -> monotonic time of the next start
        self.signals = 0
        self.lock = threading.Lock()

    # --- output ---------------------------------------------------------------------------------
    def say(self, name, text):
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name.ljust(self.width)} | {text}\n")
            self.out.flush()

    def _pump(self, name, stream):
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip("\n"))
        stream.close()

    # --- processes ------------------------------------------------------------------------------
    def start(self, name, command):
        proc = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name], self.started_at[name] = proc, time.monotonic()
        threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True).start()
        self.say("supervise", f"started {name} (pid {proc.pid})")

    def _reap_orphans(self):
        """Collect exited grandchildren re-parented to us (never a supervised child: those are polled)."""
        supervised = {p.pid for p in self.procs.values()}
        for pid in _children(os.getpid()):
            if pid in supervised:
                continue
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _kill_leftovers(self, names):
        """A dead process's children were re-parented to us (we are a subreaper): they must not run on
        beside its replacement — e.g. an RQ work-horse still running the job that recovery is about
        to hand to another worker, or gunicorn workers of a killed master. Every child of ours that
        is not a supervised process is such an orphan."""
        supervised = {p.pid for p in self.procs.values()}
        leftovers = [pid for pid in _children(os.getpid()) if pid not in supervised and _alive(pid)]
        for pid in leftovers:
            for victim in [pid] + _descendants(pid):
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if leftovers:
            self.say("supervise", f"killed {len(leftovers)} leftover process(es) of {names}: {leftovers}")

    def check(self):
        """One supervision step: notice exits, kill their orphans, schedule and perform restarts."""
        now = time.monotonic()
        exited = []
        for name, _ in self.entries:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                ran = now - self.started_at[name]
                if ran >= HEALTHY_AFTER:
                    self.backoff[name] = self.min_backoff
                delay = self.backoff[name]
                self.say("supervise", f"{name} (pid {proc.pid}) exited with {_describe(proc.returncode)} after "
                                      f"{ran:.1f} s; restarting in {delay:.0f} s")
                self.backoff[name] = min(delay * 2, self.max_backoff)
                self.restart_at[name] = now + delay
                del self.procs[name]
                exited.append(name)
        if exited:
            self._kill_leftovers(" and ".join(exited))
        for name, command in self.entries:
            if name not in self.procs and now >= self.restart_at.get(name, 0):
                self.start(name, command)
        self._reap_orphans()

    def stop(self):
        """SIGTERM every process group, wait up to stop_timeout, then SIGKILL what is left — including
        grandchildren re-parented to us (work-horses in their own sessions)."""
        self.say("supervise", "stopping every process")
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and self.signals < 2:
            if all(p.poll() is not None for p in self.procs.values()) and not _children(os.getpid()):
                break
            self._reap_orphans()
            time.sleep(0.1)
        leftovers = [pid for pid in _descendants(os.getpid()) if _alive(pid)]
        for proc in self.procs.values():
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGKILL)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if leftovers:
            self.say("supervise", f"killed {len(leftovers)} process(es) that did not stop in {self.stop_timeout:.0f} s")
        for proc in self.procs.values():
            proc.wait()
        while True:  # reap every re-parented grandchild
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        self.say("supervise", "all processes stopped")

    def run(self):
        _become_subreaper()

        def on_signal(signum, frame):
            self.signals += 1
            if self.signals > 1:
                self.say("supervise", "second signal: killing everything now")

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not self.signals:
            self.check()
            time.sleep(0.2)
        self.stop()
        return 0


def _become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        return []


def _alive(pid):
    """Running (not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _descendants(pid):
    found = []
    for child in _children(pid):
        found.append(child)
        found.extend(_descendants(child))
    return found


def _signal_group(pid, signum):
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _describe(code):
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--procfile", default="Procfile")
    parser.add_argument("--stop-timeout", type=float, default=15.0,
                        help="seconds between SIGTERM and SIGKILL on shutdown")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="longest wait before a restart")
    args = parser.parse_args(argv)
    return Supervisor(parse_procfile(args.procfile), stop_timeout=args.stop_timeout,
                      max_backoff=args.max_backoff).run()


if __name__ == "__main__":
    sys.exit(main())
