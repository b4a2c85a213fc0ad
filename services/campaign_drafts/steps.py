"""The wizard's steps: which steps a draft has, moving between them, who may edit a draft, and the
effective SMPP values.

SMPP fields: once a sender revision is pinned, `saddr/ston/snpi` hold the values the campaign will
use (the revision's, unless overridden in step 3) and `dton/dnpi` default to international E.164
(1/1). Storing the effective values keeps the list's Sender sort and search on one table.
"""
from models.states import CampaignStatus as S
from models.states import Mode
from services import campaigns as lifecycle
from services import senders
from services.errors import Forbidden

STEPS = {1: "Mode", 2: "Parameters", 3: "SMPP", 4: "Recipients", 5: "Review"}
DEFAULT_DTON, DEFAULT_DNPI = 1, 1          # international, ISDN/E.164 — what the normaliser produces


# --- steps -------------------------------------------------------------------------------

def steps_for(campaign_or_mode):
    mode = getattr(campaign_or_mode, "mode", campaign_or_mode)
    return [n for n in STEPS if not (n == 4 and mode == Mode.TRIGGER)]


def next_step(campaign, step):
    later = [n for n in steps_for(campaign) if n > step]
    return later[0] if later else step


def previous_step(campaign, step):
    earlier = [n for n in steps_for(campaign) if n < step]
    return earlier[-1] if earlier else None


def reachable(campaign, step):
    return step in steps_for(campaign) and step <= campaign.wizard_step


def get_editable(workspace, campaign_id, membership, user):
    """The draft for the wizard: the author's own (or any, for admins), in status New, not archived."""
    campaign = lifecycle.get_campaign(workspace, campaign_id, membership, user)
    ensure_editable(campaign, membership, user)
    return campaign


def is_uploading(campaign):
    """A draft whose recipient upload is running: the pipeline moved it to Building (not submitted)."""
    return campaign.status == S.BUILDING and campaign.submitted_at is None and campaign.archived_at is None


def ensure_editable(campaign, membership, user):
    if not lifecycle.is_owner_or_manager(campaign, membership, user):
        raise Forbidden("Only the campaign's author or a workspace admin can edit it.")
    if campaign.archived_at is not None:
        raise lifecycle.IllegalTransition("This campaign is archived; restore it before editing.")
    if is_uploading(campaign):
        raise lifecycle.IllegalTransition("Recipients are still being read; edit the draft again when the "
                                          "upload has finished.")
    if campaign.status != S.NEW:
        raise lifecycle.IllegalTransition(
            f"Campaign #{campaign.id} is {campaign.status}; only drafts (status New) can be edited. "
            "Clone it to start a changed copy.")


# --- sender names ------------------------------------------------------------------------

def approved_sender_revisions(workspace):
    """The sender revisions step 2 offers (the registry's current approved, non-archived names)."""
    return list(senders.approved_revisions_for_wizard(workspace))


def effective_smpp(campaign):
    """The SMPP fields the campaign sends with, and the sender revision's defaults they come from."""
    revision = campaign.sender_revision
    default = {"saddr": revision.saddr if revision else None, "ston": revision.ton if revision else None,
               "snpi": revision.npi if revision else None, "dton": DEFAULT_DTON, "dnpi": DEFAULT_DNPI}
    values = {k: (getattr(campaign, k) if getattr(campaign, k) is not None else default[k]) for k in default}
    overridden = {k for k in default if default[k] is not None and values[k] != default[k]}
    return values, default, overridden
