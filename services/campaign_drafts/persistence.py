"""Saving drafts: create, save each step (audited before/after, resumable through `wizard_step`),
finish the recipients step, create a complete draft through the API, clone."""
import audit
from extensions import db
from models import Campaign, Membership, SenderRevision, User, Workspace, utcnow
from models.states import Mode
from services import campaigns as lifecycle
from services import contributors, permissions
from services.campaign_drafts.steps import STEPS, approved_sender_revisions, get_editable, next_step
from services.campaign_drafts.validation import (
    InvalidFields,
    today_in,
    validate_mode,
    validate_parameters,
    validate_smpp,
)

EDITED_FIELDS = ("name", "mode", "sender_revision_id", "message_text", "daily_limit", "auto_start", "start_at",
                 "spread_first_day", "spread_last_day", "ignore_daily_window", "saddr", "ston", "snpi", "dton",
                 "dnpi")


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


def save_text(workspace, campaign_id, text, membership, user):
    """Save only the message text from the review step (services/preflight.py: GSM-7 replacements)."""
    campaign = get_editable(workspace, campaign_id, membership, user)
    return _save(campaign, {"message_text": text}, 5, user)


def finish_recipients(workspace, campaign_id, membership, user):
    """Step 4 → 5. Recipients are added by the upload pipeline; this only moves the wizard on."""
    campaign = get_editable(workspace, campaign_id, membership, user)
    if campaign.mode != Mode.TRIGGER and not campaign.recipients_count and not lifecycle.uploads_running(campaign):
        raise InvalidFields({"recipients": "Upload a list of recipients before you continue."})
    return _save(campaign, {}, 4, user)


def create_complete(workspace, membership, user, payload):
    """The API's POST /campaigns: every step's fields at once, validated with the wizard's rules."""
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


def clone(workspace: Workspace, campaign_id: object, membership: Membership | None, user: User) -> Campaign:
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
