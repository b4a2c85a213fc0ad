"""Parsing and validating each wizard step's values; the wizard pages and the API share every rule.

Spread campaigns also get `start_at` = the first day's sending-window start (UTC), so the list's
Start column and the dispatch tick see one start time for every scheduled mode.
"""
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from models import utcnow
from models.campaigns import MODES
from models.states import Mode
from services import segments, smpp
from services.campaign_drafts.steps import DEFAULT_DNPI, DEFAULT_DTON, approved_sender_revisions
from services.errors import DomainError

MAX_SPREAD_DAYS = 366
MAX_DAILY_LIMIT = 100_000_000


class InvalidFields(DomainError):
    """One or more fields are wrong; `fields` maps each field to a message the author can act on."""

    code = "invalid_fields"
    status = 400

    def __init__(self, fields):
        self.fields = dict(fields)
        super().__init__(" ".join(self.fields.values()))

# --- parsing helpers ---------------------------------------------------------------------

def _tz(workspace):
    return ZoneInfo(workspace.timezone or "UTC")


def today_in(workspace):
    return utcnow().astimezone(_tz(workspace)).date()


def _bool(value):
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "true", "on", "yes", "y")


def _blank(value):
    return value is None or (isinstance(value, str) and not value.strip())


def parse_local_datetime(value, workspace):
    """A datetime from a form (`YYYY-MM-DDTHH:MM`, workspace time zone) or from JSON (ISO-8601; an
    offset is honoured, a naive value is in the workspace time zone). Returned in UTC."""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip().replace(" ", "T")
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("Enter the start as date and time, e.g. 2026-05-04 09:30.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_tz(workspace))
    return parsed.astimezone(UTC)


def _date(value):
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError("Enter a date as YYYY-MM-DD.") from None


def local_input_value(dt, workspace):
    """A UTC datetime as the value of an <input type=datetime-local> in the workspace time zone."""
    return dt.astimezone(_tz(workspace)).strftime("%Y-%m-%dT%H:%M") if dt else ""


def window_start_utc(day, workspace):
    hours, minutes = (int(x) for x in workspace.window_start.split(":"))
    return datetime.combine(day, time(hours, minutes), tzinfo=_tz(workspace)).astimezone(UTC)


# --- validation per step -----------------------------------------------------------------

def validate_mode(mode, campaign=None):
    mode = (mode or "").strip()
    if mode not in MODES:
        raise InvalidFields({"mode": f"Choose a delivery mode: {', '.join(MODES)}."})
    if campaign is not None and mode == Mode.TRIGGER and campaign.recipients_count:
        raise InvalidFields({"mode": "A Trigger campaign starts empty, but this draft already has "
                                     f"{campaign.recipients_count} recipients. Clone it into a new "
                                     "campaign and choose Trigger there."})
    return mode


def validate_parameters(workspace, mode, values, current=None):
    """Check step 2's values for `mode`; returns the column values to store. Raises InvalidFields."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {"name": _parse_name(values, errors)}
    revision = _parse_sender_revision(workspace, values, errors)
    out["sender_revision_id"] = revision.id if revision else None
    out["message_text"] = _parse_text(values, errors)
    out["daily_limit"] = _parse_daily_limit(values, errors)
    out["auto_start"] = _bool(values.get("auto_start", True))
    out.update(_parse_schedule(workspace, mode, values, errors))
    if errors:
        raise InvalidFields(errors)
    if revision is not None and (current is None or current.sender_revision_id != revision.id):
        # A new sender: its SADDR/TON/NPI replace the old ones (step 3 may override them again).
        out.update(saddr=revision.saddr, ston=revision.ton, snpi=revision.npi)
        if current is None or current.dton is None:
            out.update(dton=DEFAULT_DTON, dnpi=DEFAULT_DNPI)
    return out


def _parse_name(values, errors):
    name = " ".join(str(values.get("name") or "").split())
    if not name:
        errors["name"] = "Give the campaign a name (up to 120 characters) that tells people what it is for."
    elif len(name) > 120:
        errors["name"] = f"The name is {len(name)} characters long; shorten it to 120."
    return name


def _parse_sender_revision(workspace, values, errors):
    """The approved sender revision chosen, or None (with the field's error)."""
    revision = None
    raw_revision = values.get("sender_revision_id")
    if _blank(raw_revision):
        errors["sender_revision_id"] = "Choose an approved sender name. None yet? Propose one under Sender names."
    else:
        try:
            revision_id = int(raw_revision)
        except (TypeError, ValueError):
            revision_id = None
        revision = next((r for r in approved_sender_revisions(workspace) if r.id == revision_id), None)
        if revision is None:
            errors["sender_revision_id"] = ("This sender name is not (or no longer) approved for new campaigns; "
                                            "choose one of the names offered.")
    return revision


def _parse_text(values, errors):
    text = str(values.get("text") if values.get("text") is not None else values.get("message_text") or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    info = segments.count(text)
    if not text.strip():
        errors["text"] = "Write the message text."
    elif info.segments > segments.MAX_SEGMENTS:
        limit = segments.MAX_SEGMENTS * segments.MULTI[info.encoding]
        errors["text"] = (f"The text needs {info.segments} SMS parts; the maximum is {segments.MAX_SEGMENTS} "
                          f"({limit} {info.encoding} units). Shorten it.")
    return text


def _parse_daily_limit(values, errors):
    raw_limit = values.get("daily_limit")
    if _blank(raw_limit):
        return None
    limit: int | None
    try:
        limit = int(str(raw_limit).strip()) if not isinstance(raw_limit, bool) else None
    except ValueError:
        limit = None
    if limit is None or limit < 1 or limit > MAX_DAILY_LIMIT:
        errors["daily_limit"] = "The daily limit is a whole number of messages above 0 — or leave it empty."
    return limit


def _parse_schedule(workspace, mode, values, errors):
    """The mode's scheduling columns: OnTime's start, Spread's window (and start), Trigger's window flag."""
    out: dict[str, Any] = {"start_at": None, "spread_first_day": None, "spread_last_day": None,
                           "ignore_daily_window": False}
    if mode == Mode.ON_TIME:
        out["start_at"] = _parse_start(workspace, values, errors)
    elif mode == Mode.SPREAD:
        first, last = _parse_spread_window(workspace, values, errors)
        out["spread_first_day"], out["spread_last_day"] = first, last
        if first:
            out["start_at"] = window_start_utc(first, workspace)
    elif mode == Mode.TRIGGER:
        out["ignore_daily_window"] = _bool(values.get("ignore_daily_window"))
    return out


def _parse_start(workspace, values, errors):
    """OnTime: the start, in the future (None with the field's error when missing or unreadable)."""
    raw = values.get("start_at")
    if _blank(raw):
        errors["start_at"] = f"Choose when to send (date and time in {workspace.timezone})."
        return None
    try:
        start = parse_local_datetime(raw, workspace)
    except ValueError as exc:
        errors["start_at"] = str(exc)
        return None
    if start <= utcnow():
        errors["start_at"] = f"The start must be in the future ({workspace.timezone} time)."
    return start


def _parse_spread_window(workspace, values, errors):
    """Spread: (first day, last day), each None when missing or unreadable; errors under the form's names."""
    first_raw = values.get("window_start", values.get("spread_first_day"))
    last_raw = values.get("window_end", values.get("spread_last_day"))
    today = today_in(workspace)
    first = _parse_window_day(first_raw, "window_start", "first", today, workspace, errors)
    last = _parse_window_day(last_raw, "window_end", "last", today, workspace, errors)
    if first and last and first > last:
        errors["window_end"] = "The last day must be on or after the first day."
    elif first and last and (last - first).days + 1 > MAX_SPREAD_DAYS:
        errors["window_end"] = f"A Spread window is at most {MAX_SPREAD_DAYS} days long."
    return first, last


def _parse_window_day(raw, key, label, today, workspace, errors):
    if _blank(raw):
        errors[key] = f"Choose the window's {label} day."
        return None
    try:
        day = _date(raw)
    except ValueError as exc:
        errors[key] = str(exc)
        return None
    if day < today:
        errors[key] = f"The {label} day is in the past (today is {today.isoformat()} in {workspace.timezone})."
    return day


def validate_smpp(values, revision):
    """Step 3: SMPP overrides, each defaulting to the pinned revision's value. Raises InvalidFields."""
    if revision is None:
        raise InvalidFields({"saddr": "Choose the sender name in step 2 first."})
    defaults = {"saddr": revision.saddr, "ston": revision.ton, "snpi": revision.npi,
                "dton": DEFAULT_DTON, "dnpi": DEFAULT_DNPI}
    errors, out = {}, {}
    checks = {"saddr": smpp.validate_saddr,
              "ston": lambda v: smpp.validate_ton(v, "STON (source TON)"),
              "snpi": lambda v: smpp.validate_npi(v, "SNPI (source NPI)"),
              "dton": lambda v: smpp.validate_ton(v, "DTON (destination TON)"),
              "dnpi": lambda v: smpp.validate_npi(v, "DNPI (destination NPI)")}
    for key, check in checks.items():
        raw = values.get(key)
        if _blank(raw):
            out[key] = defaults[key]
            continue
        try:
            out[key] = check(raw)
        except DomainError as exc:
            errors[key] = exc.message
    if errors:
        raise InvalidFields(errors)
    return out
