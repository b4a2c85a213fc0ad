"""Is the SMS Core known to be down? One shared record (a `system_state` row), so every web and
worker process agrees: dispatch claims no new batches while it is set, the campaign page says so.

The first process that sees the Core fail records the outage and logs one `[core-down]` line; the
first that sees it answer again clears it and logs one `[core-up]` line with the duration —
conditional INSERT / DELETE decide who, so a poll every 2 s logs nothing more.
"""
import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from extensions import affected_rows, db, dialect_insert
from models import SystemState, utcnow

log = logging.getLogger("mc.core")
KEY = "core.outage"


def _insert_ignore():
    return dialect_insert(SystemState)


def current() -> dict[str, Any] | None:
    """{"since": datetime, "reason": str} while the Core is known down, else None."""
    value = db.session.scalar(select(SystemState.value).where(SystemState.key == KEY))
    if not value:
        return None
    record = json.loads(value)
    return {"since": datetime.fromisoformat(record["since"]), "reason": record["reason"]}


def mark_down(reason: object, now: datetime | None = None) -> bool:
    """Record an outage unless one is recorded already; True for the process that recorded it."""
    now = now or utcnow()
    value = json.dumps({"since": now.isoformat(), "reason": str(reason)[:300]})
    db.session.rollback()
    stmt = _insert_ignore().values(key=KEY, value=value, updated_at=now).on_conflict_do_nothing(
        index_elements=["key"]).returning(SystemState.key)  # a row back only for the one who inserted
    started = db.session.execute(stmt).first() is not None
    db.session.commit()
    if started:
        log.error("[core-down] the SMS Core is unavailable: %s — no new batches are claimed until it answers",
                  str(reason)[:300])
    return started


def mark_up(now: datetime | None = None) -> bool:
    """Clear a recorded outage (cheap read when there is none); True for the process that cleared it."""
    value = db.session.scalar(select(SystemState.value).where(SystemState.key == KEY))
    if value is None:
        db.session.rollback()
        return False
    ended = affected_rows(db.session.execute(
        delete(SystemState).where(SystemState.key == KEY, SystemState.value == value)))
    db.session.commit()
    if ended:
        since = datetime.fromisoformat(json.loads(value)["since"])
        seconds = ((now or utcnow()) - since).total_seconds()
        log.warning("[core-up] the SMS Core answers again after %.0f s (down since %s)", seconds,
                    since.strftime("%Y-%m-%d %H:%M:%S UTC"))
    return bool(ended)
