"""Stop or kill a process with everything under it, for the tests and benchmarks that start our
processes. A process group is not enough: RQ puts each work horse in a group of its own
(os.setpgrp), so killing the worker's group leaves the horse running its job."""
import contextlib
import os
import signal
import subprocess


def parent_of(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def descendants(root: int) -> list[int]:
    """Every process under `root`, whatever its process group or session: RQ puts each work horse
    in a group of its own (os.setpgrp), so killing the worker's group leaves the horse running."""
    parents = {int(p): parent_of(p) for p in os.listdir("/proc") if p.isdigit()}
    found: list[int] = []
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(frontier)
    return found


def kill_tree(proc: subprocess.Popen | None) -> None:
    """SIGKILL `proc` and everything under it at once, as when its host dies; then reap it."""
    if proc is None:
        return
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def stop_tree(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Stop `proc` warmly (its signal handlers run), then kill what is left of its tree."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:   # a group leader (start_new_session): its group too
                os.killpg(proc.pid, sig)
            else:
                os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    kill_tree(proc)

