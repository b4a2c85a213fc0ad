"""Members and roles: an admin changes roles and flags, removes members; the last admin stays;
non-admins are refused; a member id of another workspace is not found."""
import html
import re

import pytest
from sqlalchemy import inspect

from extensions import db
from models import Membership
from tests.factories import make_user, make_workspace


def page(response):
    return html.unescape(response.get_data(as_text=True))


def shown_role(response, membership):
    """The role selected in a member's row of the members page."""
    select = re.search(rf'<select[^>]*name="m{membership.id}-role".*?</select>', page(response), re.S)
    assert select, f"no role selector for membership {membership.id}"
    return re.search(r'<option selected value="(\w+)"', select.group(0)).group(1)


def stored(membership):
    """The membership row as committed now (None once deleted)."""
    membership_id = inspect(membership).identity[0]
    db.session.expire_all()
    return db.session.get(Membership, membership_id)


@pytest.fixture
def acme():
    ws = make_workspace("acme", "Acme Ltd")
    boss = make_user("boss@example.com", workspace=ws, role="admin")
    alice = make_user("alice@example.com", workspace=ws, role="author")
    return ws, boss.membership_in(ws.id), alice.membership_in(ws.id)


def save(client, membership, role, is_moderator=False, can_view_numbers=False):
    data = {f"m{membership.id}-role": role}
    if is_moderator:
        data[f"m{membership.id}-is_moderator"] = "y"
    if can_view_numbers:
        data[f"m{membership.id}-can_view_numbers"] = "y"
    return client.post(f"/w/acme/members/{membership.id}", data=data)


def test_admin_changes_a_role_and_the_page_and_audit_show_it(client, acme, audit_events):
    _, _, alice = acme
    client.login("boss@example.com")
    assert shown_role(client.get("/w/acme/members"), alice) == "author"

    response = save(client, alice, "moderator", can_view_numbers=True)

    assert response.status_code == 302
    members_page = client.get("/w/acme/members")
    assert "Saved alice@example.com: moderator." in page(members_page)
    assert shown_role(members_page, alice) == "moderator"
    assert stored(alice).role == "moderator" and stored(alice).can_view_numbers is True
    event = audit_events(action="members.changed")[0]
    assert event["actor_email"] == "boss@example.com" and event["actor_role"] == "admin"
    assert event["object_type"] == "membership" and event["object_id"] == str(alice.id)
    assert event["before"] == {"user": "alice@example.com", "role": "author", "is_moderator": False,
                               "can_view_numbers": False}
    assert event["after"] == {"user": "alice@example.com", "role": "moderator", "is_moderator": False,
                              "can_view_numbers": True}


def test_saving_without_a_change_records_nothing(client, acme, audit_events):
    _, _, alice = acme
    client.login("boss@example.com")

    save(client, alice, "author")

    assert audit_events(action="members.changed") == []


def test_moderator_flag_sticks_only_on_authors(client, acme, audit_events):
    _, _, alice = acme
    client.login("boss@example.com")

    save(client, alice, "author", is_moderator=True)
    assert stored(alice).is_moderator is True
    assert f'<input checked id="m{alice.id}-is_moderator"' in page(client.get("/w/acme/members"))
    assert audit_events(action="members.changed")[0]["after"]["is_moderator"] is True

    save(client, alice, "admin", is_moderator=True)

    assert stored(alice).role == "admin"
    assert stored(alice).is_moderator is False
    assert audit_events(action="members.changed")[0]["after"] == {
        "user": "alice@example.com", "role": "admin", "is_moderator": False, "can_view_numbers": False}


def test_the_last_admin_cannot_be_demoted(client, acme, audit_events):
    _, boss, _ = acme
    client.login("boss@example.com")

    save(client, boss, "author")

    members_page = client.get("/w/acme/members")
    assert "This is the last admin of the workspace; make someone else admin first." in page(members_page)
    assert shown_role(members_page, boss) == "admin"
    assert stored(boss).role == "admin"
    assert audit_events(action="members.") == []


def test_the_last_admin_cannot_be_removed(client, acme, audit_events):
    _, boss, _ = acme
    client.login("boss@example.com")

    client.post(f"/w/acme/members/{boss.id}/remove")

    assert "This is the last admin of the workspace and cannot be removed." in page(client.get("/w/acme/members"))
    assert stored(boss) is not None
    assert audit_events(action="members.") == []


def test_with_a_second_admin_the_first_may_step_down(client, acme):
    _, boss, alice = acme
    client.login("boss@example.com")
    save(client, alice, "admin")

    save(client, boss, "author")

    assert stored(boss).role == "author"
    assert client.get("/w/acme/members").status_code == 403  # boss is no longer an admin


def test_admin_removes_a_member(client, acme, audit_events):
    ws, _, alice = acme
    alice_id = alice.id
    client.login("boss@example.com")

    response = client.post(f"/w/acme/members/{alice_id}/remove")

    assert response.status_code == 302
    members_page = page(client.get("/w/acme/members"))
    assert "Member removed." in members_page
    assert "alice@example.com" not in members_page
    assert stored(alice) is None
    event = audit_events(action="members.removed")[0]
    assert event["workspace_id"] == ws.id and event["object_id"] == str(alice_id)
    assert event["before"] == {"user": "alice@example.com", "role": "author", "is_moderator": False,
                               "can_view_numbers": False}
    # The removed member loses the workspace at once.
    other = client.application.test_client()
    other.login("alice@example.com")
    assert other.get("/w/acme/").status_code == 404


@pytest.mark.parametrize("role, is_moderator", [("author", False), ("author", True), ("moderator", False)])
def test_non_admins_get_403_and_change_nothing(client, acme, role, is_moderator, audit_events):
    ws, boss, alice = acme
    make_user("carol@example.com", workspace=ws, role=role, is_moderator=is_moderator)
    client.login("carol@example.com")

    assert client.get("/w/acme/members").status_code == 403
    assert save(client, alice, "admin").status_code == 403
    assert client.post(f"/w/acme/members/{boss.id}/remove").status_code == 403

    assert stored(alice).role == "author"
    assert stored(boss) is not None
    assert audit_events(action="members.") == []


def test_a_member_of_another_workspace_is_404(client, acme):
    other_ws = make_workspace("globex")
    stranger = make_user("stranger@example.com", workspace=other_ws, role="author").membership_in(other_ws.id)
    make_user("globex-admin@example.com", workspace=other_ws, role="admin")
    client.login("boss@example.com")

    assert save(client, stranger, "admin").status_code == 302
    assert "This member does not exist in this workspace." in page(client.get("/w/acme/members"))
    assert client.post(f"/w/acme/members/{stranger.id}/remove").status_code == 302
    assert stored(stranger).role == "author"
    assert client.get("/w/globex/members").status_code == 404


def test_unknown_role_is_refused(client, acme):
    _, _, alice = acme
    client.login("boss@example.com")

    save(client, alice, "owner")

    assert "Choose a role: author, moderator or admin." in page(client.get("/w/acme/members"))
    assert stored(alice).role == "author"
