"""Workspace quotas set by super admins: messages per day across all campaigns, recipients per campaign.

- `daily_messages`: the dispatch never hands the Core more than this many messages of one workspace
  per day in the workspace's time zone. Today's use is the sum of the campaigns' `daily_sent` rows
  (the same counters as the per-campaign daily limit: messages returned to the queue are given back
  there, so they are given back to the quota too). `cap_claim` — called from the one claim path,
  services/dispatch.py `claim_batch` — locks the workspace row (PostgreSQL `FOR NO KEY UPDATE`,
  which does not block foreign-key checks) after the campaign row, so parallel claims of any of
  the workspace's campaigns are serialised and the quota cannot be overshot. Campaigns over quota
  wait (the campaign page says why) and continue the next day by themselves.
- `max_recipients_per_campaign`: an upload that would take a campaign beyond it fails with a Job
  error naming the limit and stores nothing (services/recipients.py asks `recipients_refusal`).
"""
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

import audit
from extensions import db
from models import Campaign, DailySent, Workspace, utcnow
from services.errors import DomainError, NotFound

MAX_QUOTA = 10**12  # fits the BIGINT columns with room; larger is certainly a typo
FIELDS = ("daily_messages", "max_recipients_per_campaign")


def local_day(workspace, now=None):
    return (now or utcnow()).astimezone(ZoneInfo(workspace.timezone)).date()


def next_local_midnight(workspace, now=None):
    zone = ZoneInfo(workspace.timezone)
    day = (now or utcnow()).astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=zone)


def used_on(workspace_id, day):
    """Messages handed to the Core (or claimed for it) by the workspace's campaigns on `day`."""
    return int(db.session.scalar(
        select(func.coalesce(func.sum(DailySent.sent), 0))
        .join(Campaign, Campaign.id == DailySent.campaign_id)
        .where(DailySent.day == day, Campaign.workspace_id == workspace_id)) or 0)


def snapshot(workspace):
    return {"daily_messages": workspace.quota_daily_messages,
            "max_recipients_per_campaign": workspace.quota_max_recipients}


def _checked(name, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DomainError(f"{name} must be a whole number or null (no quota).", code="invalid_quota")
    if value < 0:
        raise DomainError(f"{name} cannot be negative (use null for no quota).", code="invalid_quota")
    if value > MAX_QUOTA:
        raise DomainError(f"{name} is at most {MAX_QUOTA:,}.", code="invalid_quota")
    return value


def parse_field(name, text_value):
    """A form field: empty = no quota, else a whole number ≥ 0."""
    raw = (text_value or "").strip().replace(",", "").replace("_", "")
    if raw == "":
        return None
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 16:
        raise DomainError(f"{name.replace('_', ' ').capitalize()} must be a whole number (or empty for no quota).",
                          code="invalid_quota")
    return int(raw)


def set_quota(slug, *, daily_messages, max_recipients_per_campaign):
    """Set both quotas of a workspace (None = no quota); audited with before/after."""
    daily = _checked("daily_messages", daily_messages)
    per_campaign = _checked("max_recipients_per_campaign", max_recipients_per_campaign)
    workspace = db.session.execute(select(Workspace).filter_by(slug=slug)).scalar_one_or_none()
    if workspace is None:
        raise NotFound(f"No workspace with the slug {slug!r}.")
    before = snapshot(workspace)
    workspace.quota_daily_messages, workspace.quota_max_recipients = daily, per_campaign
    db.session.commit()
    audit.record("workspace.quota_changed", workspace_id=workspace.id, object_type="workspace",
                 object_id=workspace.id, before=before, after=snapshot(workspace))
    return workspace


def cap_claim(campaign: Campaign, wanted: int, now: datetime | None = None) -> int:
    """How many of `wanted` messages the workspace's daily quota still allows (called inside the
    claim transaction, after the campaign row is locked; the claim then adds to `daily_sent` in the
    same transaction, so the next claimer — waiting on the workspace row — sees it)."""
    workspace = campaign.workspace
    if wanted <= 0 or workspace.quota_daily_messages is None:
        return wanted
    if db.engine.dialect.name == "postgresql":
        quota = db.session.execute(text("SELECT quota_daily_messages FROM workspaces WHERE id = :w FOR NO KEY UPDATE"),
                                   {"w": workspace.id}).scalar()
        if quota is None:  # removed meanwhile
            return wanted
    else:
        quota = workspace.quota_daily_messages
    left = int(quota) - used_on(workspace.id, local_day(workspace, now))
    return max(0, min(wanted, left))


def quota_reached(workspace, now=None):
    return (workspace.quota_daily_messages is not None
            and used_on(workspace.id, local_day(workspace, now)) >= workspace.quota_daily_messages)


def notice(campaign: Campaign, now: datetime | None = None) -> dict[str, Any] | None:
    """The campaign page's banner when the workspace's daily quota holds it back, else None."""
    workspace = campaign.workspace
    if not quota_reached(workspace, now):
        return None
    until = next_local_midnight(workspace, now)
    return {"kind": "quota_reached", "since": None, "until": until,
            "reason": f"The workspace's daily quota of {workspace.quota_daily_messages:,} messages is used up "
                      f"for today ({workspace.timezone}); sending continues at midnight."}


def today(workspace, now=None):
    """The overview's figures: today's use against the quotas."""
    used = used_on(workspace.id, local_day(workspace, now))
    quota = workspace.quota_daily_messages
    return {"daily_messages": quota, "used_today": used,
            "left_today": None if quota is None else max(0, quota - used),
            "percent": None if not quota else min(100, round(100 * used / quota)),
            "max_recipients_per_campaign": workspace.quota_max_recipients}


def recipients_refusal(workspace, stored_after):
    """The Job error text when a campaign would hold more recipients than the workspace allows."""
    limit = workspace.quota_max_recipients
    if limit is None or stored_after <= limit:
        return None
    return (f"The campaign would exceed the workspace's quota max_recipients_per_campaign of {limit:,} "
            f"recipients ({stored_after:,} or more with this upload). Nothing from this upload was stored.")
