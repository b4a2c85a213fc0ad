"""Schemas of the campaigns API: create (every wizard field at once), the list's filters, the
restore body, and the campaign as it is answered (list rows and the detail)."""
from marshmallow import pre_dump

from blueprints.api.schemas import (
    SHORT_TEXT,
    Body,
    Id,
    Out,
    Query,
    StrictBoolean,
    StrictInteger,
    Text,
    fields,
    validate,
)
from models.campaigns import MODERATION, MODES, STATUSES
from services import preflight, retry, segments, smpp
from services.campaign_drafts import api_shape as draft_api
from services.campaign_drafts import validation as draft_validation
from services.campaign_queries import ARCHIVED_CHOICES, SORTS

# The longest text the wizard accepts is MAX_SEGMENTS parts of GSM-7; CRLF counts as one unit, so
# the raw string may be twice that. The part count itself is the service's rule (segments.py).
TEXT_MAX = 2 * segments.MAX_SEGMENTS * segments.MULTI[segments.GSM7]
SMPP_KEYS = ("saddr", "ston", "snpi", "dton", "dnpi")


def _when(value):
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


# --- requests ----------------------------------------------------------------------------------

class SmppOverrides(Body):
    saddr = Text(15, allow_none=True, metadata={"description": "Alphanumeric up to 11 GSM characters, or up "
                                                              "to 15 digits"})
    ston = StrictInteger(allow_none=True, metadata={"enum": list(smpp.TON_VALUES)})
    snpi = StrictInteger(allow_none=True, metadata={"enum": list(smpp.NPI_VALUES)})
    dton = StrictInteger(allow_none=True, metadata={"enum": list(smpp.TON_VALUES)})
    dnpi = StrictInteger(allow_none=True, metadata={"enum": list(smpp.NPI_VALUES)})


class CampaignCreate(Body):
    name = Text(120, required=True)
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    sender_revision_id = Id(required=True, metadata={"description": "An approved, current sender revision"})
    text = Text(TEXT_MAX, required=True, metadata={"description": "At most 10 SMS parts (1530 GSM-7 / 670 "
                                                                 "UCS-2 units)"})
    smpp = fields.Nested(SmppOverrides, allow_none=True,
                         metadata={"description": "Overrides; each defaults to the sender revision "
                                                  "(dton/dnpi: 1/1)"})
    daily_limit = StrictInteger(allow_none=True, metadata={"minimum": 1, "maximum": draft_validation.MAX_DAILY_LIMIT})
    auto_start = StrictBoolean(metadata={"default": True})
    start_at = Text(64, allow_none=True, metadata={"format": "date-time", "description": "OnTime: future; without "
                                                   "an offset it is in the workspace time zone"})
    window_start = Text(32, allow_none=True, metadata={"format": "date", "description": "Spread: first day"})
    window_end = Text(32, allow_none=True, metadata={"format": "date", "description": "Spread: last day (≥ first)"})
    ignore_daily_window = StrictBoolean(metadata={"description": "Trigger only"})


class CampaignRestore(Body):
    owner_id = Id(allow_none=True, metadata={"description": "The new owner when the author is no longer a "
                                                            "member (a member's user id)"})


class CampaignRetry(Body):
    which = fields.String(required=True, validate=validate.OneOf(retry.CLASSES), metadata={
        "description": "temporary: expired, throttled, Core unreachable; failed: every final failure; "
                       "expired: never sent before the window ended"})


class RetryCreated(Out):
    """The new draft holding the failed numbers (status New: it goes through moderation)"""

    id = fields.Integer(required=True)
    recipients = fields.Integer(required=True)


def _code(key):
    return {"code": f"invalid_{key}"}


class CampaignListQuery(Query):
    date_from = Text(32, data_key="from", attribute="from", metadata={**_code("from"), "format": "date",
                                                     "description": "created on or after, YYYY-MM-DD (workspace "
                                                                    "time zone)"})
    date_to = Text(32, data_key="to", attribute="to", metadata={**_code("to"), "format": "date",
                                                 "description": "created on or before, YYYY-MM-DD"})
    status = fields.String(validate=validate.OneOf(STATUSES), metadata=_code("status"))
    mode = fields.String(validate=validate.OneOf(MODES), metadata=_code("mode"))
    q = Text(SHORT_TEXT, metadata={"description": "campaign id, or part of the SADDR"})
    archived = fields.String(validate=validate.OneOf(ARCHIVED_CHOICES),
                             metadata={**_code("archived"),
                                       "description": "empty: hide archived; 1: archived only; all: both"})
    sort = fields.String(validate=validate.OneOf(tuple(SORTS)), metadata={**_code("sort"),
                                                                          "description": "default created"})
    dir = fields.String(validate=validate.OneOf(("asc", "desc")), metadata={**_code("dir"),
                                                                            "description": "default desc"})
    page = fields.Integer(validate=validate.Range(min=1), metadata={**_code("page"),
                                                                    "description": "1-200, 50 per page"})


# --- responses ---------------------------------------------------------------------------------

class Smpp(Out):
    saddr = fields.String(allow_none=True)
    ston = fields.Integer(allow_none=True)
    snpi = fields.Integer(allow_none=True)
    dton = fields.Integer(allow_none=True)
    dnpi = fields.Integer(allow_none=True)


class Counters(Out):
    recipients = fields.Integer(required=True)
    queued = fields.Integer(required=True)
    sent = fields.Integer(required=True)
    delivered = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    in_flight = fields.Integer(required=True)
    expired = fields.Integer(required=True, metadata={"description": "Never sent: their Spread day passed"})


class Estimate(Out):
    """The pre-flight estimate (services/preflight.py); times in UTC"""

    parts = fields.Integer(required=True, metadata={"description": "SMS parts to be billed: recipients left × "
                                                                   "parts per message"})
    duration_seconds = fields.Integer(allow_none=True, metadata={"description": "From the start to the last "
                                                                              "message, inside the daily windows"})
    finishes_at = fields.String(allow_none=True, metadata={"format": "date-time"})


class EncodingHint(Out):
    char = fields.String(required=True, metadata={"description": "A character that makes the text UCS-2"})
    replacement = fields.String(allow_none=True, metadata={"description": "Its GSM-7 look-alike, if any"})


class CampaignSummary(Out):
    """A campaign as the list shows it"""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    mode = fields.String(required=True, metadata={"enum": list(MODES)})
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    moderation = fields.String(required=True, metadata={"enum": list(MODERATION)})
    sender_revision_id = fields.Integer(allow_none=True)
    text = fields.String(required=True)
    smpp = fields.Nested(Smpp, required=True)
    daily_limit = fields.Integer(allow_none=True)
    auto_start = fields.Boolean(required=True)
    start_at = fields.String(allow_none=True)
    window_start = fields.String(allow_none=True)
    window_end = fields.String(allow_none=True)
    ignore_daily_window = fields.Boolean(required=True)
    archived_at = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    author = fields.String(allow_none=True, metadata={"description": "The author's e-mail"})
    counters = fields.Nested(Counters, required=True)
    failure_reason = fields.String(allow_none=True, dump_default=None,
                                   metadata={"description": "Why a Failed campaign failed"})
    pause_reason = fields.String(allow_none=True, dump_default=None,
                                 metadata={"description": "Why the campaign was paused (by a person or the system)"})
    retry_of_id = fields.Integer(allow_none=True, dump_default=None,
                                 metadata={"description": "The finished campaign whose failed numbers this retries"})
    approval_fingerprint = fields.String(allow_none=True, dump_default=None,
                                         metadata={"description": "SHA-256 of what the moderator approved"})

    @pre_dump
    def from_campaign(self, c, **kwargs):
        return campaign_values(c, detail=False)


class Campaign(CampaignSummary):
    """One campaign with the text's encoding and SMS parts"""

    encoding = fields.String(required=True, metadata={"enum": ["GSM-7", "UCS-2"]})
    segments = fields.Integer(required=True)
    wizard_step = fields.Integer(required=True)
    moderation_note = fields.String(allow_none=True)
    submitted_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    estimate = fields.Nested(Estimate, required=True)
    encoding_hints = fields.List(fields.Nested(EncodingHint), required=True,
                                 metadata={"description": "Empty for a GSM-7 text"})

    @pre_dump
    def from_campaign(self, c, **kwargs):
        return campaign_values(c, detail=True)


class CampaignPage(Out):
    """One page of campaigns with the list page's filters"""

    campaigns = fields.List(fields.Nested(CampaignSummary), required=True)
    page = fields.Integer(required=True)
    has_next = fields.Boolean(required=True)


def campaign_values(c, detail):
    """The campaign's values under the API's names; fields other modules add to the model
    (failure_reason, pause_reason, approval_fingerprint) are read when the model has them."""
    first, last = draft_api.api_start_window(c)
    out = {
        "id": c.id, "name": c.name, "mode": c.mode, "status": c.status, "moderation": c.moderation,
        "sender_revision_id": c.sender_revision_id, "text": c.message_text,
        "smpp": {k: getattr(c, k) for k in SMPP_KEYS},
        "daily_limit": c.daily_limit, "auto_start": c.auto_start, "start_at": _when(c.start_at),
        "window_start": first, "window_end": last, "ignore_daily_window": c.ignore_daily_window,
        "archived_at": _when(c.archived_at), "created_at": _when(c.created_at),
        "author": c.author.email if c.author else None,
        "counters": {"recipients": c.recipients_count, "queued": c.queued_count, "sent": c.sent_count,
                     "delivered": c.delivered_count, "failed": c.failed_count, "in_flight": c.inflight_count,
                     "expired": c.expired_count or 0},
        "retry_of_id": c.retry_of_id,
        **{k: getattr(c, k, None) for k in ("failure_reason", "pause_reason", "approval_fingerprint")},
    }
    if detail:
        info = segments.count(c.message_text)
        estimate = preflight.estimate(c)
        out.update(estimate={"parts": estimate["parts"], "duration_seconds": estimate["duration_seconds"],
                             "finishes_at": _when(estimate["finishes_at"])},
                   encoding_hints=preflight.encoding_hints(c.message_text))
        out.update(encoding=info.encoding, segments=info.segments, wizard_step=c.wizard_step,
                   moderation_note=c.moderation_note, submitted_at=_when(c.submitted_at),
                   started_at=_when(c.started_at), finished_at=_when(c.finished_at))
    return out
