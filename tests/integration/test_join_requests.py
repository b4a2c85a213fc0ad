"""Self-service join requests: a user asks to join by slug; admins approve with a role or reject
with a note the user sees; duplicates and unknown slugs are refused; racing decisions are settled
by the database, and the loser is told who decided first."""
import html
import threading

import pytest

from extensions import db
from models import JoinRequest
from services import accounts, join_requests
from services.errors import DomainError
from tests.factories import make_user, make_workspace


def page(response):
    return html.unescape(response.get_data(as_text=True))


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    make_user("boss@example.com", workspace=ws, role="admin")
    make_user("carol@example.com")  # has an account, no workspace yet
    return ws


def ask(browser, slug="acme", message="I run the billing OTPs."):
    return browser.post("/join", data={"slug": slug, "message": message})


def join_row(email="carol@example.com"):
    db.session.expire_all()
    user = accounts.find_user(email)
    return db.session.execute(db.select(JoinRequest).filter_by(user_id=user.id)
                              .order_by(JoinRequest.id.desc())).scalars().first()


def browser_of(app, email):
    browser = app.test_client()
    browser.login(email)
    return browser


def test_user_asks_to_join_by_slug_and_the_admin_sees_it(client, app, acme, audit_events):
    client.login("carol@example.com")

    response = ask(client, " ACME ")

    assert response.status_code == 302
    own = page(client.get("/join"))
    assert "Request sent to the admins of Acme Ltd." in own
    assert "Acme Ltd" in own and ">pending<" in own
    members_page = page(browser_of(app, "boss@example.com").get("/w/acme/members"))
    assert "carol@example.com" in members_page
    assert "<blockquote>I run the billing OTPs.</blockquote>" in members_page
    event = audit_events(action="join_requests.created")[0]
    assert event["actor_email"] == "carol@example.com" and event["workspace_id"] == acme.id
    assert event["after"] == {"user": "carol@example.com", "message": "I run the billing OTPs."}


def test_admin_approves_with_a_role_and_the_user_becomes_a_member(client, app, acme, audit_events):
    carol = browser_of(app, "carol@example.com")
    ask(carol)
    request_id = join_row().id
    client.login("boss@example.com")

    response = client.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": "moderator"})

    assert response.status_code == 302
    members_page = page(client.get("/w/acme/members"))
    assert "Request approved; the user is now a member." in members_page
    assert "No pending requests." in members_page
    db.session.expire_all()
    assert accounts.find_user("carol@example.com").membership_in(acme.id).role == "moderator"
    assert join_row().state == "approved"
    assert ">approved<" in page(carol.get("/join"))
    assert carol.get("/w/acme/").status_code == 200
    event = audit_events(action="join_requests.approved")[0]
    assert event["actor_email"] == "boss@example.com" and event["object_id"] == str(request_id)
    assert event["before"] == {"state": "pending"}
    assert event["after"] == {"state": "approved", "role": "moderator", "user": "carol@example.com"}
    assert audit_events(action="members.added")[0]["note"] == f"join request {request_id}"


def test_rejecting_needs_a_note_which_the_user_then_sees(client, app, acme, audit_events):
    carol = browser_of(app, "carol@example.com")
    ask(carol)
    request_id = join_row().id
    client.login("boss@example.com")

    client.post(f"/w/acme/join-requests/{request_id}/reject", data={"note": "   "})
    assert "Write a note saying why the request is rejected; the user will see it." in page(
        client.get("/w/acme/members"))
    assert join_row().state == "pending"

    client.post(f"/w/acme/join-requests/{request_id}/reject",
                data={"note": "Please ask your team lead for an invitation."})

    assert "Request rejected; the user sees your note." in page(client.get("/w/acme/members"))
    assert join_row().state == "rejected"
    own = page(carol.get("/join"))
    assert ">rejected<" in own and "Please ask your team lead for an invitation." in own
    assert carol.get("/w/acme/").status_code == 404
    event = audit_events(action="join_requests.rejected")[0]
    assert event["note"] == "Please ask your team lead for an invitation."
    assert event["before"] == {"state": "pending"} and event["after"]["state"] == "rejected"


def test_asking_twice_is_refused(client, acme, audit_events):
    client.login("carol@example.com")
    ask(client)

    response = ask(client, message="Hello again?")

    assert "You already asked to join this workspace; wait for an admin's decision." in page(response)
    assert len(audit_events(action="join_requests.created")) == 1


def test_the_service_also_refuses_a_rejection_without_a_note(client, acme):
    client.login("carol@example.com")
    ask(client)

    with pytest.raises(DomainError) as refused:
        join_requests.reject(acme, join_row().id, "  \n ", accounts.find_user("boss@example.com"))

    assert refused.value.code == "note_required"
    assert join_row().state == "pending"


def test_after_a_rejection_the_user_may_ask_again(client, app, acme):
    client.login("carol@example.com")
    ask(client)
    join_requests.reject(acme, join_row().id, "Not yet.", accounts.find_user("boss@example.com"))

    ask(client, message="Now my lead agreed.")

    assert join_row().state == "pending" and join_row().message == "Now my lead agreed."


@pytest.mark.parametrize("slug", ["nope", "master"])
def test_unknown_slug_says_so(client, acme, slug, audit_events):
    client.login("carol@example.com")

    response = ask(client, slug)

    assert response.status_code == 200
    assert f"No workspace with the slug '{slug}'. Check the spelling with the workspace admin." in page(response)
    assert audit_events(action="join_requests.") == []


def test_members_cannot_ask_to_join_their_own_workspace(client, acme):
    client.login("boss@example.com")

    assert "You are already a member of Acme Ltd." in page(ask(client))


def test_second_decision_is_told_who_decided_first(client, app, acme, audit_events):
    make_user("deputy@example.com", workspace=acme, role="admin")
    ask(browser_of(app, "carol@example.com"))
    request_id = join_row().id
    boss, deputy = browser_of(app, "boss@example.com"), browser_of(app, "deputy@example.com")
    boss.get("/w/acme/members")
    deputy.get("/w/acme/members")  # both see the request as pending

    boss.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": "author"})
    deputy.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": "admin"})
    deputy.post(f"/w/acme/join-requests/{request_id}/reject", data={"note": "Duplicate."})

    deputy_page = page(deputy.get("/w/acme/members"))
    assert deputy_page.count("This request was already approved by boss@example.com.") == 2
    db.session.expire_all()
    assert accounts.find_user("carol@example.com").membership_in(acme.id).role == "author"
    assert join_row().note is None
    assert len(audit_events(action="join_requests.approved")) == 1
    assert audit_events(action="join_requests.rejected") == []


def test_simultaneous_approvals_admit_exactly_one(app, acme, audit_events):
    make_user("deputy@example.com", workspace=acme, role="admin")
    ask(browser_of(app, "carol@example.com"))
    request_id = join_row().id
    admins = [browser_of(app, "boss@example.com"), browser_of(app, "deputy@example.com")]
    start = threading.Barrier(2)

    def approve(browser, role):
        start.wait()
        browser.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": role})

    threads = [threading.Thread(target=approve, args=(b, r)) for b, r in zip(admins, ("author", "admin"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    flashes = [page(b.get("/w/acme/members")) for b in admins]
    assert sum("Request approved; the user is now a member." in f for f in flashes) == 1
    assert sum("This request was already approved by" in f for f in flashes) == 1
    assert len(audit_events(action="join_requests.approved")) == 1
    db.session.expire_all()
    carol = accounts.find_user("carol@example.com")
    assert carol.membership_in(acme.id).role == join_row().role


def test_only_admins_decide(client, app, acme):
    make_user("alice@example.com", workspace=acme, role="moderator")
    ask(browser_of(app, "carol@example.com"))
    request_id = join_row().id
    client.login("alice@example.com")

    assert client.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": "admin"}).status_code == 403
    assert join_row().state == "pending"


def test_a_request_to_another_workspace_cannot_be_decided_here(client, app, acme):
    globex = make_workspace("globex", "Globex")
    make_user("g-admin@example.com", workspace=globex, role="admin")
    ask(browser_of(app, "carol@example.com"), "globex")
    request_id = join_row().id
    client.login("boss@example.com")

    client.post(f"/w/acme/join-requests/{request_id}/approve", data={"role": "admin"})

    assert "This join request does not exist in this workspace." in page(client.get("/w/acme/members"))
    assert join_row().state == "pending"
    db.session.expire_all()
    assert accounts.find_user("carol@example.com").memberships == []
