"""The scheduler lease: of the `rq cron` schedulers running on several hosts, the one holding this
Redis key enqueues the periodic jobs; the others stand by and take over when it expires.

The value names the holder (host, pid, since when); the holder renews it every third of
SCHEDULER_LEASE_SECONDS with a compare-and-expire script, so a paused or partitioned holder that
lost it can never renew someone else's lease. A holder that dies stops renewing; a standby takes
the key within SCHEDULER_LEASE_SECONDS plus one renewal interval (≤ 8 s by default).
"""
import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime

log = logging.getLogger("mc.scheduler")

LEASE_KEY = "mc:scheduler:lease"

# KEYS[1] = lease key, ARGV[1] = our value, ARGV[2] = ttl in ms
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class SchedulerLease:
    """One scheduler's view of the lease. `hold()` is called before each round of enqueues."""

    def __init__(self, connection, seconds, name=None):
        self.connection = connection
        self.ttl_ms = int(float(seconds) * 1000)
        self.renew_every = max(float(seconds) / 3, 0.2)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.value = None   # set while we hold it

    @property
    def held(self):
        return self.value is not None

    def hold(self):
        """Renew the lease when we hold it, try to take it when not; True when we hold it now."""
        if self.value is not None:
            if self.connection.eval(_RENEW, 1, LEASE_KEY, self.value, self.ttl_ms):
                return True
            log.warning("[scheduler-lease] %s lost the lease (expired or taken over); standing by", self.name)
            self.value = None
        value = json.dumps({"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                            "since": datetime.now(UTC).isoformat(timespec="seconds")})
        if self.connection.set(LEASE_KEY, value, nx=True, px=self.ttl_ms):
            self.value = value
            log.warning("[scheduler-lease] %s holds the lease: this scheduler enqueues the periodic jobs",
                        self.name)
            return True
        return False

    def release(self):
        """Give the lease up at once (clean shutdown), so a standby takes over without waiting."""
        if self.value is not None:
            self.connection.eval(_RELEASE, 1, LEASE_KEY, self.value)
            self.value = None


def current(connection):
    """Who schedules now: {"name", "host", "pid", "since", "expires_in"} or None (nobody holds it)."""
    with connection.pipeline() as pipe:
        pipe.get(LEASE_KEY)
        pipe.pttl(LEASE_KEY)
        raw, pttl = pipe.execute()
    if raw is None:
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        return None
    holder["since"] = datetime.fromisoformat(holder["since"]) if holder.get("since") else None
    holder["expires_in"] = round(pttl / 1000, 1) if pttl and pttl > 0 else None
    return holder
