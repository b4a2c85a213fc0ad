"""The pre-flight estimate (issue 17, item 6): what a campaign will bill and how long it will take.

`estimate(campaign)` answers {"parts", "duration_seconds", "finishes_at", ...}: the SMS parts to be
billed (recipients still to send × parts per message) and, from the Core's throughput (the sum of
its up channels' TPS limits from /v1/health, or CAMPAIGN_NOMINAL_RATE_PER_HOUR when the Core does
not answer), the workspace's daily sending window and the campaign's daily limit, when the last
message goes out. The send is walked day by day in the workspace's time zone from its start
(now, start_at, or the Spread's first day); a Spread sends each day's share on its day. The Core's
TPS counts SMS parts, so a 2-part text goes out at half the message rate. The estimate assumes the
campaign has the Core's throughput to itself: it is the earliest finish, not a promise.

`encoding_hints(text)`: the characters that force UCS-2 (70 instead of 160 characters per part),
each with its GSM-7 replacement where one exists; `use_gsm7()` saves the replaced text.
"""
import math
from datetime import timedelta

from flask import current_app

from models import utcnow
from models.states import Mode
from services import schedule, segments, timefmt
from services.campaign_drafts import persistence as drafts
from services.campaign_drafts import steps as draft_steps
from services.diagnostics import core_status
from services.errors import DomainError

# Typographic characters with a GSM-7 look-alike (the rest of UCS-2, e.g. emoji, has none).
GSM7_REPLACEMENTS = {
    "\u2019": "'", "\u2018": "'", "\u201a": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"', "\u2033": '"',
    "\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2010": "-", "\u2011": "-",
    "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ",
}
MAX_DAYS = 3660  # an estimate beyond ten years says "too slow" instead of walking further


def encoding_hints(text):
    """[{"char", "replacement" (or None)}] for each distinct character that makes `text` UCS-2,
    in order of first appearance; [] for a GSM-7 text."""
    text = text or ""
    if segments.encoding_of(text) == segments.GSM7:
        return []
    seen: dict[str, str | None] = {}
    for char in text:
        if char not in seen and char not in segments.GSM7_BASIC and char not in segments.GSM7_EXTENSION:
            seen[char] = GSM7_REPLACEMENTS.get(char)
    return [{"char": c, "replacement": r} for c, r in seen.items()]


def replaced(text):
    """`text` with every replaceable UCS-2 character replaced by its GSM-7 look-alike."""
    return "".join(GSM7_REPLACEMENTS.get(c, c) for c in (text or ""))


def highlighted(text):
    """[(chunk, forces_ucs2, replacement)] for the review step's preview (the template escapes)."""
    out: list[tuple[str, bool, str | None]] = []
    for char in text or "":
        forced = char not in segments.GSM7_BASIC and char not in segments.GSM7_EXTENSION
        if out and not forced and not out[-1][1]:
            out[-1] = (out[-1][0] + char, False, None)
        else:
            out.append((char, forced, GSM7_REPLACEMENTS.get(char) if forced else None))
    return out


def use_gsm7(workspace, campaign_id, membership, user):
    """Save the draft's text with the GSM-7 replacements; returns (campaign, before, after) SegmentInfo."""
    campaign = draft_steps.get_editable(workspace, campaign_id, membership, user)
    before_text = campaign.message_text or ""
    after_text = replaced(before_text)
    if after_text == before_text:
        raise DomainError("Nothing to replace: no character of this text has a GSM-7 look-alike.",
                          code="nothing_to_replace", status=409)
    after = segments.count(after_text)
    if after.segments > segments.MAX_SEGMENTS:
        raise DomainError(f"With the replacements the text needs {after.segments} SMS parts (at most "
                          f"{segments.MAX_SEGMENTS}); shorten it first.", code="text_too_long")
    before = segments.count(before_text)
    campaign = drafts.save_text(workspace, campaign_id, after_text, membership, user)
    return campaign, before, after


# --- the estimate ---------------------------------------------------------------------------

def core_tps(core=None):
    """(messages-parts per second, source): the Core's channels, else the nominal rate."""
    core = core if core is not None else core_status()
    tps = core.get("tps") if core.get("ok") else None
    if tps:
        return float(tps), "core"
    return float(current_app.config["CAMPAIGN_NOMINAL_RATE_PER_HOUR"]) / 3600.0, "nominal"


def _remaining(campaign):
    done = (campaign.sent_count or 0) + (campaign.failed_count or 0) + (campaign.expired_count or 0)
    return max(int(campaign.recipients_count or 0) - int(done), 0)


def _start(campaign, now):
    if campaign.status == "Sending" or campaign.mode in (Mode.ON_DEMAND, Mode.TRIGGER):
        return now
    if campaign.mode == Mode.ON_TIME and campaign.start_at:
        return max(now, campaign.start_at)
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day:
        tz = timefmt.zone(campaign.workspace.timezone)
        return max(now, schedule.local_at(campaign.spread_first_day, "00:00", tz))
    return now


def _open_seconds(campaign, day, since):
    """(opens, seconds open) of the sending window on local `day`, from `since` on."""
    workspace = campaign.workspace
    if campaign.mode == Mode.TRIGGER and campaign.ignore_daily_window:
        opens, closes = schedule.local_at(day, "00:00", timefmt.zone(workspace.timezone)), None
        closes = opens + timedelta(days=1)
    else:
        opens, closes = schedule.window_bounds(workspace, day)
    opens = max(opens, since)
    return opens, max((closes - opens).total_seconds(), 0.0)


def estimate(campaign, now=None, core=None):
    """{"parts", "recipients", "parts_per_message", "rate_per_second", "rate_source", "duration_seconds",
    "finishes_at", "starts_at", "words"}; duration and finish are None when nothing can be said."""
    now = now or utcnow()
    info = segments.count(campaign.message_text)
    remaining = _remaining(campaign)
    out = {"recipients": remaining, "parts_per_message": info.segments, "parts": remaining * info.segments,
           "rate_per_second": None, "rate_source": None, "duration_seconds": None, "finishes_at": None,
           "starts_at": None, "words": None, "left_over": 0}
    if campaign.mode == Mode.TRIGGER:
        out["words"] = "Trigger campaigns send each pushed number at once; there is no list to estimate."
        return out
    if not remaining or not info.segments:
        out["words"] = "Nothing to send." if not remaining else "Write the message text to see an estimate."
        return out
    tps, source = core_tps(core)
    rate = tps / info.segments  # messages per second
    out.update(rate_per_second=round(rate, 3), rate_source=source)
    start = _start(campaign, now)
    finish, left = _walk(campaign, remaining, rate, start)
    out["left_over"] = left
    if finish is None:
        out["words"] = "It cannot finish: the sending window is empty, the daily limit is 0 or it takes over ten years."
        return out
    zone = campaign.workspace.timezone
    out.update(starts_at=start, finishes_at=finish, duration_seconds=int(round((finish - start).total_seconds())))
    out["words"] = (f"{timefmt.duration(out['duration_seconds'])}, finishing "
                    f"{timefmt.day_clock(finish, zone, now)}")
    if left:
        out["words"] += f"; {left:,} recipients do not fit their Spread day and would expire"
    return out


def _walk(campaign, remaining, rate, start):
    """(when the last message goes out, how many are left) sending `remaining` messages at `rate`/s
    inside the daily windows, under the daily limit and (Spread) each day's share. Left > 0: a Spread
    whose days cannot hold its recipients (they expire), or an estimate past MAX_DAYS."""
    workspace = campaign.workspace
    day = schedule.today(workspace, start)
    limit = campaign.daily_limit or None
    spread_days = None
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day and campaign.spread_last_day:
        day = max(day, campaign.spread_first_day)
        spread_days = (campaign.spread_last_day - day).days + 1
        if spread_days <= 0:
            return None, remaining
    finish, expired = None, 0
    for _ in range(MAX_DAYS):
        opens, seconds = _open_seconds(campaign, day, start)
        share = remaining if spread_days is None else math.ceil(remaining / spread_days)
        can = max(min(share, int(seconds * rate), limit or share), 0)
        if can:
            finish = opens + timedelta(seconds=can / rate)
        remaining -= can
        if spread_days is not None:
            expired += share - can  # a day's unsent share expires: each recipient has one day
            remaining -= share - can
            spread_days -= 1
            if spread_days == 0:
                return finish, expired
        if remaining <= 0:
            return finish, 0
        day += timedelta(days=1)
    return None, remaining
