"""Live Pulse counters: messages sent / delivered / failed per workspace and minute, in Redis.

Written by dispatch as results and delivery reports are applied; read by the dashboard for "the
last minute" without touching recipient rows. Keys expire after two hours.
"""
import time

from extensions import redis_connection

TTL = 2 * 3600
KINDS = ("sent", "delivered", "failed")


def _key(workspace_id, minute):
    return f"mc:pulse:{workspace_id}:{minute}"


def record(workspace_id, **counts):
    """Add counts (sent=, delivered=, failed=) to the current minute of a workspace."""
    counts = {k: v for k, v in counts.items() if v}
    if not counts:
        return
    key = _key(workspace_id, int(time.time() // 60))
    pipe = redis_connection().pipeline()
    for kind, value in counts.items():
        pipe.hincrby(key, kind, value)
    pipe.expire(key, TTL)
    pipe.execute()


def last_minutes(workspace_ids, minutes=1, now=None):
    """Summed counts over the last `minutes` full-or-current minutes for the given workspaces."""
    current = int((now or time.time()) // 60)
    pipe = redis_connection().pipeline()
    for workspace_id in workspace_ids:
        for minute in range(current - minutes + 1, current + 1):
            pipe.hgetall(_key(workspace_id, minute))
    totals = dict.fromkeys(KINDS, 0)
    for row in pipe.execute():
        for kind, value in row.items():
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind in totals:
                totals[kind] += int(value)
    return totals
