"""Times for people: stored UTC instants shown in the workspace's time zone, with its name.

One place for every page (issue 17): `local()` converts, `clock()` writes "2026-11-28 14:00
Europe/Berlin", `html_datetime()` gives the machine-readable `<time datetime>` value (valid HTML:
seconds, no microseconds, `Z` for UTC), `relative()` says "in 3 h", `duration()` "about 3 h 20 min"
and `day_clock()` "tomorrow 10:40 Europe/Berlin". The API keeps UTC ISO-8601; only pages use these.
"""
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models import utcnow


def zone(name) -> tzinfo:
    """The ZoneInfo of `name`, UTC when empty or unknown (a page never fails on a bad zone)."""
    if not name or name == "UTC":
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def zone_label(name) -> str:
    return "UTC" if zone(name) is UTC else str(name)


def _aware(dt):
    """An aware datetime from a datetime (naive = UTC) or an ISO-8601 string (cached JSON)."""
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt.replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def local(dt, tz_name):
    """`dt` (UTC, naive = UTC) in the zone `tz_name`."""
    return _aware(dt).astimezone(zone(tz_name))


def html_datetime(dt) -> str:
    """The `<time datetime>` value: UTC, whole seconds, `Z` (e.g. 2026-11-28T10:00:00Z)."""
    return _aware(dt).astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock(dt, tz_name, *, seconds=False, millis=False) -> str:
    """"2026-11-28 14:00 Europe/Berlin" (with :ss or :ss.mmm on request)."""
    moment = local(dt, tz_name)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds or millis else "%Y-%m-%d %H:%M")
    if millis:
        text += f".{moment.microsecond // 1000:03d}"
    return f"{text} {zone_label(tz_name)}"


def duration(seconds) -> str:
    """A span in words: "about 3 h 20 min", "about 2 days 4 h", "under a minute"."""
    seconds = max(int(round(float(seconds))), 0)
    if seconds < 60:
        return "under a minute"
    minutes = (seconds + 59) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"about {days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"about {hours} h" + (f" {mins} min" if mins else "")
    return f"about {mins} min"


def relative(dt, now=None) -> str:
    """"in 3 h", "in 25 min", "5 min ago" (rounded to the largest unit that matters)."""
    delta = _aware(dt) - _aware(now or utcnow())
    future = delta >= timedelta(0)
    secs = abs(delta.total_seconds())
    if secs < 60:
        return "in under a minute" if future else "just now"
    minutes = int(secs // 60)
    if minutes < 60:
        text = f"{minutes} min"
    elif minutes < 48 * 60:
        hours, mins = divmod(minutes, 60)
        text = f"{hours} h" + (f" {mins} min" if mins and hours < 10 else "")
    else:
        text = f"{minutes // (24 * 60)} days"
    return f"in {text}" if future else f"{text} ago"


def day_clock(dt, tz_name, now=None) -> str:
    """"today 10:40 Europe/Berlin", "tomorrow 10:40 Europe/Berlin" or "2026-12-01 10:40 Europe/Berlin"."""
    moment, today = local(dt, tz_name), local(now or utcnow(), tz_name).date()
    if moment.date() == today:
        words = "today"
    elif moment.date() == today + timedelta(days=1):
        words = "tomorrow"
    else:
        words = moment.strftime("%Y-%m-%d")
    return f"{words} {moment:%H:%M} {zone_label(tz_name)}"


def utc_iso(dt) -> str | None:
    """The API's form: UTC ISO-8601 with `Z`, whole seconds (None stays None)."""
    return html_datetime(dt) if isinstance(dt, datetime) else None
