"""Trigger campaigns: numbers pushed through the API go out at once (within the next tick).

Each call takes up to 1,000 numbers; bad numbers are reported by index, stop-listed and already
present numbers are reported back, accepted ones are stored queued and a job is scheduled at once
on the Trigger lane (services/trigger_lane.py), whose worker never runs bulk work, so an OTP
reaches the Core in a fraction of a second even while large lists are ingested or sent.
"""
import time
from typing import Any

from sqlalchemy import select, update

import audit
from extensions import db, dialect_insert
from models import Campaign, Recipient
from models.states import CampaignStatus as S
from models.states import Mode
from services import numbers as numbering
from services import stoplist, trigger_lane
from services.errors import Conflict, DomainError

MAX_NUMBERS = 1000


def push_numbers(campaign, raw_numbers):
    pushed_at = time.time()  # the start of "push -> accepted by the Core" (Live Pulse, /metrics)
    if campaign.mode != Mode.TRIGGER or campaign.status != S.SENDING or campaign.archived_at is not None:
        raise Conflict(f"Campaign #{campaign.id} does not accept numbers now: it must be a Trigger campaign "
                       f"in Sending (it is {campaign.mode}, {campaign.status}).", code="not_accepting")
    if not isinstance(raw_numbers, list) or not raw_numbers:
        raise DomainError('Send {"numbers": ["+4917…", …]} with 1 to 1,000 numbers.', code="invalid_numbers")
    if len(raw_numbers) > MAX_NUMBERS:
        raise DomainError(f"At most {MAX_NUMBERS} numbers per call ({len(raw_numbers)} sent); split the list.",
                          code="too_many_numbers", status=413)
    rejected: list[dict] = []
    wanted: dict[str, int] = {}
    for index, raw in enumerate(raw_numbers):
        if not isinstance(raw, str):
            rejected.append({"index": index, "reason": "not a string"})
            continue
        try:
            wanted.setdefault(numbering.normalise_number(raw), index)
        except numbering.BadNumber as exc:
            rejected.append({"index": index, "reason": str(exc)})
    blocked = stoplist.stop_listed_numbers(campaign.workspace_id, wanted)
    fresh = [n for n in wanted if n not in blocked]
    stored: dict[str, int] = {}
    if fresh:
        # Recipients have no foreign key (migration 0007): hold the campaign row while adding.
        db.session.execute(select(Campaign.id).filter_by(id=campaign.id).with_for_update(key_share=True))
        rows = db.session.execute(_insert_ignore(campaign.id, campaign.workspace_id, fresh))
        stored = {number: rid for number, rid in rows}
    inserted = set(stored)
    duplicates = [wanted[n] for n in fresh if n not in inserted]
    if inserted:
        db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
            recipients_count=Campaign.recipients_count + len(inserted),
            queued_count=Campaign.queued_count + len(inserted)))
    db.session.commit()
    if inserted:  # queued at once, after the commit: the lane claims while the audit event is written
        trigger_lane.note_pushed(campaign.id, list(stored.values()), pushed_at)
        trigger_lane.schedule(campaign.id)
    result: dict[str, Any] = {"accepted": len(inserted), "duplicates": sorted(duplicates),
              "stop_listed": sorted(wanted[n] for n in blocked), "rejected": rejected}
    audit.record("campaigns.trigger_push", workspace_id=campaign.workspace_id, object_type="campaign",
                 object_id=campaign.id, after={k: (v if isinstance(v, int) else len(v)) for k, v in result.items()})
    return result


def _insert_ignore(campaign_id, workspace_id, fresh):
    hash_number = numbering.ctn_hasher(numbering.hash_key(workspace_id))   # the workspace's key, once per call
    rows = [{"campaign_id": campaign_id, "number": n, "ctn_hash": hash_number(n.encode("ascii")).decode("ascii"),
             "state": "queued"} for n in fresh]
    return (dialect_insert(Recipient).values(rows).on_conflict_do_nothing(index_elements=["campaign_id", "number"])
            .returning(Recipient.number, Recipient.id))
