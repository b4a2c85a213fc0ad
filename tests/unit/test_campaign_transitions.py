"""The whole campaign transition table, generated: every event from every status × moderation ×
archived state, legal and illegal, against an expectation written independently from design §5.

Each case runs `check()` and `apply()` on a real row: a legal event must produce exactly the
expected status/moderation/archived state; an illegal one must raise a clear error and leave the
row untouched. Impossible states (e.g. Sending while awaiting moderation) are included on purpose:
the table must not lead anywhere dangerous from them either.
"""
import itertools
from datetime import timedelta

import pytest
from sqlalchemy import update

from extensions import db
from models import Campaign, utcnow
from models.campaigns import MODERATION, STATUSES
from services import campaigns as lifecycle
from services.errors import Conflict, DomainError, Forbidden
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

ACTIVE = {"Building", "Pending", "Sending", "Paused"}
ARCHIVABLE = {"New", "Done", "Cancelled", "Failed", "Expired"}
ANY = set(MODERATION)

# event: (statuses it may start from, moderations it needs, resulting status, resulting moderation)
# None as result = unchanged. Written from design §5 / the issue, not copied from the code.
SPEC = {
    "build": ({"New"}, ANY, "Building", None),
    "build_finished": ({"Building"}, ANY, "<after build>", None),
    "build_failed": ({"Building"}, ANY, "<after failed build>", None),
    "submit": ({"New"}, ANY, "Pending", "awaiting"),               # OnDemand campaign in these cases
    "approve": ({"Pending"}, {"awaiting"}, "Sending", "approved"),  # OnDemand + auto-start: sends at once
    "reject": ({"Pending"}, {"awaiting"}, "New", "rejected"),
    "start": ({"Pending"}, {"approved"}, "Sending", None),
    "pause": ({"Sending"}, {"approved"}, "Paused", None),
    "resume": ({"Paused"}, {"approved"}, "Sending", None),
    "system_pause": ({"Sending"}, {"approved"}, "Paused", None),   # circuit breaker / give-up (issue 15)
    "cancel": (ACTIVE, ANY, "Cancelled", None),
    "finish": ({"Sending", "Paused"}, ANY, "Done", None),
    "fail": (ACTIVE, ANY, "Failed", None),
    "expire": ({"Pending", "Sending", "Paused"}, ANY, "Expired", None),
    "archive": (ARCHIVABLE, ANY, None, None),
    "restore": (ARCHIVABLE, ANY, None, None),
}
# Every state a campaign row can be in: the database refuses Sending/Paused without approval
# (ck_campaigns_sending_needs_approval), so those combinations cannot exist to start from.
STATES = [(status, moderation, archived)
          for status, moderation, archived in itertools.product(STATUSES, MODERATION, (False, True))
          if status not in ("Sending", "Paused") or moderation == "approved"]


def test_the_spec_covers_every_event_of_the_table():
    assert set(SPEC) == set(lifecycle.TRANSITIONS) - {"clone"}


def expected(event, status, moderation, archived, submitted):
    """(legal, status_after, moderation_after, archived_after) for an OnDemand auto-start campaign."""
    sources, moderations, to_status, to_moderation = SPEC[event]
    if event == "restore":
        legal = archived and status in sources
    else:
        legal = not archived and status in sources and moderation in moderations
    if not legal:
        return False, status, moderation, archived
    if to_status == "<after build>":
        to_status = "Pending" if submitted else "New"
    if to_status == "<after failed build>":
        to_status = "Failed" if submitted else "New"
    archived_after = {"archive": True, "restore": False}.get(event, archived)
    return True, to_status or status, to_moderation or moderation, archived_after


@pytest.fixture
def world():
    ws = make_workspace("tt")
    author = make_user("author@example.com", workspace=ws, role="author")
    moderator = make_user("mod@example.com", workspace=ws, role="moderator")
    sender = make_sender(ws)
    campaign = make_campaign(ws, author, sender=sender, recipients=2)
    return ws, author, moderator, campaign


def _put_in_state(campaign, status, moderation, archived, submitted=True):
    db.session.execute(update(Campaign).where(Campaign.id == campaign.id).values(
        status=status, moderation=moderation, archived_at=utcnow() if archived else None,
        submitted_at=utcnow() if submitted else None, moderated_by_id=None, moderated_at=None,
        started_at=None, finished_at=None))
    db.session.commit()
    db.session.expire_all()
    return db.session.get(Campaign, campaign.id)


@pytest.mark.parametrize("event", sorted(SPEC))
def test_every_state_for_event(world, event):
    _, _, moderator, campaign = world
    mismatches = []
    for status, moderation, archived in STATES:
        for submitted in ((True, False) if event == "build_finished" else (status != "New",)):
            row = _put_in_state(campaign, status, moderation, archived, submitted)
            legal, want_status, want_moderation, want_archived = expected(event, status, moderation, archived,
                                                                         submitted)
            case = f"{event} from {status}/{moderation}/{'archived' if archived else 'live'}"
            try:
                lifecycle.check(row, event)
                lifecycle.apply(row, event, actor=moderator if event in ("approve", "reject") else None,
                                note="because" if event == "reject" else None)
            except (lifecycle.IllegalTransition, Conflict) as exc:
                assert exc.message, case
                if legal:
                    mismatches.append(f"{case}: refused ({exc.message}) but should be legal")
                db.session.rollback()
                db.session.expire_all()
                after = db.session.get(Campaign, campaign.id)
                if (after.status, after.moderation, after.archived_at is not None) != (status, moderation, archived):
                    mismatches.append(f"{case}: refused but the row changed")
                continue
            if not legal:
                mismatches.append(f"{case}: allowed but should be illegal")
                continue
            db.session.expire_all()
            after = db.session.get(Campaign, campaign.id)
            got = (after.status, after.moderation, after.archived_at is not None)
            if got != (want_status, want_moderation, want_archived):
                mismatches.append(f"{case}: got {got}, want {(want_status, want_moderation, want_archived)}")
            if after.status in ("Sending", "Paused") and after.moderation != "approved":
                mismatches.append(f"{case}: reached {after.status} without approval")
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("mode,auto_start,want", [
    ("OnDemand", True, "Sending"), ("OnDemand", False, "Pending"),
    ("Trigger", True, "Sending"), ("Trigger", False, "Pending"),
    ("OnTime", True, "Pending"), ("OnTime", False, "Pending"),
    ("Spread", True, "Pending"), ("Spread", False, "Pending"),
])
def test_approval_starts_only_what_auto_starts_now(world, mode, auto_start, want):
    ws, author, moderator, _ = world
    sender = make_sender(ws, "OTHER")
    campaign = make_campaign(ws, author, mode=mode, sender=sender, status="Pending", auto_start=auto_start,
                             recipients=0 if mode == "Trigger" else 1)
    lifecycle.apply(campaign, "approve", actor=moderator)
    assert (campaign.status, campaign.moderation) == (want, "approved")


def test_submit_spread_goes_to_building_then_pending(world):
    ws, author, _, _ = world
    campaign = make_campaign(ws, author, mode="Spread", sender=make_sender(ws, "SPR"), recipients=3)
    lifecycle.apply(campaign, "submit")
    assert (campaign.status, campaign.moderation) == ("Building", "awaiting")
    lifecycle.apply(campaign, "build_finished")
    assert campaign.status == "Pending"


def test_submit_refuses_an_incomplete_draft_and_says_what_is_missing(world):
    ws, author, _, _ = world
    campaign = make_campaign(ws, author, sender=None, message_text="")
    with pytest.raises(lifecycle.IllegalTransition) as err:
        lifecycle.check(campaign, "submit")
    for words in ("approved sender name", "message text", "Add recipients"):
        assert words in err.value.message
    ontime = make_campaign(ws, author, mode="OnTime", sender=make_sender(ws, "LATE"), recipients=1,
                           start_at=utcnow() - timedelta(minutes=1))
    with pytest.raises(lifecycle.IllegalTransition, match="start time has passed"):
        lifecycle.check(ontime, "submit")


def test_clone_is_allowed_from_every_state_and_changes_nothing(world):
    _, _, _, campaign = world
    for status, moderation, archived in STATES:
        row = _put_in_state(campaign, status, moderation, archived)
        assert lifecycle.check(row, "clone") is lifecycle.TRANSITIONS["clone"]
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.apply(row, "clone")


def test_unknown_event_is_a_clear_error(world):
    campaign = world[3]
    with pytest.raises(lifecycle.IllegalTransition, match="Unknown action"):
        lifecycle.check(campaign, "explode")


@pytest.mark.parametrize("event", ["build_finished", "build_failed", "fail", "expire", "build", "system_pause"])
def test_people_cannot_trigger_system_events(world, event):
    ws, author, _, campaign = world
    with pytest.raises(DomainError):
        lifecycle.perform(ws, campaign.id, event, author.membership_in(ws.id), author)


def test_a_person_ends_only_trigger_campaigns(world):
    ws, author, _, _ = world
    membership = author.membership_in(ws.id)
    sending = make_campaign(ws, author, sender=make_sender(ws, "S1"), status="Sending", moderation="approved")
    assert "finish" not in lifecycle.allowed_actions(sending, membership, author)
    with pytest.raises(lifecycle.IllegalTransition, match="finishes by itself"):
        lifecycle.perform(ws, sending.id, "finish", membership, author)
    trigger = make_campaign(ws, author, mode="Trigger", sender=make_sender(ws, "S2"), status="Sending",
                            moderation="approved")
    assert "finish" in lifecycle.allowed_actions(trigger, membership, author)
    assert lifecycle.perform(ws, trigger.id, "finish", membership, author).status == "Done"


def test_smuggled_values_cannot_reach_sending_unapproved(world):
    campaign = _put_in_state(world[3], "Done", "awaiting", False)
    with pytest.raises(lifecycle.IllegalTransition, match="not been approved"):
        lifecycle.apply(campaign, "archive", values={"status": "Sending"})
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "Done"


def test_each_transition_is_audited_with_before_and_after(world, audit_events):
    _, _, moderator, campaign = world
    row = _put_in_state(campaign, "Pending", "awaiting", False)
    lifecycle.apply(row, "reject", actor=moderator, note="Fix the typo")
    event = audit_events(action="campaigns.reject")[0]
    assert event["before"] == {"status": "Pending", "moderation": "awaiting", "archived": False}
    assert event["after"] == {"status": "New", "moderation": "rejected", "archived": False}
    assert event["note"] == "Fix the typo" and event["object_id"] == str(campaign.id)


def test_moderator_may_not_act_as_owner(world):
    ws, _, moderator, campaign = world
    with pytest.raises(Forbidden):
        lifecycle.ensure_may_act(campaign, "cancel", moderator.membership_in(ws.id), moderator)
