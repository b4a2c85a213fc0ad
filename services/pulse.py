"""Live Pulse counters: messages sent / delivered / failed per workspace and minute, in Redis.

Written by dispatch as results and delivery reports are applied; read by the dashboard for "the
last minute" without touching recipient rows. Keys expire after two hours.

"The last minute" is a sliding 60-second window, estimated from two fixed minutes: the current one
plus the previous one weighted by the part of it still inside the window. Reading the current
calendar minute alone dropped the pulse to zero every time the clock passed :00.
"""
import time

from extensions import redis_connection

TTL = 2 * 3600
KINDS = ("sent", "delivered", "failed")


def _key(workspace_id, minute):
    return f"mc:pulse:{workspace_id}:{minute}"


def record(workspace_id: int, now: float | None = None, **counts: int) -> None:
    """Add counts (sent=, delivered=, failed=) to the current minute of a workspace."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    key = _key(workspace_id, int((now or time.time()) // 60))
    pipe = redis_connection().pipeline()
    for kind, value in counts.items():
        pipe.hincrby(key, kind, value)
    pipe.expire(key, TTL)
    pipe.execute()


def last_minute(workspace_ids, now=None):
    """Counts over the 60 seconds before `now`, summed over the given workspaces (rounded)."""
    now = now or time.time()
    current = int(now // 60)
    previous_weight = 1.0 - (now % 60) / 60.0
    pipe = redis_connection().pipeline()
    for workspace_id in workspace_ids:
        pipe.hgetall(_key(workspace_id, current - 1))
        pipe.hgetall(_key(workspace_id, current))
    totals = dict.fromkeys(KINDS, 0.0)
    for index, row in enumerate(pipe.execute()):
        weight = previous_weight if index % 2 == 0 else 1.0
        for kind, value in row.items():
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind in totals:
                totals[kind] += weight * int(value)
    return {kind: round(value) for kind, value in totals.items()}
