"""GDPR mode: after a retention period, the recipient numbers of finished campaigns are replaced by
a token made of their `ctn_hash` and masked tail. Irreversible by design.

The mode is on for every workspace when the installation says so (GDPR_MODE), or per workspace
(enabled once on its settings page, never disabled). `anonymise_due()` is the periodic job's work:
campaigns in a terminal status (Done, Cancelled, Failed, Expired) whose `finished_at` is older than
the retention are rewritten in batches, committing after each, so a crash resumes where it
stopped; rows already rewritten are recognised by the `*` in the number and skipped (idempotent).
Counters, the `ctn_hash` column, message errors (which only keep a tail) and the audit log stay.
Upload job errors lose their raw line, which may hold a number.
"""
import base64
import time
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

import audit
from extensions import db
from models import (
    AnonymisedCampaign,
    Campaign,
    JobError,
    Recipient,
    Workspace,
    WorkspaceGdpr,
    utcnow,
)
from services import settings
from services.errors import DomainError

FINISHED = ("Done", "Cancelled", "Failed", "Expired")
MARK = "*"
TAIL = 3


def installation_mode():
    return bool(current_app.config["GDPR_MODE"])


def default_retention_days():
    return int(settings.value("GDPR_RETENTION_DAYS"))


def anonymised_number(number, ctn_hash_hex):
    """`491701234567` -> `K5XQ2M7RJ3A*567`: 55 bits of the keyed hash and the last 3 digits,
    15 characters (the column's width), distinct within a campaign for all practical purposes."""
    head = base64.b32encode(bytes.fromhex(ctn_hash_hex)[:7]).decode("ascii")[:15 - TAIL - 1]
    return f"{head}{MARK}{number[-TAIL:]}"


def is_anonymised(number):
    return MARK in (number or "")


def settings_for(workspace):
    """{'enabled', 'retention_days', 'enabled_at', 'source'} for the settings page."""
    row = db.session.get(WorkspaceGdpr, workspace.id)
    if row is not None:
        return {"enabled": True, "retention_days": row.retention_days, "enabled_at": row.enabled_at,
                "source": "workspace"}
    if installation_mode():
        return {"enabled": True, "retention_days": default_retention_days(), "enabled_at": None,
                "source": "installation"}
    return {"enabled": False, "retention_days": default_retention_days(), "enabled_at": None, "source": None}


def enable(workspace, user, retention_days):
    if db.session.get(WorkspaceGdpr, workspace.id) is not None:
        raise DomainError("GDPR mode is already on for this workspace.", code="gdpr_enabled", status=409)
    if not isinstance(retention_days, int) or not 1 <= retention_days <= 3650:
        raise DomainError("The retention period is between 1 and 3650 days.", code="invalid_retention")
    db.session.add(WorkspaceGdpr(workspace_id=workspace.id, retention_days=retention_days,
                                 enabled_by_id=user.id if user else None))
    db.session.commit()
    audit.record("workspace.gdpr_enabled", workspace_id=workspace.id, object_type="workspace",
                 object_id=workspace.id, after={"retention_days": retention_days})


def _retentions():
    """(workspace_id, retention days) of every workspace in GDPR mode."""
    rows = {r.workspace_id: r.retention_days for r in db.session.execute(db.select(WorkspaceGdpr)).scalars()}
    if installation_mode():
        for ws_id in db.session.execute(db.select(Workspace.id)).scalars():
            rows.setdefault(ws_id, default_retention_days())
    return sorted(rows.items())


def due_campaign_ids(workspace_id, retention_days, now=None):
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    done = db.select(AnonymisedCampaign.campaign_id)
    return list(db.session.execute(db.select(Campaign.id).where(
        Campaign.workspace_id == workspace_id, Campaign.status.in_(FINISHED),
        Campaign.finished_at.is_not(None), Campaign.finished_at < cutoff,
        Campaign.id.not_in(done)).order_by(Campaign.id)).scalars())


def anonymise_campaign(campaign_id, batch_size=None, deadline=None):
    """Rewrite one campaign's numbers in batches. Returns (rows rewritten, finished?)."""
    batch_size = batch_size or current_app.config["GDPR_BATCH_SIZE"]
    campaign = db.session.get_one(Campaign, campaign_id)
    rewritten, after_id = 0, 0
    while True:
        rows = db.session.execute(db.select(Recipient.id, Recipient.number, Recipient.ctn_hash).where(
            Recipient.campaign_id == campaign_id, Recipient.id > after_id).order_by(Recipient.id)
            .limit(batch_size)).all()
        if not rows:
            break
        after_id = rows[-1].id
        changes = [{"id": r.id, "number": anonymised_number(r.number, r.ctn_hash)}
                   for r in rows if not is_anonymised(r.number)]
        if changes:
            db.session.execute(update(Recipient), changes)
            db.session.commit()
            rewritten += len(changes)
        if deadline is not None and time.monotonic() > deadline:
            return rewritten, False
    db.session.execute(update(JobError).where(JobError.campaign_id == campaign_id, JobError.raw.is_not(None))
                       .values(raw=None))
    total = db.session.scalar(db.select(db.func.count(Recipient.id)).where(Recipient.campaign_id == campaign_id))
    db.session.add(AnonymisedCampaign(campaign_id=campaign_id, workspace_id=campaign.workspace_id,
                                      recipients=total or 0))
    db.session.commit()
    audit.record("campaign.numbers_anonymised", workspace_id=campaign.workspace_id, object_type="campaign",
                 object_id=campaign_id, after={"recipients": total or 0, "rewritten_now": rewritten},
                 note="GDPR mode: numbers replaced by hash and masked tail", actor_email="system")
    return rewritten, True


def anonymise_due(now=None, time_budget=None):
    """The periodic job's work. Returns the number of campaigns completed in this run."""
    budget = time_budget if time_budget is not None else current_app.config["GDPR_TIME_BUDGET"]
    deadline = time.monotonic() + budget
    completed = 0
    for workspace_id, retention in _retentions():
        for campaign_id in due_campaign_ids(workspace_id, retention, now):
            _, finished = anonymise_campaign(campaign_id, deadline=deadline)
            completed += finished
            if time.monotonic() > deadline:
                return completed
    return completed
