"""The campaign wizard's rules: validate and save each step of a draft, resumably, and clone.

A draft is a campaign in status `New` (never submitted, or returned by a rejection). Each step's
values arrive as plain values (from a form or from JSON), are validated here — the wizard pages
and the API share every rule — and are saved with an audit event holding the before/after of the
fields that changed. `wizard_step` remembers the furthest step the author may open, so a draft is
resumed from the list where it was left.

SMPP fields: once a sender revision is pinned, `saddr/ston/snpi` hold the values the campaign will
use (the revision's, unless overridden in step 3) and `dton/dnpi` default to international E.164
(1/1). Storing the effective values keeps the list's Sender sort and search on one table.

Spread campaigns also get `start_at` = the first day's sending-window start (UTC), so the list's
Start column and the dispatch tick see one start time for every scheduled mode.
"""
import math
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

import audit
from extensions import db
from models import Campaign, Recipient, SenderRevision, utcnow
from models.campaigns import MODES
from models.states import CampaignStatus as S
from models.states import Mode
from services import campaigns as lifecycle
from services import contributors, segments, senders, smpp
from services.errors import DomainError, Forbidden
from services.numbers import mask_number

STEPS = {1: "Mode", 2: "Parameters", 3: "SMPP", 4: "Recipients", 5: "Review"}
DEFAULT_DTON, DEFAULT_DNPI = 1, 1          # international, ISDN/E.164 — what the normaliser produces
MAX_SPREAD_DAYS = 366
MAX_DAILY_LIMIT = 100_000_000
EDITED_FIELDS = ("name", "mode", "sender_revision_id", "message_text", "daily_limit", "auto_start", "start_at",
                 "spread_first_day", "spread_last_day", "ignore_daily_window", "saddr", "ston", "snpi", "dton",
                 "dnpi")


class InvalidFields(DomainError):
    """One or more fields are wrong; `fields` maps each field to a message the author can act on."""

    code = "invalid_fields"
    status = 400

    def __init__(self, fields):
        self.fields = dict(fields)
        super().__init__(" ".join(self.fields.values()))


# --- steps -------------------------------------------------------------------------------

def steps_for(campaign_or_mode):
    mode = getattr(campaign_or_mode, "mode", campaign_or_mode)
    return [n for n in STEPS if not (n == 4 and mode == Mode.TRIGGER)]


def next_step(campaign, step):
    later = [n for n in steps_for(campaign) if n > step]
    return later[0] if later else step


def previous_step(campaign, step):
    earlier = [n for n in steps_for(campaign) if n < step]
    return earlier[-1] if earlier else None


def reachable(campaign, step):
    return step in steps_for(campaign) and step <= campaign.wizard_step


def get_editable(workspace, campaign_id, membership, user):
    """The draft for the wizard: the author's own (or any, for admins), in status New, not archived."""
    campaign = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    ensure_editable(campaign, membership, user)
    return campaign


def is_uploading(campaign):
    """A draft whose recipient upload is running: the pipeline moved it to Building (not submitted)."""
    return campaign.status == S.BUILDING and campaign.submitted_at is None and campaign.archived_at is None


def ensure_editable(campaign, membership, user):
    if not lifecycle.is_owner_or_manager(campaign, membership, user):
        raise Forbidden("Only the campaign's author or a workspace admin can edit it.")
    if campaign.archived_at is not None:
        raise lifecycle.IllegalTransition("This campaign is archived; restore it before editing.")
    if is_uploading(campaign):
        raise lifecycle.IllegalTransition("Recipients are still being read; edit the draft again when the "
                                          "upload has finished.")
    if campaign.status != S.NEW:
        raise lifecycle.IllegalTransition(
            f"Campaign #{campaign.id} is {campaign.status}; only drafts (status New) can be edited. "
            "Clone it to start a changed copy.")


# --- sender names ------------------------------------------------------------------------

def approved_sender_revisions(workspace):
    """The sender revisions step 2 offers (the registry's current approved, non-archived names)."""
    return list(senders.approved_revisions_for_wizard(workspace))


def effective_smpp(campaign):
    """The SMPP fields the campaign sends with, and the sender revision's defaults they come from."""
    revision = campaign.sender_revision
    default = {"saddr": revision.saddr if revision else None, "ston": revision.ton if revision else None,
               "snpi": revision.npi if revision else None, "dton": DEFAULT_DTON, "dnpi": DEFAULT_DNPI}
    values = {k: (getattr(campaign, k) if getattr(campaign, k) is not None else default[k]) for k in default}
    overridden = {k for k in default if default[k] is not None and values[k] != default[k]}
    return values, default, overridden


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


def validate_parameters(workspace, mode, values, current=None):  # noqa: C901 — issue 16: to split
    """Check step 2's values for `mode`; returns the column values to store. Raises InvalidFields."""
    errors, out = {}, {}
    name = " ".join(str(values.get("name") or "").split())
    if not name:
        errors["name"] = "Give the campaign a name (up to 120 characters) that tells people what it is for."
    elif len(name) > 120:
        errors["name"] = f"The name is {len(name)} characters long; shorten it to 120."
    out["name"] = name

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
    out["sender_revision_id"] = revision.id if revision else None

    text = str(values.get("text") if values.get("text") is not None else values.get("message_text") or "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    info = segments.count(text)
    if not text.strip():
        errors["text"] = "Write the message text."
    elif info.segments > segments.MAX_SEGMENTS:
        limit = segments.MAX_SEGMENTS * segments.MULTI[info.encoding]
        errors["text"] = (f"The text needs {info.segments} SMS parts; the maximum is {segments.MAX_SEGMENTS} "
                          f"({limit} {info.encoding} units). Shorten it.")
    out["message_text"] = text

    raw_limit = values.get("daily_limit")
    if _blank(raw_limit):
        out["daily_limit"] = None
    else:
        try:
            limit = int(str(raw_limit).strip()) if not isinstance(raw_limit, bool) else None
        except ValueError:
            limit = None
        if limit is None or limit < 1 or limit > MAX_DAILY_LIMIT:
            errors["daily_limit"] = "The daily limit is a whole number of messages above 0 — or leave it empty."
        out["daily_limit"] = limit

    out["auto_start"] = _bool(values.get("auto_start", True))
    out["start_at"] = None
    out["spread_first_day"] = out["spread_last_day"] = None
    out["ignore_daily_window"] = False
    now = utcnow()
    if mode == Mode.ON_TIME:
        raw = values.get("start_at")
        if _blank(raw):
            errors["start_at"] = f"Choose when to send (date and time in {workspace.timezone})."
        else:
            try:
                start = parse_local_datetime(raw, workspace)
            except ValueError as exc:
                errors["start_at"] = str(exc)
            else:
                if start <= now:
                    errors["start_at"] = f"The start must be in the future ({workspace.timezone} time)."
                out["start_at"] = start
    elif mode == Mode.SPREAD:
        first_raw = values.get("window_start", values.get("spread_first_day"))
        last_raw = values.get("window_end", values.get("spread_last_day"))
        today = today_in(workspace)
        first = last = None
        for key, raw, label in (("window_start", first_raw, "first"), ("window_end", last_raw, "last")):
            if _blank(raw):
                errors[key] = f"Choose the window's {label} day."
                continue
            try:
                day = _date(raw)
            except ValueError as exc:
                errors[key] = str(exc)
                continue
            if day < today:
                errors[key] = f"The {label} day is in the past (today is {today.isoformat()} in {workspace.timezone})."
            if key == "window_start":
                first = day
            else:
                last = day
        if first and last and first > last:
            errors["window_end"] = "The last day must be on or after the first day."
        elif first and last and (last - first).days + 1 > MAX_SPREAD_DAYS:
            errors["window_end"] = f"A Spread window is at most {MAX_SPREAD_DAYS} days long."
        out["spread_first_day"], out["spread_last_day"] = first, last
        if first:
            out["start_at"] = window_start_utc(first, workspace)
    elif mode == Mode.TRIGGER:
        out["ignore_daily_window"] = _bool(values.get("ignore_daily_window"))

    if errors:
        raise InvalidFields(errors)
    if revision is not None and (current is None or current.sender_revision_id != revision.id):
        # A new sender: its SADDR/TON/NPI replace the old ones (step 3 may override them again).
        out.update(saddr=revision.saddr, ston=revision.ton, snpi=revision.npi)
        if current is None or current.dton is None:
            out.update(dton=DEFAULT_DTON, dnpi=DEFAULT_DNPI)
    return out


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


# --- saving ------------------------------------------------------------------------------

def _snapshot(campaign, fields=EDITED_FIELDS):
    return {f: getattr(campaign, f) for f in fields}


def _save(campaign, changes, step, user, action="campaigns.edited"):
    """Write the changed fields, advance wizard_step, commit, audit before/after of what changed.
    Whoever saves a step counts among the campaign's contributors (four-eyes), in the same commit."""
    before = _snapshot(campaign)
    for key, value in changes.items():
        setattr(campaign, key, value)
    after = _snapshot(campaign)
    changed = [k for k in EDITED_FIELDS if before[k] != after[k]]
    campaign.wizard_step = max(campaign.wizard_step or 1, next_step(campaign, step))
    if campaign.wizard_step == 4 and campaign.mode == Mode.TRIGGER:
        campaign.wizard_step = 5
    campaign.updated_at = utcnow()
    contributors.record(campaign, user, "edited")
    db.session.commit()
    if changed:
        audit.record(action, workspace_id=campaign.workspace_id, object_type="campaign", object_id=campaign.id,
                     before={k: before[k] for k in changed}, after={k: after[k] for k in changed},
                     note=f"wizard step {step}: {STEPS[step]}")
    return campaign


def create_draft(workspace, membership, user, mode):
    """Step 1 of a new campaign: a draft in status New owned by the user."""
    from services import permissions

    permissions.require("campaigns.create", membership, superadmin=user.is_superadmin)
    mode = validate_mode(mode)
    campaign = Campaign(workspace_id=workspace.id, author_id=user.id, name=f"New {mode} campaign", mode=mode,
                        status="New", moderation="awaiting", wizard_step=2, message_text="",
                        auto_start=True, ignore_daily_window=False)
    db.session.add(campaign)
    db.session.flush()
    contributors.record(campaign, user, "created")
    db.session.commit()
    audit.record("campaigns.created", workspace_id=workspace.id, object_type="campaign", object_id=campaign.id,
                 after={"status": "New", "mode": mode, "name": campaign.name})
    return campaign


def save_mode(workspace, campaign_id, mode, membership, user):
    campaign = get_editable(workspace, campaign_id, membership, user)
    mode = validate_mode(mode, campaign)
    changes = {"mode": mode}
    if mode != campaign.mode:
        # Fields of the old mode no longer apply; step 2 asks for the new mode's ones.
        changes.update(start_at=None, spread_first_day=None, spread_last_day=None, ignore_daily_window=False)
        if campaign.wizard_step > 2:
            campaign.wizard_step = 2
    return _save(campaign, changes, 1, user)


def save_parameters(workspace, campaign_id, values, membership, user):
    campaign = get_editable(workspace, campaign_id, membership, user)
    changes = validate_parameters(workspace, campaign.mode, values, current=campaign)
    return _save(campaign, changes, 2, user)


def save_smpp(workspace, campaign_id, values, membership, user):
    campaign = get_editable(workspace, campaign_id, membership, user)
    return _save(campaign, validate_smpp(values, campaign.sender_revision), 3, user)


def finish_recipients(workspace, campaign_id, membership, user):
    """Step 4 → 5. Recipients are added by the upload pipeline; this only moves the wizard on."""
    campaign = get_editable(workspace, campaign_id, membership, user)
    if campaign.mode != Mode.TRIGGER and not campaign.recipients_count and not lifecycle.uploads_running(campaign):
        raise InvalidFields({"recipients": "Upload a list of recipients before you continue."})
    return _save(campaign, {}, 4, user)


def create_complete(workspace, membership, user, payload):
    """The API's POST /campaigns: every step's fields at once, validated with the wizard's rules."""
    from services import permissions

    permissions.require("campaigns.create", membership, superadmin=user.is_superadmin)
    errors = {}
    mode = validate_mode(payload.get("mode"))
    try:
        values = validate_parameters(workspace, mode, payload)
    except InvalidFields as exc:
        errors.update(exc.fields)
        values = {}
    smpp_values = payload.get("smpp") or {}
    if not isinstance(smpp_values, dict):
        errors["smpp"] = "smpp is an object with saddr, ston, snpi, dton, dnpi (each optional)."
    elif values.get("sender_revision_id"):
        try:
            values.update(validate_smpp(smpp_values, db.session.get(SenderRevision, values["sender_revision_id"])))
        except InvalidFields as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidFields(errors)
    campaign = Campaign(workspace_id=workspace.id, author_id=user.id, mode=mode, status="New",
                        moderation="awaiting", wizard_step=5 if mode == Mode.TRIGGER else 4, **values)
    db.session.add(campaign)
    db.session.flush()
    contributors.record(campaign, user, "created")
    db.session.commit()
    audit.record("campaigns.created", workspace_id=workspace.id, object_type="campaign", object_id=campaign.id,
                 after={"status": "New", **_snapshot(campaign)}, note="created through the API")
    return campaign


def clone(workspace, campaign_id, membership, user):
    """A new draft with the source's settings and no recipients, owned by the user who clones."""
    source = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    lifecycle.check(source, "clone")
    lifecycle.ensure_may_act(source, "clone", membership, user)
    copy = Campaign(workspace_id=workspace.id, author_id=user.id, status="New", moderation="awaiting",
                    name=_copy_name(source.name), mode=source.mode, message_text=source.message_text,
                    daily_limit=source.daily_limit, auto_start=source.auto_start,
                    ignore_daily_window=source.ignore_daily_window and source.mode == Mode.TRIGGER,
                    dton=source.dton, dnpi=source.dnpi)
    notes = []
    approved = {r.id: r for r in approved_sender_revisions(workspace)}
    if source.sender_revision_id in approved:
        copy.sender_revision_id = source.sender_revision_id
        copy.saddr, copy.ston, copy.snpi = source.saddr, source.ston, source.snpi
    elif source.sender_revision_id is not None:
        notes.append("its sender name is no longer approved — choose one in step 2")
    now = utcnow()
    if source.mode == Mode.ON_TIME and source.start_at and source.start_at > now:
        copy.start_at = source.start_at
    elif source.mode == Mode.ON_TIME:
        notes.append("set a new start time")
    if source.mode == Mode.SPREAD:
        if source.spread_first_day and source.spread_first_day >= today_in(workspace):
            copy.spread_first_day, copy.spread_last_day = source.spread_first_day, source.spread_last_day
            copy.start_at = source.start_at
        else:
            notes.append("choose a new Spread window")
    copy.wizard_step = 2 if notes else (5 if copy.mode == Mode.TRIGGER else 4)
    db.session.add(copy)
    db.session.flush()
    contributors.record(copy, user, "created")
    contributors.inherit(copy, source)  # the source's text and settings were shaped by its contributors
    db.session.commit()
    audit.record("campaigns.cloned", workspace_id=workspace.id, object_type="campaign", object_id=copy.id,
                 before={"source_id": source.id}, after={"status": "New", **_snapshot(copy)},
                 note=f"cloned from campaign #{source.id}" + (f"; {'; '.join(notes)}" if notes else ""))
    audit.record("campaigns.clone_made", workspace_id=workspace.id, object_type="campaign", object_id=source.id,
                 after={"clone_id": copy.id})
    copy.clone_notes = notes
    return copy


def _copy_name(name):
    name = f"Copy of {name}"
    return name if len(name) <= 120 else name[:119] + "…"


# --- review ------------------------------------------------------------------------------

def sample_numbers(campaign, limit=5):
    """Up to `limit` recipients' numbers, always masked (the review page is for checking, not dialling)."""
    rows = db.session.execute(select(Recipient.number).where(Recipient.campaign_id == campaign.id)
                              .order_by(Recipient.id).limit(limit)).scalars()
    return [mask_number(n) for n in rows]


def window_hours(workspace, ignore_daily_window=False):
    if ignore_daily_window:
        return 24.0
    start_h, start_m = (int(x) for x in workspace.window_start.split(":"))
    end_h, end_m = (int(x) for x in workspace.window_end.split(":"))
    return ((end_h * 60 + end_m) - (start_h * 60 + start_m)) / 60.0


def estimate(campaign, recipients=None):
    """Estimated days to finish.

    capacity per day = min(daily limit, sending-window hours × nominal rate), where the nominal rate
    is CAMPAIGN_NOMINAL_RATE_PER_HOUR (default 36,000 messages/hour = 10/s, a conservative share of
    one Core channel) and the window is the workspace's quiet-hours window (24 h for a Trigger
    campaign that ignores it). days = ceil(recipients / capacity per day). A Spread campaign takes
    its window's days by design; the estimate warns when a day's share exceeds the capacity.
    """
    workspace = campaign.workspace
    recipients = campaign.recipients_count if recipients is None else recipients
    rate = current_app.config["CAMPAIGN_NOMINAL_RATE_PER_HOUR"]
    hours = window_hours(workspace, campaign.mode == Mode.TRIGGER and campaign.ignore_daily_window)
    capacity = int(hours * rate)
    limited_by = "sending window"
    if campaign.daily_limit and campaign.daily_limit < capacity:
        capacity, limited_by = campaign.daily_limit, "daily limit"
    result = {"recipients": recipients, "window_hours": hours, "rate_per_hour": rate,
              "capacity_per_day": capacity, "limited_by": limited_by, "days": None, "warning": None}
    if campaign.mode == Mode.TRIGGER:
        result["warning"] = "Trigger campaigns have no list: numbers arrive through the API after the start."
        return result
    if not recipients or capacity <= 0:
        result["days"] = 0 if not recipients else None
        return result
    days = math.ceil(recipients / capacity)
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day and campaign.spread_last_day:
        window_days = (campaign.spread_last_day - campaign.spread_first_day).days + 1
        per_day = math.ceil(recipients / window_days)
        result["per_day"] = per_day
        if per_day > capacity:
            result["warning"] = (f"Each day's share ({per_day:,}) is more than a day's capacity ({capacity:,}); "
                                 "recipients left when the window ends expire. Widen the window or raise "
                                 "the daily limit.")
        days = window_days
    result["days"] = days
    return result


def review(campaign):
    values, defaults, overridden = effective_smpp(campaign)
    return {
        "segments": segments.count(campaign.message_text),
        "smpp": values, "smpp_defaults": defaults, "smpp_overridden": overridden,
        "sample": sample_numbers(campaign) if campaign.mode != Mode.TRIGGER else [],
        "estimate": estimate(campaign),
        "problems": lifecycle.submit_problems(campaign),
    }


def api_start_window(campaign):
    """(window_start, window_end) as ISO dates for JSON."""
    first, last = campaign.spread_first_day, campaign.spread_last_day
    return (first.isoformat() if first else None, last.isoformat() if last else None)
