"""The moderation queue, generic over "things that await moderation".

Each kind (campaigns, sender revisions) provides the same small protocol — count, list,
author_id, approve, reject, serialize — and the queue page, its polling endpoint and the API
work on any kind through it. The decisions themselves stay with their owners: campaigns go
through the campaign transition table (services/campaigns.py), revisions through
services/senders.py; both obey services/moderation_rules.py (permission + four-eyes).
"""
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from extensions import db
from models import Campaign
from models.states import CampaignStatus, Mode, Moderation
from services import campaigns, contributors, permissions, preflight, segments, senders
from services.campaign_drafts import steps as draft_steps
from services.errors import Conflict, DomainError, NotFound
from services.moderation_rules import ensure_may_decide, may_decide, revision_contributors

QUEUE_LIMIT = 200   # rows shown per tab; the count is always the full number
PREVIEW_CHARS = 120


class QueueKind(Protocol):
    name: str     # in URLs and JSON: "campaign" | "sender_revision"
    tab: str      # the page's ?tab= value
    label: str    # the tab's title
    noun: str     # "campaign", "sender revision" — for messages

    def count(self, workspace) -> int: ...
    def list(self, workspace, limit=QUEUE_LIMIT) -> list: ...
    def contributors(self, items) -> dict: ...   # {item id: {user id: what they did}} (four-eyes)
    def approve(self, workspace, item_id, membership, user, seen=None): ...
    def reject(self, workspace, item_id, membership, user, note, seen=None): ...
    def serialize(self, item) -> dict: ...


def _when(value):
    return value.isoformat(timespec="seconds").replace("+00:00", "Z") if value else None


def _schedule(campaign):
    """When the campaign would send, in words (workspace time zone)."""
    start = "" if campaign.auto_start else "; waits for a manual Start"
    if campaign.mode == Mode.ON_TIME and campaign.start_at:
        local = campaign.start_at.astimezone(ZoneInfo(campaign.workspace.timezone))
        return f"at {local.strftime('%Y-%m-%d %H:%M')} ({campaign.workspace.timezone}){start}"
    if campaign.mode == Mode.SPREAD and campaign.spread_first_day and campaign.spread_last_day:
        return f"spread over {campaign.spread_first_day.isoformat()} to {campaign.spread_last_day.isoformat()}{start}"
    if campaign.mode == Mode.TRIGGER:
        return f"numbers arrive through the API after the start{start}"
    return f"right after approval{start}"


def _estimate(campaign):
    """The pre-flight estimate the moderator sees: parts billed, duration, finish (services/preflight.py)."""
    e = preflight.estimate(campaign)
    return {"parts": e["parts"], "duration_seconds": e["duration_seconds"], "finishes_at": _when(e["finishes_at"]),
            "words": e["words"]}


class CampaignQueue:
    name, tab, label, noun = "campaign", "campaigns", "Campaigns", "campaign"

    @staticmethod
    def _awaiting(workspace):
        return (Campaign.workspace_id == workspace.id, Campaign.status == CampaignStatus.PENDING,
                Campaign.moderation == Moderation.AWAITING, Campaign.archived_at.is_(None))

    def count(self, workspace):
        return db.session.execute(select(func.count(Campaign.id)).where(*self._awaiting(workspace))).scalar_one()

    def list(self, workspace, limit=QUEUE_LIMIT):
        query = (select(Campaign).where(*self._awaiting(workspace))
                 .order_by(Campaign.submitted_at, Campaign.id).limit(limit))
        return list(db.session.execute(query).scalars())

    def contributors(self, items):
        return contributors.of_campaigns(items)

    def _ensure_undecided(self, workspace, campaign_id, membership, user, seen=None):
        """Load the campaign and refuse with "already approved by X at T" when another decision came
        first. The lifecycle's own check looks at the status before the moderation, so a late
        decision would otherwise read "Cannot approve a campaign that is Sending". The caller keeps
        the returned object alive: the session's identity map holds it weakly, and a reload inside
        the lifecycle would again see the moved-on status instead of losing at the conditional UPDATE."""
        campaign = campaigns.get_campaign(workspace, campaign_id, membership, user)
        ensure_may_decide(workspace, membership, user, contributors.of_campaign(campaign), "campaign")
        if campaign.moderation in (Moderation.APPROVED, Moderation.REJECTED) and campaign.moderated_at is not None:
            who = campaign.moderated_by.email if campaign.moderated_by else "another moderator"
            raise Conflict(f"Campaign #{campaign.id} was already {campaign.moderation} by {who} at "
                           f"{campaign.moderated_at.strftime('%Y-%m-%d %H:%M:%S UTC')}.", code="already_decided")
        if seen is not None and seen != submission(campaign):
            # Rejected, changed and submitted again since the moderator's row was drawn: they decide
            # only on what they saw (the lifecycle's UPDATE also guards on submitted_at).
            raise Conflict(f"Campaign #{campaign.id} was changed and submitted again since you looked at it; "
                           "read it again before deciding.", code="changed_since_seen")
        return campaign

    def approve(self, workspace, item_id, membership, user, seen=None):
        checked = self._ensure_undecided(workspace, item_id, membership, user, seen)  # noqa: F841 (kept alive)
        return campaigns.approve(workspace, item_id, membership, user)

    def reject(self, workspace, item_id, membership, user, note, seen=None):
        checked = self._ensure_undecided(workspace, item_id, membership, user, seen)  # noqa: F841 (kept alive)
        return campaigns.reject(workspace, item_id, membership, user, note)

    def serialize(self, item):
        """What the moderator decides on: the text with its encoding and parts, the SADDR that will be
        sent (and the sender revision's, when overridden), recipients, schedule, window, daily limit."""
        revision = item.sender_revision
        text = item.message_text or ""
        info = segments.count(text)
        smpp, defaults, overridden = draft_steps.effective_smpp(item)
        return {
            "kind": self.name, "id": item.id, "workspace_id": item.workspace_id, "name": item.name,
            "mode": item.mode, "status": item.status, "moderation": item.moderation,
            "author": item.author.email if item.author else None,
            "saddr": smpp["saddr"], "saddr_overridden": "saddr" in overridden,
            "revision_saddr": defaults["saddr"], "revision_number": revision.number if revision else None,
            "smpp": smpp, "smpp_overridden": sorted(overridden),
            "sender_revision_id": item.sender_revision_id,
            "recipients_count": item.recipients_count,
            "message_preview": text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…",
            "encoding": info.encoding, "segments": info.segments, "characters": info.characters,
            "schedule": _schedule(item), "auto_start": item.auto_start, "start_at": _when(item.start_at),
            "window_start": item.spread_first_day.isoformat() if item.spread_first_day else None,
            "window_end": item.spread_last_day.isoformat() if item.spread_last_day else None,
            "sending_window": "ignored (sends around the clock)" if item.ignore_daily_window
            else item.workspace.sending_window,
            "ignore_daily_window": item.ignore_daily_window,
            "daily_limit": item.daily_limit,
            "submitted_at": _when(item.submitted_at), "submission": submission(item),
            "estimate": _estimate(item),
        }


def submission(campaign):
    """Which submission of the campaign a moderator looks at (a resubmission after a rejection is another)."""
    return campaign.submitted_at.isoformat() if campaign.submitted_at else None


class SenderRevisionQueue:
    name, tab, label, noun = "sender_revision", "senders", "Sender revisions", "sender revision"

    def count(self, workspace):
        return senders.count_pending(workspace)

    def list(self, workspace, limit=QUEUE_LIMIT):
        return senders.pending_revisions(workspace, limit=limit)

    def contributors(self, items):
        return {item.id: revision_contributors(item) for item in items}

    def approve(self, workspace, item_id, membership, user, seen=None):
        return senders.approve(workspace, item_id, membership, user)  # a revision never changes: one look

    def reject(self, workspace, item_id, membership, user, note, seen=None):
        return senders.reject(workspace, item_id, membership, user, note)

    def serialize(self, item):
        current = senders.current_revision(item.sender)
        return {
            "kind": self.name, "id": item.id, "workspace_id": item.workspace_id, "sender_id": item.sender_id,
            "sender_name": item.sender.label, "number": item.number, "saddr": item.saddr, "ston": item.ton,
            "snpi": item.npi, "comment": item.comment, "state": item.state,
            "author": item.created_by.email if item.created_by else None,
            "current_saddr": current.saddr if current else None,
            "submitted_at": _when(item.submitted_at),
        }


KINDS = {kind.name: kind for kind in (CampaignQueue(), SenderRevisionQueue())}
TABS = {kind.tab: kind for kind in KINDS.values()}


def get_kind(name):
    kind = KINDS.get(name)
    if kind is None:
        raise NotFound(f"There is no moderation queue called {name!r}; use {' or '.join(KINDS)}.")
    return kind


def kind_for_tab(tab):
    return TABS.get(tab) or next(iter(KINDS.values()))


def counts(workspace):
    return {name: kind.count(workspace) for name, kind in KINDS.items()}


def items(workspace, kind_name, limit=QUEUE_LIMIT):
    return get_kind(kind_name).list(workspace, limit=limit)


def decision_rights(workspace, membership, user, kind_name, items):
    """{item id: (may decide, shaped it)} for the page's rows: permission and four-eyes, one query."""
    shaped = get_kind(kind_name).contributors(items)
    return {item.id: (may_decide(workspace, membership, user, shaped[item.id]), user.id in shaped[item.id])
            for item in items}


def decide(workspace, kind_name, item_id, decision, membership, user, note=None, seen=None):
    """Approve or reject one item; raises Forbidden (four-eyes), Conflict `already_decided` (lost a
    race) or `changed_since_seen` (`seen`, the row's `submission`, is no longer current), NotFound
    (another workspace's id) or DomainError (reject without a note)."""
    kind = get_kind(kind_name)
    permissions.require("moderation.decide", membership, superadmin=user.is_superadmin)
    if decision == "approve":
        return kind.approve(workspace, item_id, membership, user, seen=seen)
    if decision == "reject":
        if not (note or "").strip():
            raise DomainError(f"Write a note saying why the {kind.noun} is rejected; the author will see it.",
                              code="note_required")
        return kind.reject(workspace, item_id, membership, user, note.strip(), seen=seen)
    raise NotFound(f"Unknown decision {decision!r}; use approve or reject.")


def serialize(kind_name, item):
    return get_kind(kind_name).serialize(item)
