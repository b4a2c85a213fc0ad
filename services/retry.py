"""Send again to the failed numbers (issue 17, item 5).

On a finished campaign (Done, Failed, Expired, Cancelled) the author or an admin makes a new draft,
linked to the original (`retry_of_id`), holding exactly the recipients whose last state is a failure
of the class they pick — never a delivered one, never a number on the stop-list now. The draft goes
through moderation like any campaign (it is a clone of the original's settings).

Classes, over the recipient's last state (`recipients.state`, `smpp_status`):
- `expired`: never sent before the window ended — state `expired` (its Spread day passed), or still
  queued/claimed in a campaign that is Expired;
- `temporary`: worth another try — the `expired` class, failures whose report is EXPIRED or whose
  SMPP status is transient (throttled, queue full, system error…), and numbers that never reached
  the Core (still queued/claimed when the campaign ended: Core unreachable, cancelled, failed);
- `failed`: every final failure — state `failed` (any code), `expired`, and never-sent numbers.

The recipients are copied with one INSERT … SELECT (no rows through Python: flat memory).
"""
from typing import cast

from sqlalchemy import bindparam, text
from sqlalchemy.engine import CursorResult

import audit
from extensions import db
from models import Campaign
from models.states import CampaignStatus as S
from services import campaigns as lifecycle
from services import smpp_codes
from services.campaign_drafts import persistence as drafts
from services.campaigns import IllegalTransition
from services.errors import Conflict, DomainError, Forbidden

CLASSES = ("temporary", "failed", "expired")
RETRYABLE = frozenset({S.DONE, S.FAILED, S.EXPIRED, S.CANCELLED})
NEVER_SENT = "r.state IN ('queued', 'claimed')"
TEMPORARY_STATUSES = ("EXPIRED",) + tuple(
    form for code, (_, _, transient) in smpp_codes.COMMAND_STATUS.items() if transient
    for form in (f"0x{code:08X}", f"0x{code:08x}"))


def _condition(which, source):
    """SQL over recipients `r` selecting the class `which` of campaign `source`."""
    expired = "r.state = 'expired'"
    if source.status == S.EXPIRED:
        expired = f"({expired} OR {NEVER_SENT})"
    if which == "expired":
        return expired
    if which == "temporary":
        return f"({expired} OR {NEVER_SENT} OR (r.state = 'failed' AND r.smpp_status IN :temporary))"
    return f"(r.state IN ('failed', 'expired') OR {NEVER_SENT})"


def _query(sql, which, source, **params):
    """The statement for class `which` and its parameters (the transient codes only when used)."""
    stmt = text(sql.replace("{cond}", _condition(which, source)))
    params.update(src=source.id, ws=source.workspace_id)
    if ":temporary" in stmt.text:
        stmt = stmt.bindparams(bindparam("temporary", expanding=True))
        params["temporary"] = list(TEMPORARY_STATUSES)
    return stmt, params


_FROM = ("FROM recipients r WHERE r.campaign_id = :src AND {cond} AND NOT EXISTS "
         "(SELECT 1 FROM stop_list s WHERE s.workspace_id = :ws AND s.number = r.number)")


def parse_which(which):
    if not isinstance(which, str) or which not in CLASSES:
        raise DomainError(f"Choose which numbers to send to again: one of {', '.join(CLASSES)}.",
                          code="invalid_which", status=400)
    return which


def count(source, which):
    """How many recipients of `source` the class `which` holds (stop-listed numbers left out)."""
    stmt, params = _query("SELECT count(*) " + _FROM, which, source)
    return int(db.session.execute(stmt, params).scalar() or 0)


def counts(source):
    """{class: count} for the detail page's choice (only for a finished campaign)."""
    if source.status not in RETRYABLE:
        return {}
    return {which: count(source, which) for which in CLASSES}


def retry_failed(workspace, campaign_id, which, membership, user):
    """Make the retry draft; returns (draft, number of recipients). Raises DomainError
    (invalid_which 400, illegal_transition 409, nothing_to_retry 409)."""
    which = parse_which(which)
    source = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    lifecycle.ensure_may_act(source, "clone", membership, user)
    if not lifecycle.is_owner_or_manager(source, membership, user):
        raise Forbidden("Only the campaign's author or a workspace admin can send it again.")
    if source.status not in RETRYABLE:
        raise IllegalTransition(f"Campaign #{source.id} is {source.status}; send again to failed numbers "
                                          "once it has finished (Done, Failed, Expired or Cancelled).")
    if not count(source, which):
        raise Conflict(f"No recipient of campaign #{source.id} is in the class {which!r}; nothing to send again.",
                       code="nothing_to_retry")
    draft = drafts.clone(workspace, source.id, membership, user)
    notes = list(getattr(draft, "clone_notes", []))
    stmt, params = _query("INSERT INTO recipients (campaign_id, number, ctn_hash, state) "
                          "SELECT :dst, r.number, r.ctn_hash, 'queued' " + _FROM, which, source, dst=draft.id)
    inserted = cast(CursorResult, db.session.execute(stmt, params)).rowcount  # an INSERT answers a cursor result
    db.session.execute(db.update(Campaign).where(Campaign.id == draft.id).values(
        recipients_count=inserted, queued_count=inserted, retry_of_id=source.id, retry_which=which,
        name=_retry_name(source.name, which)))
    db.session.commit()
    db.session.refresh(draft)
    audit.record("campaigns.retry_created", workspace_id=workspace.id, object_type="campaign", object_id=draft.id,
                 before={"source_id": source.id}, after={"which": which, "recipients": inserted},
                 note=f"send again to the {which} numbers of campaign #{source.id}")
    audit.record("campaigns.retried", workspace_id=workspace.id, object_type="campaign", object_id=source.id,
                 after={"retry_id": draft.id, "which": which, "recipients": inserted})
    draft.clone_notes = notes
    return draft, inserted


def _retry_name(name, which):
    name = f"Retry ({which}) of {name}"
    return name if len(name) <= 120 else name[:119] + "…"
