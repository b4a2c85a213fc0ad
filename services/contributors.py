"""Who shaped a campaign, for the four-eyes rule: nobody who created, edited, uploaded recipients
to, submitted, restored or took over a campaign may approve or reject it.

`record()` adds the actor in the caller's transaction, so the contribution commits (or rolls
back) with the change itself; the first action per person is kept. `of_campaign()` is what
services/moderation_rules.py checks; the author always counts, even without a row.
"""
from typing import Any

from sqlalchemy import select

from extensions import db, dialect_insert
from models import Campaign, User, utcnow
from models.contributors import CONTRIBUTIONS, CampaignContributor

# Lifecycle events (services/campaigns.py) that shape a campaign when a person performs them.
EVENT_CONTRIBUTIONS = {"build": "uploaded", "submit": "submitted", "restore": "restored"}
PHRASES = {"created": "created", "edited": "edited", "uploaded": "uploaded recipients to",
           "submitted": "submitted", "restored": "restored", "owner": "own",
           "cloned_from": "shaped the campaign this one was cloned from", "proposed": "proposed"}


def _role(user, workspace_id):
    membership = user.membership_in(workspace_id)
    if membership is not None:
        return membership.role + ("+moderator" if membership.role == "author" and membership.is_moderator else "")
    return "superadmin" if user.is_superadmin else "unknown"


def _insert(rows):
    return dialect_insert(CampaignContributor).values(rows).on_conflict_do_nothing(
        index_elements=["campaign_id", "user_id"])


def record(campaign: Campaign, user: User | None, action: str) -> None:
    """Count `user` among the campaign's contributors (no commit: the caller's change commits it)."""
    if action not in CONTRIBUTIONS:
        raise ValueError(f"unknown contribution {action!r}")
    if user is None or campaign.id is None:
        raise ValueError("a contribution needs a saved campaign and a person")
    db.session.execute(_insert([{"campaign_id": campaign.id, "user_id": user.id,
                                 "workspace_id": campaign.workspace_id, "role": _role(user, campaign.workspace_id),
                                 "action": action, "at": utcnow()}]))


def record_event(campaign: Campaign, event: str, actor: User | None, values: dict[str, Any] | None = None) -> None:
    """A lifecycle event performed by a person: submit, restore, an upload's build, a new owner."""
    if actor is None:
        return
    if event in EVENT_CONTRIBUTIONS:
        record(campaign, actor, EVENT_CONTRIBUTIONS[event])
    owner_id = (values or {}).get("author_id")
    if owner_id is not None:
        if campaign.author_id is not None and campaign.author_id != owner_id:  # the row still holds the old one
            record(campaign, db.session.get(User, campaign.author_id), "created")
        record(campaign, db.session.get(User, owner_id), "owner")


def inherit(copy, source):
    """A clone carries its source's text and settings: whoever shaped the source shaped the copy."""
    rows = [{"campaign_id": copy.id, "user_id": user_id, "workspace_id": copy.workspace_id, "role": role,
             "action": "cloned_from", "at": utcnow()}
            for user_id, role in db.session.execute(select(CampaignContributor.user_id, CampaignContributor.role)
                                                    .where(CampaignContributor.campaign_id == source.id))]
    if source.author_id is not None and source.author_id not in {r["user_id"] for r in rows}:
        rows.append({"campaign_id": copy.id, "user_id": source.author_id, "workspace_id": copy.workspace_id,
                     "role": "author", "action": "cloned_from", "at": utcnow()})
    if rows:
        db.session.execute(_insert(rows))


def of_campaign(campaign: Campaign) -> dict[int, str]:
    """{user_id: first action} of everyone who shaped the campaign (the author included)."""
    return of_campaigns([campaign])[campaign.id]


def of_campaigns(campaigns):
    """{campaign_id: {user_id: action}} for many campaigns in one query (the moderation queue)."""
    result = {c.id: ({c.author_id: "created"} if c.author_id is not None else {}) for c in campaigns}
    if result:
        rows = db.session.execute(select(CampaignContributor.campaign_id, CampaignContributor.user_id,
                                         CampaignContributor.action)
                                  .where(CampaignContributor.campaign_id.in_(list(result))))
        for campaign_id, user_id, action in rows:
            result[campaign_id][user_id] = action
    return result


def listing(campaign):
    """The contributors for the campaign page: (email, role, action, at), oldest first."""
    rows = db.session.execute(select(CampaignContributor).where(CampaignContributor.campaign_id == campaign.id)
                              .order_by(CampaignContributor.at, CampaignContributor.user_id)).scalars()
    return [(r.user.email, r.role, PHRASES[r.action], r.at) for r in rows]
