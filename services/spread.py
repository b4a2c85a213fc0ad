"""The Spread day plan: every recipient of a Spread campaign gets its send day, evenly.

Recipients are walked in the order of the unique index (campaign_id, number) in batches and
assigned round-robin over the window's days, so day sizes differ by at most one. The plan is a
deterministic function of the recipients and the window: re-running it (after a crash, or after
the window changed) gives the same result, so it needs no progress bookkeeping.
"""
from datetime import date, timedelta

from sqlalchemy import text, update

from extensions import affected_rows, db
from models import Campaign
from services.errors import DomainError

BATCH = 50_000


def window_days(first_day, last_day):
    if first_day is None or last_day is None:
        raise DomainError("A Spread campaign needs its first and last day.", code="spread_window_missing")
    if last_day < first_day:
        raise DomainError("The Spread window ends before it starts.", code="spread_window_invalid")
    return (last_day - first_day).days + 1


def day_for(rank, first_day, days):
    """The send day of the recipient with 0-based `rank` (round-robin)."""
    return first_day + timedelta(days=rank % days)


def day_sizes(total, days):
    """How many recipients each day gets: sizes differ by at most one."""
    return [total // days + (1 if i < total % days else 0) for i in range(days)]


def plan(campaign, batch=BATCH, commit=True):
    """Assign spread_day to every recipient of `campaign`; returns the number of rows planned."""
    days = window_days(campaign.spread_first_day, campaign.spread_last_day)
    first = campaign.spread_first_day
    pg = db.session.get_bind().dialect.name == "postgresql"
    done, after = 0, ""
    while True:
        last = db.session.execute(text(
            "SELECT number FROM recipients WHERE campaign_id = :c AND number > :after "
            "ORDER BY number LIMIT 1 OFFSET :skip"), {"c": campaign.id, "after": after, "skip": batch - 1}).scalar()
        upper = last if last is not None else None
        params = {"c": campaign.id, "after": after, "upper": upper or "", "base": done, "days": days}
        bound = "AND number <= :upper" if upper is not None else ""
        batch_sql = (f"SELECT id, row_number() OVER (ORDER BY number) AS rn FROM recipients "
                     f"WHERE campaign_id = :c AND number > :after {bound}")
        if pg:
            result = db.session.execute(text(
                f"UPDATE recipients r "
                f"SET spread_day = CAST(:first AS date) + CAST((:base + b.rn - 1) % :days AS integer) "
                f"FROM ({batch_sql}) b WHERE r.id = b.id"), {**params, "first": first})
        else:
            result = db.session.execute(text(
                f"UPDATE recipients SET spread_day = date(:first, '+' || ((:base + b.rn - 1) % :days) || ' days') "
                f"FROM ({batch_sql}) b WHERE recipients.id = b.id"), {**params, "first": first.isoformat()})
        done += affected_rows(result)
        if commit:
            db.session.commit()
        if upper is None:
            return done
        after = upper


def plan_summary(campaign):
    """Rows per day (for the review step); one grouped query over the campaign's index range."""
    rows = db.session.execute(text(
        "SELECT spread_day, count(*) FROM recipients WHERE campaign_id = :c GROUP BY spread_day ORDER BY spread_day"),
        {"c": campaign.id}).all()
    return [(d if isinstance(d, date) or d is None else date.fromisoformat(d), n) for d, n in rows]


def expire_past_days(campaign_id: int, today: date) -> int:
    """Each recipient has exactly one day (issue 17): queued recipients whose day is before `today`
    (the workspace's local date) expire, counted in the campaign's expired_count. Idempotent; the
    caller holds the campaign row lock and commits. Returns how many expired now."""
    n = affected_rows(db.session.execute(text(
        "UPDATE recipients SET state = 'expired' WHERE campaign_id = :c AND state = 'queued' "
        "AND spread_day IS NOT NULL AND spread_day < :today"), {"c": campaign_id, "today": today}))
    if n:
        db.session.execute(update(Campaign).where(Campaign.id == campaign_id).values(
            queued_count=Campaign.queued_count - n, expired_count=Campaign.expired_count + n))
    return n
