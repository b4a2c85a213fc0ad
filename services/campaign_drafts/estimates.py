"""The review step's figures: masked sample numbers, the days-to-finish estimate, the review summary."""
import math

from flask import current_app
from sqlalchemy import select

from extensions import db
from models import Recipient
from models.states import Mode
from services import campaigns as lifecycle
from services import segments
from services.campaign_drafts.steps import effective_smpp
from services.numbers import mask_number

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
