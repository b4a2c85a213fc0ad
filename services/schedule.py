"""When a campaign may start and when its chance has passed: OnTime holds its time, Spread its days.

One source of truth for the transition table (services/campaigns.py), the dispatch tick and
allowance (services/dispatch.py) and the pages (issue 17):

- An OnTime campaign starts at `start_at`, never earlier. Its *start window* runs from `start_at`
  to the end of the workspace's sending window on that local day (when `start_at` falls after the
  day's window, the next day's window); a campaign that could not start inside it (approved late,
  or waiting for a manual Start) is Expired instead of sending hours later.
- A Spread campaign starts on its first day and its window ends with its last local day.

Every function takes `now` (UTC; default: the clock) so tests drive time without patching it.
"""
from datetime import UTC, date, datetime, time, timedelta

from models import Campaign, Workspace, utcnow
from models.states import Mode
from services import timefmt


def _hm(value):
    hours, minutes = (int(x) for x in value.split(":"))
    return hours, minutes


def local_at(day, hhmm, tz):
    """The UTC instant of local `hhmm` on `day` ("24:00" = the next midnight)."""
    hours, minutes = _hm(hhmm)
    extra = timedelta(days=1) if hours >= 24 else timedelta(0)
    moment = datetime.combine(day + extra, time(hours % 24, minutes), tzinfo=tz)
    return moment.astimezone(UTC)


def window_bounds(workspace, day):
    """(start, end) in UTC of the workspace's sending window on local `day`."""
    tz = timefmt.zone(workspace.timezone)
    return local_at(day, workspace.window_start, tz), local_at(day, workspace.window_end, tz)


def today(workspace: Workspace, now: datetime | None = None) -> date:
    return timefmt.local(now or utcnow(), workspace.timezone).date()


def start_deadline(campaign):
    """The end of an OnTime campaign's start window (None when it has no start time)."""
    if campaign.mode != Mode.ON_TIME or campaign.start_at is None:
        return None
    workspace = campaign.workspace
    day = timefmt.local(campaign.start_at, workspace.timezone).date()
    _, end = window_bounds(workspace, day)
    if campaign.start_at >= end:  # after that day's window: the next day's window is its chance
        _, end = window_bounds(workspace, day + timedelta(days=1))
    return end


def not_yet(campaign: Campaign, now: datetime | None = None) -> bool:
    """Is it too early for this campaign to send anything (OnTime before start_at, Spread before day 1)?"""
    now = now or utcnow()
    if campaign.mode == Mode.ON_TIME:
        return campaign.start_at is None or campaign.start_at > now
    if campaign.mode == Mode.SPREAD:
        return campaign.spread_first_day is None or campaign.spread_first_day > today(campaign.workspace, now)
    return False


def window_over(campaign: Campaign, now: datetime | None = None) -> bool:
    """Has the campaign's chance to start passed (OnTime's start window, Spread's last day)?"""
    now = now or utcnow()
    if campaign.mode == Mode.ON_TIME:
        deadline = start_deadline(campaign)
        return deadline is not None and now >= deadline
    if campaign.mode == Mode.SPREAD:
        return campaign.spread_last_day is not None and campaign.spread_last_day < today(campaign.workspace, now)
    return False


def spread_over(campaign: Campaign, now: datetime | None = None) -> bool:
    """A Spread campaign whose last day has ended (its unsent recipients expire)."""
    return campaign.mode == Mode.SPREAD and window_over(campaign, now)


def start_phrase(campaign: Campaign, now: datetime | None = None) -> str | None:
    """"starts at 14:00 Europe/Berlin, in 3 h" for a scheduled campaign, else None."""
    now = now or utcnow()
    if campaign.mode == Mode.ON_TIME and campaign.start_at and campaign.start_at > now:
        at = campaign.start_at
    elif campaign.mode == Mode.SPREAD and not_yet(campaign, now) and campaign.spread_first_day:
        at = max(window_bounds(campaign.workspace, campaign.spread_first_day)[0],
                 local_at(campaign.spread_first_day, "00:00", timefmt.zone(campaign.workspace.timezone)))
    else:
        return None
    tz_name = campaign.workspace.timezone
    moment, day = timefmt.local(at, tz_name), today(campaign.workspace, now)
    when = ("" if moment.date() == day else "tomorrow " if moment.date() == day + timedelta(days=1)
            else f"on {moment:%Y-%m-%d} ")
    return f"starts {when}at {moment:%H:%M} {timefmt.zone_label(tz_name)}, {timefmt.relative(at, now)}"
