"""The sender-name registry (services/senders.py): proposals, revisions, decisions, immutability,
archive and what the campaign wizard is offered — called as services, without HTTP."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from extensions import db
from models import Campaign, SenderName, SenderRevision, utcnow
from services import senders
from services.errors import Conflict, DomainError, Forbidden, NotFound
from tests.factories import make_user, make_workspace


@pytest.fixture
def world():
    ws = make_workspace("acme")
    author = make_user("author@acme.test", workspace=ws, role="author")
    mod = make_user("mod@acme.test", workspace=ws, role="moderator")
    mod2 = make_user("mod2@acme.test", workspace=ws, role="moderator")
    admin = make_user("admin@acme.test", workspace=ws, role="admin")
    return ws, author, mod, mod2, admin


def m(user, ws):
    return user.membership_in(ws.id)


def propose(ws, user, label="Acme", saddr="ACME", **kwargs):
    return senders.propose(ws, m(user, ws), user, label=label, saddr=saddr, **kwargs)


def approve(ws, user, revision):
    return senders.approve(ws, revision.id, m(user, ws), user)


def stored(revision_id):
    db.session.expire_all()
    return db.session.get(SenderRevision, revision_id)


# --- proposals --------------------------------------------------------------------------------

def test_a_proposal_creates_the_name_and_revision_one_waiting_for_a_moderator(world, audit_events):
    ws, author, *_ = world
    revision = propose(ws, author, comment="Our brand")

    assert (revision.number, revision.state, revision.saddr) == (1, "pending", "ACME")
    assert (revision.ton, revision.npi) == (5, 0)  # alphanumeric defaults
    assert revision.submitted_at is not None and revision.created_by_id == author.id
    assert revision.sender.label == "Acme" and revision.sender.workspace_id == ws.id
    assert senders.pending_revisions(ws) == [revision]
    event = audit_events(action="senders.proposed")[0]
    assert event["before"] is None
    assert event["after"] == {"name": "Acme", "revision": 1, "saddr": "ACME", "ton": 5, "npi": 0, "state": "pending"}
    assert event["object_type"] == "sender_revision" and event["object_id"] == str(revision.id)


def test_a_numeric_saddr_defaults_to_international_ton_and_npi(world):
    ws, author, *_ = world
    revision = propose(ws, author, saddr="491701234567")
    assert (revision.ton, revision.npi) == (1, 1)


@pytest.mark.parametrize("saddr,message", [
    ("ACME-CORPORATE", "at most 11 characters"),
    ("1234567890123456", "at most 15 digits"),
    ("", "Enter the sender address"),
    ("ACME€", "GSM characters"),
])
def test_invalid_saddrs_are_refused_with_a_reason(world, saddr, message):
    ws, author, *_ = world
    with pytest.raises(DomainError, match=message) as refused:
        propose(ws, author, saddr=saddr)
    assert refused.value.code == "invalid_saddr"
    assert db.session.execute(db.select(SenderName)).first() is None


def test_explicit_ton_npi_are_validated(world):
    ws, author, *_ = world
    with pytest.raises(DomainError, match="TON must be from 0 to 6"):
        propose(ws, author, ton=9)
    with pytest.raises(DomainError, match="NPI must be one of"):
        propose(ws, author, npi=2)
    revision = propose(ws, author, saddr="12345", ton="2", npi="8")
    assert (revision.ton, revision.npi) == (2, 8)


def test_a_label_is_unique_among_the_active_names_of_a_workspace(world):
    ws, author, *_ = world
    propose(ws, author, label="Acme")
    with pytest.raises(DomainError, match="already exists") as refused:
        propose(ws, author, label="  ACME ", saddr="OTHER")
    assert refused.value.code == "duplicate_name"
    # Another workspace may use the same label.
    other = make_workspace("globex")
    someone = make_user("a@globex.test", workspace=other)
    assert propose(other, someone, label="Acme").sender.workspace_id == other.id


def test_a_saddr_change_is_a_new_revision_and_the_approved_one_is_untouched(world, audit_events):
    ws, author, mod, *_ = world
    first = approve(ws, mod, propose(ws, author))
    second = senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="ACMEPAY", comment="new brand")

    assert (second.number, second.state, second.saddr) == (2, "pending", "ACMEPAY")
    again = stored(first.id)
    assert (again.state, again.saddr, again.number) == ("approved", "ACME", 1)
    assert senders.current_revision(again.sender) == again  # until #2 is approved
    event = audit_events(action="senders.revision_proposed")[0]
    assert event["before"]["saddr"] == "ACME" and event["after"]["saddr"] == "ACMEPAY"


def test_only_one_revision_may_be_open_at_a_time_and_it_can_be_withdrawn(world):
    ws, author, mod, *_ = world
    first = propose(ws, author)
    with pytest.raises(Conflict, match="Revision #1 \\(ACME\\) is waiting for a moderator") as refused:
        senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="OTHER")
    assert refused.value.code == "revision_open"

    senders.withdraw(ws, first.id, m(author, ws), author)
    assert stored(first.id).state == "archived"
    assert senders.pending_revisions(ws) == []
    second = senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="ACME2")
    assert second.number == 2


def test_a_revision_identical_to_the_current_one_is_refused(world):
    ws, author, mod, *_ = world
    first = approve(ws, mod, propose(ws, author))
    with pytest.raises(DomainError, match="already approved with SADDR ACME"):
        senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="ACME")


def test_a_draft_waits_until_it_is_submitted(world, audit_events):
    ws, author, mod, *_ = world
    draft = propose(ws, author, draft=True)
    assert draft.state == "draft" and draft.submitted_at is None
    assert senders.count_pending(ws) == 0
    with pytest.raises(Conflict, match="is draft, not waiting"):
        approve(ws, mod, draft)

    senders.submit_draft(ws, draft.id, m(author, ws), author)
    assert stored(draft.id).state == "pending" and stored(draft.id).submitted_at is not None
    assert senders.count_pending(ws) == 1
    with pytest.raises(Conflict, match="not a draft"):
        senders.submit_draft(ws, draft.id, m(author, ws), author)
    assert [e["after"]["state"] for e in audit_events(action="senders.revision_submitted")] == ["pending"]


def test_only_the_drafts_author_or_an_admin_submits_or_withdraws_it(world):
    ws, author, mod, mod2, admin = world
    draft = propose(ws, author, draft=True)
    with pytest.raises(Forbidden):
        senders.submit_draft(ws, draft.id, m(mod, ws), mod)
    senders.withdraw(ws, draft.id, m(admin, ws), admin)
    assert stored(draft.id).state == "archived"


# --- decisions ----------------------------------------------------------------------------------

def test_approving_a_new_revision_makes_it_current_and_keeps_the_old_approved_one(world, audit_events):
    ws, author, mod, *_ = world
    first = approve(ws, mod, propose(ws, author))
    second = senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="ACMEPAY")
    approve(ws, mod, second)

    first, second = stored(first.id), stored(second.id)
    assert first.state == second.state == "approved"
    assert first.saddr == "ACME"
    assert senders.current_revision(second.sender) == second
    assert second.decided_by_id == mod.id and second.decided_at is not None
    event = audit_events(action="senders.revision_approved")[0]
    assert event["before"]["state"] == "pending"
    assert event["after"] == {"revision": 2, "saddr": "ACMEPAY", "ton": 5, "npi": 0, "state": "approved",
                              "replaces_revision": 1}


def test_reject_requires_a_note_and_stores_it_for_the_author(world, audit_events):
    ws, author, mod, *_ = world
    revision = propose(ws, author)
    with pytest.raises(DomainError, match="Write a note") as refused:
        senders.reject(ws, revision.id, m(mod, ws), mod, "   ")
    assert refused.value.code == "note_required"
    assert stored(revision.id).state == "pending"

    senders.reject(ws, revision.id, m(mod, ws), mod, "Brand not registered to you.")
    again = stored(revision.id)
    assert (again.state, again.decision_note, again.decided_by_id) == ("rejected", "Brand not registered to you.",
                                                                        mod.id)
    event = audit_events(action="senders.revision_rejected")[0]
    assert event["note"] == "Brand not registered to you."
    assert (event["before"]["state"], event["after"]["state"]) == ("pending", "rejected")


def test_the_second_decision_is_refused_with_who_decided_and_changes_nothing(world):
    ws, author, mod, mod2, _ = world
    revision = propose(ws, author)
    approve(ws, mod, revision)
    with pytest.raises(Conflict) as lost:
        senders.reject(ws, revision.id, m(mod2, ws), mod2, "too late")
    assert lost.value.code == "already_decided"
    assert "Revision #1 was already approved by mod@acme.test at " in lost.value.message
    again = stored(revision.id)
    assert (again.state, again.decided_by_id, again.decision_note) == ("approved", mod.id, None)


def test_four_eyes_nobody_decides_their_own_revision(world):
    ws, author, mod, *_ = world
    own = propose(ws, mod)
    with pytest.raises(Forbidden, match="Four-eyes"):
        approve(ws, mod, own)
    with pytest.raises(Forbidden, match="Four-eyes"):
        senders.reject(ws, own.id, m(mod, ws), mod, "no")
    assert stored(own.id).state == "pending"

    ws.four_eyes = False
    db.session.commit()
    assert approve(ws, mod, own).state == "approved"


def test_a_plain_author_may_not_decide_but_a_flagged_author_may(world):
    ws, author, mod, *_ = world
    revision = propose(ws, mod)
    with pytest.raises(Forbidden):
        approve(ws, author, revision)
    flagged = make_user("flagged@acme.test", workspace=ws, role="author", is_moderator=True)
    assert approve(ws, flagged, revision).state == "approved"


def test_the_superadmin_decides_in_any_workspace(world):
    ws, author, *_ = world
    root = make_user("root@example.com", superadmin=True)
    revision = propose(ws, author)
    assert root.membership_in(ws.id) is None
    assert senders.approve(ws, revision.id, None, root).decided_by_id == root.id


def test_ids_of_another_workspace_are_not_found(world):
    ws, author, mod, *_ = world
    other = make_workspace("globex")
    stranger = make_user("x@globex.test", workspace=other, role="admin")
    revision = propose(ws, author)
    with pytest.raises(NotFound):
        senders.approve(other, revision.id, m(stranger, other), stranger)
    with pytest.raises(NotFound):
        senders.get_sender(other, revision.sender_id)
    with pytest.raises(NotFound):
        senders.archive(other, revision.sender_id, m(stranger, other), stranger)
    assert stored(revision.id).state == "pending"


# --- immutability -------------------------------------------------------------------------------

def test_the_service_refuses_any_change_of_an_approved_revision(world):
    ws, author, mod, *_ = world
    revision = approve(ws, mod, propose(ws, author))
    for field, value in (("saddr", "HACKED"), ("ton", 1), ("npi", 1), ("comment", "rewritten")):
        row = stored(revision.id)
        setattr(row, field, value)
        with pytest.raises(senders.ImmutableRevision, match="approved and cannot change"):
            db.session.commit()
        db.session.rollback()
    row = stored(revision.id)
    row.state = "pending"
    with pytest.raises(senders.ImmutableRevision):
        db.session.commit()
    db.session.rollback()
    again = stored(revision.id)
    assert (again.saddr, again.ton, again.npi, again.state) == ("ACME", 5, 0, "approved")


def test_a_pending_revision_is_not_frozen(world):
    ws, author, *_ = world
    revision = propose(ws, author)
    row = stored(revision.id)
    row.comment = "typo fixed"
    db.session.commit()
    assert stored(revision.id).comment == "typo fixed"


def test_the_database_trigger_refuses_a_raw_update_of_an_approved_revision(world):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the immutability trigger exists on PostgreSQL only")
    ws, author, mod, *_ = world
    approved = approve(ws, mod, propose(ws, author))
    pending = propose(ws, author, label="Other", saddr="OTHER")

    for column, value in (("saddr", "'HACKED'"), ("ton", "1"), ("npi", "1")):
        with pytest.raises(DBAPIError, match="approved and immutable"):
            db.session.execute(text(f"UPDATE sender_revisions SET {column} = {value} WHERE id = :id"),
                               {"id": approved.id})
        db.session.rollback()
    # The trigger guards approved rows only.
    db.session.execute(text("UPDATE sender_revisions SET saddr = 'OTHER2' WHERE id = :id"), {"id": pending.id})
    db.session.commit()
    assert stored(approved.id).saddr == "ACME" and stored(pending.id).saddr == "OTHER2"


# --- archive and the campaign wizard --------------------------------------------------------------

def test_the_wizard_is_offered_the_current_approved_revision_of_active_names(world):
    ws, author, mod, *_ = world
    acme1 = approve(ws, mod, propose(ws, author, label="Acme", saddr="ACME"))
    acme2 = approve(ws, mod, senders.propose_revision(ws, acme1.sender_id, m(author, ws), author, saddr="ACMEPAY"))
    beta = approve(ws, mod, propose(ws, author, label="beta", saddr="BETA"))
    propose(ws, author, label="Pending only", saddr="WAIT")
    rejected = propose(ws, author, label="Rejected", saddr="NOPE")
    senders.reject(ws, rejected.id, m(mod, ws), mod, "no")
    other = make_workspace("globex")
    outsider = make_user("o@globex.test", workspace=other, role="admin")
    globex_mod = make_user("m@globex.test", workspace=other, role="moderator")
    approve(other, globex_mod, propose(other, outsider, label="Globex", saddr="GLOBEX"))

    offered = senders.approved_revisions_for_wizard(ws)
    assert [r.id for r in offered] == [acme2.id, beta.id]
    assert [(r.sender.label, r.saddr) for r in offered] == [("Acme", "ACMEPAY"), ("beta", "BETA")]
    assert senders.get_approved_revision(ws, acme2.id) == acme2
    with pytest.raises(DomainError, match="not \\(or no longer\\) approved"):
        senders.get_approved_revision(ws, acme1.id)  # superseded


def test_archiving_hides_the_name_from_the_wizard_but_leaves_campaigns_alone(world, audit_events):
    ws, author, mod, mod2, admin = world
    approved = approve(ws, mod, propose(ws, author))
    waiting = senders.propose_revision(ws, approved.sender_id, m(author, ws), author, saddr="ACMEPAY")
    campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="Spring sale", mode="OnDemand",
                        status="Sending", moderation="approved", auto_start=True, sender_revision_id=approved.id,
                        submitted_at=utcnow())
    db.session.add(campaign)
    db.session.commit()

    with pytest.raises(Forbidden):
        senders.archive(ws, approved.sender_id, m(author, ws), author)
    senders.archive(ws, approved.sender_id, m(admin, ws), admin)

    assert senders.approved_revisions_for_wizard(ws) == []
    assert stored(approved.id).state == "approved"          # what campaigns pinned stays as it was
    assert stored(waiting.id).state == "archived"            # the open proposal is withdrawn
    assert senders.pending_revisions(ws) == []
    db.session.expire_all()
    running = db.session.get(Campaign, campaign.id)
    assert (running.status, running.sender_revision.saddr) == ("Sending", "ACME")
    with pytest.raises(Conflict, match="already archived"):
        senders.archive(ws, approved.sender_id, m(admin, ws), admin)
    with pytest.raises(DomainError, match="archived"):
        senders.propose_revision(ws, approved.sender_id, m(author, ws), author, saddr="NEW")
    event = audit_events(action="senders.archived")[0]
    assert event["before"] == {"archived": False}
    assert event["after"] == {"archived": True, "withdrawn_revisions": [2]}
    # The label is free again for a new name.
    assert propose(ws, author, label="Acme", saddr="ACME").number == 1


def test_json_of_a_name_carries_revisions_with_their_states_and_notes(world):
    ws, author, mod, *_ = world
    first = approve(ws, mod, propose(ws, author))
    second = senders.propose_revision(ws, first.sender_id, m(author, ws), author, saddr="ACMEPAY")
    senders.reject(ws, second.id, m(mod, ws), mod, "Not your brand.")
    data = senders.sender_json(stored(first.id).sender)
    assert data["name"] == "Acme" and data["archived"] is False and data["workspace_id"] == ws.id
    assert data["current_revision"]["saddr"] == "ACME"
    assert [(r["number"], r["saddr"], r["state"], r["note"]) for r in data["revisions"]] == [
        (1, "ACME", "approved", None), (2, "ACMEPAY", "rejected", "Not your brand.")]
    assert {"id", "saddr", "ston", "snpi", "comment", "state", "note"} <= set(data["revisions"][0])


def test_a_decision_based_on_a_stale_read_loses_at_the_conditional_update(world):
    """What the race test does with two HTTP requests, made deterministic: another connection
    decides after this session has read the revision as pending."""
    ws, author, mod, mod2, _ = world
    revision = propose(ws, author)
    assert revision.state == "pending"  # loaded in this session
    with db.engine.begin() as other:
        other.execute(text("UPDATE sender_revisions SET state = 'approved', decided_by_id = :u, decided_at = :t "
                           "WHERE id = :id"), {"u": mod.id, "t": utcnow(), "id": revision.id})
    with pytest.raises(Conflict) as lost:
        senders.reject(ws, revision.id, m(mod2, ws), mod2, "too late")
    assert lost.value.code == "already_decided"
    assert "Revision #1 was already approved by mod@acme.test" in lost.value.message
    again = stored(revision.id)
    assert (again.state, again.decided_by_id, again.decision_note) == ("approved", mod.id, None)
