"""Campaign test data: approved sender names, campaigns in any state, recipients — written directly,
so a test can start from the state it is about (the wizard tests build theirs through the pages)."""
import itertools
from datetime import timedelta

from extensions import db
from models import Campaign, Recipient, SenderName, SenderRevision, utcnow
from services import approval
from services.numbers import ctn_hash

_seq = itertools.count(1)


def make_sender(workspace, saddr="ACME", *, label=None, ton=5, npi=0, state="approved", created_by=None,
                archived=False):
    """A sender name with one revision in `state` (approved by default); returns the revision."""
    sender = SenderName(workspace_id=workspace.id, label=label or f"{saddr} {next(_seq)}",
                        created_by_id=created_by.id if created_by else None,
                        archived_at=utcnow() if archived else None)
    db.session.add(sender)
    db.session.flush()
    revision = SenderRevision(sender_id=sender.id, workspace_id=workspace.id, number=1, saddr=saddr, ton=ton,
                              npi=npi, state=state, created_by_id=created_by.id if created_by else None,
                              submitted_at=utcnow(), decided_at=utcnow() if state == "approved" else None)
    db.session.add(revision)
    db.session.commit()
    return revision


def make_campaign(workspace, author, *, mode="OnDemand", status="New", moderation="awaiting", sender=None,
                  recipients=0, archived=False, name=None, **fields):
    """A campaign ready to submit (sender, text, timing for its mode) in the given state."""
    now = utcnow()
    values = dict(workspace_id=workspace.id, author_id=author.id if author else None, mode=mode, status=status,
                  moderation=moderation, name=name or f"Campaign {next(_seq)}", message_text="Hello from ACME",
                  wizard_step=5, auto_start=True)
    if sender is not None:
        values.update(sender_revision_id=sender.id, saddr=sender.saddr, ston=sender.ton, snpi=sender.npi,
                      dton=1, dnpi=1)
    if mode == "OnTime":
        values["start_at"] = now + timedelta(days=1)
    if mode == "Spread":
        values.update(spread_first_day=(now + timedelta(days=1)).date(),
                      spread_last_day=(now + timedelta(days=3)).date(), start_at=now + timedelta(days=1))
    if status != "New" or moderation != "awaiting":
        values["submitted_at"] = now
    if archived:
        values["archived_at"] = now
    values.update(fields)
    campaign = Campaign(**values)
    db.session.add(campaign)
    db.session.commit()
    if recipients:
        add_recipients(campaign, [f"4917{n:08d}" for n in range(1, recipients + 1)])
    return campaign if "approval_fingerprint" in fields else bind_approval(campaign)


def bind_approval(campaign):
    """An approved campaign made here carries the fingerprint an approval would have stored
    (services/approval.py), so dispatch accepts it as approved with what it holds now."""
    if campaign.moderation == "approved":
        for key, value in approval.approval_values(campaign).items():
            setattr(campaign, key, value)
        db.session.commit()
    return campaign


def add_recipients(campaign, numbers):
    db.session.add_all(Recipient(campaign_id=campaign.id, number=n, ctn_hash=ctn_hash(n, campaign.workspace_id),
                                 state="queued") for n in numbers)
    campaign.recipients_count = (campaign.recipients_count or 0) + len(numbers)
    db.session.commit()
    return bind_approval(campaign)
