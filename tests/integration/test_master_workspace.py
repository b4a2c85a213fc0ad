"""The Master workspace (issue 22): its stop-list is installation-wide — a number on it is skipped
(counted as stop-listed) at build and at dispatch in every workspace, and refused to Trigger
pushes; workspace admins learn that a number is blocked installation-wide, not which entry blocked
it; super admins land in Master, whose Members page lists them."""
import io

from sqlalchemy import select

from extensions import db
from models import Campaign, Recipient, Workspace
from services import dispatch, recipients, stoplist, workspaces
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace

BLOCKED = "491700000002"


def master():
    return db.session.scalar(select(Workspace).filter_by(slug="master"))


def state_of(campaign_id, number):
    return db.session.scalar(select(Recipient.state).where(Recipient.campaign_id == campaign_id,
                                                            Recipient.number == number))


def test_a_master_number_is_skipped_in_another_workspaces_upload(app):
    stoplist.add(master(), BLOCKED, "complaint to the regulator")
    ws = make_workspace("acme")
    campaign = make_campaign(ws, make_user(workspace=ws))
    body = b"491700000001\n+49 170 0000002\n491700000003\n491700000002\n"
    path, size = recipients.spool_stream(io.BytesIO(body), 10 ** 6)
    upload = recipients.start_upload(db.session.get(Campaign, campaign.id), spool_path=path, size=size, source="cli")
    upload = recipients.ingest(upload.id)
    assert upload.state == "done"
    assert (upload.accepted, upload.stop_listed, upload.duplicates) == (2, 2, 0)
    assert state_of(campaign.id, BLOCKED) is None  # never stored
    # The workspace's own list still counts too, and a number on both lists is counted once per line.
    stoplist.add(ws, "491700000004")
    second = make_campaign(ws, make_user(workspace=ws))
    path, size = recipients.spool_stream(io.BytesIO(b"491700000002\n491700000004\n491700000005\n"), 10 ** 6)
    upload = recipients.ingest(recipients.start_upload(db.session.get(Campaign, second.id), spool_path=path,
                                                       size=size, source="cli").id)
    assert (upload.accepted, upload.stop_listed) == (1, 2)


def test_a_number_put_on_the_master_list_after_the_build_is_skipped_at_dispatch(app):
    ws = make_workspace("acme")
    campaign = make_campaign(ws, make_user(workspace=ws), status="Sending", moderation="approved",
                             sender=make_sender(ws))
    add_recipients(campaign, ["491700000001", BLOCKED])
    campaign.queued_count = 2
    db.session.commit()
    stoplist.add(master(), BLOCKED)
    assert dispatch.skip_stop_listed(campaign.id) == 1
    assert state_of(campaign.id, BLOCKED) == "stop_listed"
    assert db.session.get(Campaign, campaign.id).queued_count == 1
    batch = dispatch.claim_batch(campaign.id)
    assert batch is not None and state_of(campaign.id, "491700000001") == "claimed"


def test_the_lookups_trigger_pushes_use_count_the_master_list(app):
    ws, other = make_workspace("acme"), make_workspace("other")
    stoplist.add(master(), BLOCKED)
    assert stoplist.is_stop_listed(ws.id, BLOCKED) and stoplist.is_stop_listed(other.id, BLOCKED)
    assert stoplist.stop_listed_numbers(other.id, [BLOCKED, "491700000009"]) == {BLOCKED}
    # A workspace's own list is still its own.
    stoplist.add(ws, "491700000007")
    assert not stoplist.is_stop_listed(other.id, "491700000007")


def test_workspace_admins_see_installation_wide_blocks_without_the_entry(client):
    stoplist.add(master(), BLOCKED, "secret reason: court order 42")
    ws = make_workspace("acme")
    stoplist.add(ws, "491700000004", "replied STOP")
    make_user("admin@example.com", workspace=ws, role="admin")
    client.login("admin@example.com")
    page = client.get(f"/w/acme/stop-list?check=%2B{BLOCKED}").get_data(as_text=True)
    assert "Blocked installation-wide" in page
    assert "court order" not in page and "1 number never" in page  # the Master entry is not listed
    own = client.get("/w/acme/stop-list?check=491700000004").get_data(as_text=True)
    assert "on this workspace&#39;s stop-list" in own or "on this workspace's stop-list" in own
    assert "Not blocked." in client.get("/w/acme/stop-list?check=491700000005").get_data(as_text=True)
    bad = client.get("/w/acme/stop-list?check=12ab").get_data(as_text=True)
    assert "is not a phone number" in bad
    assert client.get("/w/master/stop-list").status_code == 404  # not a member of Master


def test_super_admins_land_in_master_and_its_members_page_lists_them(client):
    make_user("root@example.com", superadmin=True)
    make_user("second-root@example.com", superadmin=True)
    ws = make_workspace("acme")
    make_user("admin@example.com", workspace=ws, role="admin")
    client.login("root@example.com")
    assert client.get("/").headers["Location"].endswith("/w/master/")
    home = client.get("/w/master/").get_data(as_text=True)
    assert "The Master workspace" in home and "installation-wide" in home
    members = client.get("/w/master/members").get_data(as_text=True)
    assert "Super admins" in members and "second-root@example.com" in members
    assert "admin@example.com</span></td><td>" not in members.split("Super admins")[1].split("</table>")[0]
    assert "Super admins" not in client.get("/w/acme/members").get_data(as_text=True)
    assert workspaces.master().slug == "master"
