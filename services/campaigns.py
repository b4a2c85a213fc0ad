"""Campaign lifecycle: the one transition table, and every status/moderation change through it.

Each event names the statuses it may start from and where it leads. `apply()` performs it with a
conditional UPDATE (`… WHERE status = :expected AND moderation = :expected`), so two people (or
a job and a person) racing on one campaign produce one change and one clear error — never a
double approval or a silent no-op. Nothing reaches `Sending` without `moderation = 'approved'`:
the table only leads there from an approved state, `apply()` refuses any UPDATE that would, and
the UPDATE's guard re-checks the moderation the decision was based on.

People reach the table through `perform()` (scoped lookup, permission, then the transition); jobs
call `apply()` directly for the system events (build_finished, fail, expire, finish).
"""
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rq.job import Job
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm.interfaces import ORMOption

import audit
from extensions import affected_rows, db
from models import Campaign, Membership, Upload, User, Workspace, utcnow
from models.states import CampaignStatus as S
from models.states import Mode, RevisionState
from models.states import Moderation as M
from services import approval, contributors, permissions, schedule
from services.errors import Conflict, DomainError, Forbidden, NotFound
from services.moderation_rules import ensure_may_decide
from services.queues import JobNames, enqueue_job

TERMINAL = frozenset({S.DONE, S.CANCELLED, S.FAILED, S.EXPIRED})
ARCHIVABLE = TERMINAL | {S.NEW}
ACTIVE = frozenset({S.BUILDING, S.PENDING, S.SENDING, S.PAUSED})
ALL_STATUSES = frozenset({S.NEW}) | ACTIVE | TERMINAL
log = logging.getLogger("mc.campaigns")


class IllegalTransition(DomainError):
    code = "illegal_transition"
    status = 409


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str | Callable[[Campaign, datetime], str] | None = None  # a status, None (status unchanged) or a function
    moderation_from: frozenset[str] | None = None  # required current moderation, None = any
    moderation_to: str | None = None
    who: str = "owner"               # owner | moderator | system
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _after_build(campaign: Campaign, now: datetime) -> str:
    # Ingest finished: a draft goes back to the wizard; a submitted campaign waits for moderation.
    return S.PENDING if campaign.submitted_at else S.NEW


def _after_failed_build(campaign: Campaign, now: datetime) -> str:
    # A bad file changes nothing for a draft: it goes back to the wizard with the job error.
    return S.FAILED if campaign.submitted_at else S.NEW


def _after_approval(campaign: Campaign, now: datetime) -> str:
    # OnDemand and Trigger start at once when auto-start is on; OnTime and Spread wait for their
    # start (the dispatch tick starts them) or start at once when approved late but still inside
    # their window (services/schedule.py) — past it they are Expired; without auto-start everything
    # waits for a manual Start.
    if schedule.window_over(campaign, now):
        return S.EXPIRED
    if campaign.auto_start and (campaign.mode in (Mode.ON_DEMAND, Mode.TRIGGER) or not schedule.not_yet(campaign, now)):
        return S.SENDING
    return S.PENDING


def _after_start(campaign: Campaign, now: datetime) -> str:
    # OnTime holds its time (issue 17): a Start before start_at (or a Spread's first day) schedules
    # the campaign — it stays Pending with start_requested_at set, and the tick starts it on time.
    return S.PENDING if schedule.not_yet(campaign, now) else S.SENDING


def _after_submit(campaign: Campaign, now: datetime) -> str:
    return S.BUILDING if campaign.mode == Mode.SPREAD else S.PENDING


TRANSITIONS = {
    "build": Transition(frozenset({S.NEW}), S.BUILDING, who="owner", label="Upload recipients"),
    "build_finished": Transition(frozenset({S.BUILDING}), _after_build, who="system"),
    "build_failed": Transition(frozenset({S.BUILDING}), _after_failed_build, who="system"),
    "submit": Transition(frozenset({S.NEW}), _after_submit, moderation_to=M.AWAITING, label="Submit to moderation"),
    "approve": Transition(frozenset({S.PENDING}), _after_approval, frozenset({M.AWAITING}), M.APPROVED,
                          who="moderator", label="Approve"),
    "reject": Transition(frozenset({S.PENDING}), S.NEW, frozenset({M.AWAITING}), M.REJECTED,
                         who="moderator", label="Reject"),
    "start": Transition(frozenset({S.PENDING}), _after_start, frozenset({M.APPROVED}), label="Start"),
    "pause": Transition(frozenset({S.SENDING}), S.PAUSED, frozenset({M.APPROVED}), label="Pause"),
    # Dispatch stops a campaign the Core keeps refusing (circuit breaker, give-up); pause_reason says why.
    "system_pause": Transition(frozenset({S.SENDING}), S.PAUSED, frozenset({M.APPROVED}), who="system"),
    "resume": Transition(frozenset({S.PAUSED}), S.SENDING, frozenset({M.APPROVED}), label="Resume"),
    "cancel": Transition(frozenset({S.BUILDING, S.PENDING, S.SENDING, S.PAUSED}), S.CANCELLED, label="Cancel"),
    "finish": Transition(frozenset({S.SENDING, S.PAUSED}), S.DONE, label="Finish"),
    "fail": Transition(frozenset({S.BUILDING, S.PENDING, S.SENDING, S.PAUSED}), S.FAILED, who="system"),
    "expire": Transition(frozenset({S.PENDING, S.SENDING, S.PAUSED}), S.EXPIRED, who="system"),
    "archive": Transition(ARCHIVABLE, None, label="Archive"),
    "restore": Transition(frozenset(ARCHIVABLE), None, label="Restore"),
    # Clone changes nothing on the source; it is in the table so that "may I clone?" has one answer.
    "clone": Transition(ALL_STATUSES, None, who="author", label="Clone"),
}
# Events a person triggers from the detail page, in button order (decisions are offered to moderators).
USER_ACTIONS = ("submit", "start", "pause", "resume", "cancel", "finish", "clone", "archive", "restore")
DECISIONS = ("approve", "reject")
# A person may end only a Trigger campaign (it has no "last recipient"); others finish by themselves.
PERSON_FINISH_MODES = frozenset({Mode.TRIGGER})


def _state(campaign: Campaign) -> dict[str, Any]:
    return {"status": campaign.status, "moderation": campaign.moderation,
            "archived": campaign.archived_at is not None}


def check(campaign: Campaign, event: str, now: datetime | None = None) -> Transition:
    """Raise IllegalTransition unless the table allows `event` from the campaign's current state."""
    rule = TRANSITIONS.get(event)
    if rule is None:
        raise IllegalTransition(f"Unknown action {event!r}.")
    if event == "clone":
        return rule  # from any status, archived or not: the copy is a new draft
    if event == "restore":
        _check_restore(campaign, rule)
        return rule
    if campaign.archived_at is not None:
        raise IllegalTransition("This campaign is archived; restore it first.")
    _check_from_state(campaign, event, rule)
    if event == "submit":
        problems = submit_problems(campaign)
        if problems:
            raise IllegalTransition("Not ready to submit: " + " ".join(problems))
    if event == "start":
        _check_start(campaign, now)
    return rule


def _check_restore(campaign: Campaign, rule: Transition) -> None:
    if campaign.archived_at is None:
        raise IllegalTransition("This campaign is not archived.")
    if campaign.status not in rule.sources:
        raise IllegalTransition(f"An archived campaign cannot be {campaign.status}; it cannot be restored.")


def _check_from_state(campaign: Campaign, event: str, rule: Transition) -> None:
    """The campaign's status and moderation are among those `rule` starts from."""
    if event in DECISIONS and campaign.moderation != M.AWAITING and campaign.moderated_at:
        raise _already_decided(campaign)  # a late decision: say who decided first, not "wrong status"
    if campaign.status not in rule.sources:
        allowed = ", ".join(sorted(rule.sources))
        raise IllegalTransition(f"Cannot {event} a campaign that is {campaign.status} "
                                f"(only from: {allowed}).")
    if rule.moderation_from is not None and campaign.moderation not in rule.moderation_from:
        if event in DECISIONS:
            raise _already_decided(campaign)
        raise IllegalTransition(f"Cannot {event} a campaign whose moderation is {campaign.moderation}; "
                                "it needs a moderator's approval first.")


def _check_start(campaign: Campaign, now: datetime | None) -> None:
    """A Start that would do nothing, or come too late, is refused with the reason."""
    if schedule.window_over(campaign, now):
        raise IllegalTransition("Its start window has passed; the campaign expires. Clone it to send it again.")
    if schedule.not_yet(campaign, now) and (campaign.auto_start or campaign.start_requested_at):
        raise IllegalTransition(f"Already scheduled: it {schedule.start_phrase(campaign, now) or 'starts on time'}.")


def submit_problems(campaign: Campaign) -> list[str]:
    """What still stops a draft from being submitted, as sentences the author can act on."""
    return (_text_problems(campaign) + _sender_problems(campaign) + _schedule_problems(campaign)
            + _recipient_problems(campaign))


def _text_problems(campaign: Campaign) -> list[str]:
    problems = []
    if not (campaign.name or "").strip():
        problems.append("Give the campaign a name (step 2).")
    if not (campaign.message_text or "").strip():
        problems.append("Write the message text (step 2).")
    return problems


def _sender_problems(campaign: Campaign) -> list[str]:
    revision = campaign.sender_revision
    if revision is None:
        return ["Choose an approved sender name (step 2)."]
    if revision.state != RevisionState.APPROVED or (revision.sender and revision.sender.archived_at is not None):
        return [f"The sender name {revision.saddr!r} is no longer approved; choose another (step 2)."]
    return []


def _schedule_problems(campaign: Campaign) -> list[str]:
    if campaign.mode == Mode.ON_TIME:
        if campaign.start_at is None:
            return ["Set the start time (step 2)."]
        if campaign.start_at <= utcnow():
            return ["The start time has passed; set a new one (step 2)."]
    if campaign.mode == Mode.SPREAD:
        if campaign.spread_first_day is None or campaign.spread_last_day is None:
            return ["Set the Spread window's first and last day (step 2)."]
        if campaign.spread_last_day < _today_in(campaign):
            return ["The Spread window is over; choose new days (step 2)."]
    return []


def _recipient_problems(campaign: Campaign) -> list[str]:
    if campaign.mode == Mode.TRIGGER:
        return []
    if campaign.id is not None and uploads_running(campaign):
        return ["Wait until the recipient upload has finished (step 4)."]
    if not campaign.recipients_count:
        return ["Add recipients (step 4)."]
    return []


def _today_in(campaign: Campaign) -> date:
    tz = ZoneInfo(campaign.workspace.timezone if campaign.workspace else "UTC")
    return utcnow().astimezone(tz).date()


def uploads_running(campaign: Campaign) -> bool:
    return db.session.execute(select(Upload.id).where(Upload.campaign_id == campaign.id,
                                                      Upload.state.in_(("queued", "running"))).limit(1)).first() \
        is not None


def _already_decided(campaign: Campaign) -> Conflict:
    who = campaign.moderated_by.email if campaign.moderated_by else "another moderator"
    when = campaign.moderated_at.strftime("%Y-%m-%d %H:%M:%S UTC") if campaign.moderated_at else "just now"
    return Conflict(f"Campaign #{campaign.id} was already {campaign.moderation} by {who} at {when}.",
                    code="already_decided")


def apply(campaign: Campaign, event: str, *, actor: User | None = None, note: str | None = None,
          values: dict[str, Any] | None = None, now: datetime | None = None) -> Campaign:
    """Perform `event` atomically; returns the refreshed campaign. Raises IllegalTransition/Conflict.
    `now` (UTC) is the clock the schedule is judged by (tests and the tick pass theirs)."""
    if event == "clone":
        raise IllegalTransition("Cloning makes a new campaign; use services.campaign_drafts.persistence.clone().")
    now = now or utcnow()
    rule = check(campaign, event, now)
    before = _state(campaign)
    changes = dict(values or {})
    changes.update(_status_changes(campaign, event, rule, now))
    changes.update(_moderation_changes(campaign, event, rule, actor, note, now))
    if event == "start" and changes.get("status") == S.PENDING:
        changes["start_requested_at"] = now  # scheduled: the tick starts it at its time
    if event in ("pause", "resume"):
        changes["pause_reason"] = None  # a system pause's reason ends with the operator's Resume
    changes["updated_at"] = now
    # The invariant the whole platform leans on: nothing is dispatched without an approval.
    if changes.get("status", campaign.status) in (S.SENDING, S.PAUSED) \
            and changes.get("moderation", campaign.moderation) != M.APPROVED:
        raise IllegalTransition(f"Cannot {event} campaign #{campaign.id}: it has not been approved by a moderator.")

    done = affected_rows(db.session.execute(update(Campaign).where(*_guard(campaign, event)).values(**changes)
                              .execution_options(synchronize_session=False)))
    if not done:
        db.session.rollback()
        db.session.refresh(campaign)
        if event in ("approve", "reject") and campaign.moderation != M.AWAITING:
            raise _already_decided(campaign)
        raise Conflict(f"Campaign #{campaign.id} changed meanwhile (it is now {campaign.status}, "
                       f"moderation {campaign.moderation}); reload and try again.", code="changed_meanwhile")
    contributors.record_event(campaign, event, actor, values)  # four-eyes: in the change's transaction
    db.session.commit()
    db.session.refresh(campaign)
    after = _state(campaign)
    if event == "approve":
        after["fingerprint"] = campaign.approval_fingerprint
    audit.record(f"campaigns.{event}", workspace_id=campaign.workspace_id, object_type="campaign",
                 object_id=campaign.id, before=before, after=after, note=note,
                 **({} if actor is not None else {"actor_email": "system", "actor_role": "system"}))
    return campaign


def _status_changes(campaign: Campaign, event: str, rule: Transition, now: datetime) -> dict[str, Any]:
    """The archive flag, or the status the event leads to with its start/finish time."""
    if event == "archive":
        return {"archived_at": now}
    if event == "restore":
        return {"archived_at": None}
    changes: dict[str, Any] = {}
    target = rule.target(campaign, now) if callable(rule.target) else rule.target
    if target is not None:
        changes["status"] = target
        if target == S.SENDING and campaign.started_at is None:
            changes["started_at"] = now
        if target in TERMINAL:
            changes["finished_at"] = now
    return changes


def _moderation_changes(campaign: Campaign, event: str, rule: Transition, actor: User | None, note: str | None,
                        now: datetime) -> dict[str, Any]:
    """Moderation, submission and approval columns the event sets."""
    changes: dict[str, Any] = {}
    if rule.moderation_to is not None:
        changes["moderation"] = rule.moderation_to
    if event == "submit":
        changes["submitted_at"] = now
        changes.update(moderated_by_id=None, moderated_at=None, approval_fingerprint=None, approval_basis=None)
    if event == "approve":  # the approval binds what was approved (services/approval.py)
        changes.update(approval.approval_values(campaign))
    if event in DECISIONS:
        if actor is None:
            raise IllegalTransition(f"Cannot {event} without the moderator who decides.")
        changes.update(moderated_by_id=actor.id, moderated_at=now, moderation_note=note)
    if event == "reject":
        changes["submitted_at"] = None
    return changes


def _guard(campaign: Campaign, event: str) -> list[ColumnElement[bool]]:
    """The state we checked; anyone who changed it first wins and we report it."""
    guard = [Campaign.id == campaign.id, Campaign.status == campaign.status,
             Campaign.moderation == campaign.moderation]
    guard.append(Campaign.archived_at.is_(None) if campaign.archived_at is None else Campaign.archived_at.isnot(None))
    if event in DECISIONS:  # the submission decided on: not one made after a reject + resubmit
        guard.append(Campaign.submitted_at.is_(None) if campaign.submitted_at is None
                     else Campaign.submitted_at == campaign.submitted_at)
    return guard


# --- who may do what ---------------------------------------------------------------------

def is_owner_or_manager(campaign: Campaign, membership: Membership | None, user: User) -> bool:
    return (campaign.author_id == user.id and permissions.allowed("campaigns.create", membership,
                                                                   superadmin=user.is_superadmin)) \
        or permissions.allowed("campaigns.manage_all", membership, superadmin=user.is_superadmin)


def ensure_may_act(campaign: Campaign, event: str, membership: Membership | None, user: User) -> None:
    rule = TRANSITIONS[event]
    if rule.who == "system":
        raise Forbidden("This change is made by the system, not by a person.")
    if rule.who == "moderator":
        ensure_may_decide(campaign.workspace, membership, user, contributors.of_campaign(campaign), "campaign")
        return
    if rule.who == "author":
        # Clone: anyone who may see the campaign and create campaigns; the copy is theirs.
        permissions.require("campaigns.create", membership, superadmin=user.is_superadmin)
        return
    if event == "finish" and campaign.mode not in PERSON_FINISH_MODES:
        raise IllegalTransition("This campaign finishes by itself when every recipient has a final state; "
                                "cancel it to stop early.")
    if not is_owner_or_manager(campaign, membership, user):
        raise Forbidden("Only the campaign's author or a workspace admin can do this.")


def allowed_actions(campaign: Campaign, membership: Membership | None, user: User) -> list[str]:
    """The user actions the detail page offers: allowed by both the transition table and permissions."""
    actions = []
    for event in USER_ACTIONS[:1] + DECISIONS + USER_ACTIONS[1:]:
        try:
            check(campaign, event)
            ensure_may_act(campaign, event, membership, user)
        except DomainError:
            continue
        actions.append(event)
    return actions


def perform(workspace: Workspace, campaign_id: object, event: str, membership: Membership | None, user: User,
            note: str | None = None) -> Campaign:
    """Entry point for pages and the API: scoped lookup, permission, then the transition."""
    if event not in USER_ACTIONS and event not in DECISIONS:
        raise IllegalTransition(f"Unknown action {event!r}.")
    if event == "clone":
        # Lazy: services.campaign_drafts builds on this module (its steps and saves call the lifecycle).
        from services.campaign_drafts import persistence as drafts

        return drafts.clone(workspace, campaign_id, membership, user)
    campaign = get_campaign(workspace, campaign_id, membership, user)
    ensure_may_act(campaign, event, membership, user)
    if event == "reject" and not (note or "").strip():
        raise DomainError("Write a note saying why the campaign is rejected; the author will see it.",
                          code="note_required")
    if event == "restore" and not author_is_active_member(campaign):
        raise DomainError("The campaign's author is no longer a member; choose a new owner to restore it.",
                          code="owner_required", status=409)
    campaign = apply(campaign, event, actor=user, note=(note or "").strip() or None)
    if event == "submit" and campaign.status == S.BUILDING:
        enqueue_spread_plan(campaign)
    return campaign


def enqueue_spread_plan(campaign: Campaign) -> Job:
    """Spread: after submit (committed), the recipients pipeline assigns recipients to days and
    reports `build_finished` (the job is jobs.uploads.plan_spread, queued by name)."""
    return enqueue_job(JobNames.PLAN_SPREAD, campaign.id, queue="uploads")


def approve(workspace: Workspace, campaign_id: object, membership: Membership | None, user: User) -> Campaign:
    return perform(workspace, campaign_id, "approve", membership, user)


def reject(workspace: Workspace, campaign_id: object, membership: Membership | None, user: User,
           note: str | None) -> Campaign:
    return perform(workspace, campaign_id, "reject", membership, user, note=note)


def author_is_active_member(campaign: Campaign) -> bool:
    if campaign.author_id is None or campaign.author is None or not campaign.author.is_active:
        return False
    return campaign.author.membership_in(campaign.workspace_id) is not None


def owner_candidates(workspace: Workspace) -> list[Membership]:
    """Members who can own a restored campaign: active accounts whose role may create campaigns."""
    rows = db.session.execute(select(Membership).where(Membership.workspace_id == workspace.id)).scalars()
    return sorted((m for m in rows if m.user.is_active and permissions.allowed("campaigns.create", m)),
                  key=lambda m: m.user.email)


def restore_with_owner(workspace: Workspace, campaign_id: object, new_owner_id: Any, membership: Membership | None,
                       user: User) -> Campaign:
    """Restore when the author is gone: the campaign gets a new owner among current members."""
    campaign = get_campaign(workspace, campaign_id, membership, user)
    ensure_may_act(campaign, "restore", membership, user)
    try:
        new_owner_id = int(new_owner_id)
    except (TypeError, ValueError):
        raise DomainError("Choose a new owner among the workspace's members.", code="invalid_owner") from None
    owner = next((m for m in owner_candidates(workspace) if m.user_id == new_owner_id), None)
    if owner is None:
        raise DomainError("Choose a new owner among the workspace's active members who may create campaigns.",
                          code="invalid_owner")
    before_author = campaign.author.email if campaign.author else None
    apply(campaign, "restore", actor=user, values={"author_id": owner.user_id})
    audit.record("campaigns.owner_changed", workspace_id=workspace.id, object_type="campaign", object_id=campaign.id,
                 before={"author": before_author}, after={"author": owner.user.email})
    return campaign


# --- lookups -----------------------------------------------------------------------------

def get_campaign(workspace: Workspace, campaign_id: object, membership: Membership | None, user: User, *,
                 options: Sequence[ORMOption] = ()) -> Campaign:
    """Scoped lookup: another workspace's campaign, or another author's for an author, is a 404.
    `options`: loader options for what the caller will show (see campaign_queries)."""
    campaign = db.session.get(Campaign, campaign_id, options=options)
    if campaign is None or campaign.workspace_id != workspace.id:
        raise NotFound("This campaign does not exist in this workspace.")
    if not permissions.allowed("campaigns.view_all", membership, superadmin=user.is_superadmin) \
            and campaign.author_id != user.id:
        raise NotFound("This campaign does not exist in this workspace.")
    return campaign
