"""The campaigns API: create with the wizard's rules, read (encoding, segments, counters), list with
the page's filters, lifecycle actions with the same rules and error codes, tenancy, OpenAPI."""
from datetime import UTC, datetime, timedelta

import pytest

from extensions import db
from models import Campaign
from services import members, tokens
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def ws():
    return make_workspace("acme")


@pytest.fixture
def author(ws):
    return make_user("author@example.com", workspace=ws, role="author")


@pytest.fixture
def sender(ws):
    return make_sender(ws, "ACME")


def _auth(user, ws):
    return {"Authorization": f"Bearer {tokens.create_token(user, ws, 'api test')[1]}"}


@pytest.fixture
def h(author, ws):
    return _auth(author, ws)


def _body(sender, **extra):
    body = {"name": "OTP", "mode": "OnDemand", "sender_revision_id": sender.id, "text": "Your code is 1234"}
    body.update(extra)
    return body


def test_create_read_and_submit(client, h, sender):
    r = client.post("/api/v1/campaigns", json=_body(sender, daily_limit=100, smpp={"dton": 2}), headers=h)
    assert r.status_code == 201, r.get_json()
    c = r.get_json()
    assert (c["status"], c["moderation"], c["encoding"], c["segments"]) == ("New", "awaiting", "GSM-7", 1)
    assert c["smpp"] == {"saddr": "ACME", "ston": 5, "snpi": 0, "dton": 2, "dnpi": 1}
    assert c["counters"] == {"recipients": 0, "queued": 0, "sent": 0, "delivered": 0, "failed": 0, "in_flight": 0,
                            "expired": 0}
    assert c["archived_at"] is None and c["daily_limit"] == 100
    early = client.post(f"/api/v1/campaigns/{c['id']}/submit", headers=h)
    assert early.status_code == 409 and early.get_json()["error"]["code"] == "illegal_transition"
    assert "Add recipients" in early.get_json()["error"]["message"]
    add_recipients(db.session.get(Campaign, c["id"]), ["491701234567"])
    done = client.post(f"/api/v1/campaigns/{c['id']}/submit", headers=h)
    assert done.status_code == 200 and done.get_json()["status"] == "Pending"
    got = client.get(f"/api/v1/campaigns/{c['id']}", headers=h).get_json()
    assert got["moderation"] == "awaiting" and got["counters"]["recipients"] == 1


def test_ucs2_text_and_mode_fields(client, h, sender):
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    r = client.post("/api/v1/campaigns", headers=h, json=_body(
        sender, mode="OnTime", text="Привет " * 11, start_at=start.isoformat().replace("+00:00", "Z")))
    c = r.get_json()
    assert r.status_code == 201 and c["encoding"] == "UCS-2" and c["segments"] == 2
    assert c["start_at"] == start.isoformat().replace("+00:00", "Z")
    spread = client.post("/api/v1/campaigns", headers=h, json=_body(
        sender, mode="Spread", window_start="2999-01-01", window_end="2999-01-03")).get_json()
    assert (spread["window_start"], spread["window_end"]) == ("2999-01-01", "2999-01-03")
    trigger = client.post("/api/v1/campaigns", headers=h, json=_body(sender, mode="Trigger",
                                                                       ignore_daily_window=True)).get_json()
    assert trigger["ignore_daily_window"] is True


def test_validation_errors_name_each_field(client, h, sender, ws):
    pending = make_sender(ws, "PEND", state="pending")
    r = client.post("/api/v1/campaigns", headers=h, json=_body(
        pending, name="", daily_limit=-3, mode="OnTime", start_at="2001-01-01T00:00:00Z",
        smpp={"ston": 9}))
    error = r.get_json()["error"]
    assert r.status_code == 400 and error["code"] == "invalid_fields"
    assert {"name", "sender_revision_id", "daily_limit", "start_at"} <= set(error["fields"])
    bad_smpp = client.post("/api/v1/campaigns", headers=h, json=_body(sender, smpp={"ston": 9, "dnpi": 2}))
    assert set(bad_smpp.get_json()["error"]["fields"]) == {"ston", "dnpi"}
    assert client.post("/api/v1/campaigns", headers=h, json=_body(sender, mode="Fast")).status_code == 400
    assert client.post("/api/v1/campaigns", headers=h, data="not json").status_code == 400


def test_list_uses_the_page_filters_and_authors_see_their_own(client, ws, author, h, sender):
    mine = make_campaign(ws, author, sender=sender, status="Pending")
    make_campaign(ws, author, sender=sender, status="Done", archived=True)
    other = make_user("other@example.com", workspace=ws, role="author")
    make_campaign(ws, other, sender=sender)
    listed = client.get("/api/v1/campaigns", headers=h).get_json()
    assert [c["id"] for c in listed["campaigns"]] == [mine.id] and listed["has_next"] is False
    assert len(client.get("/api/v1/campaigns?archived=1", headers=h).get_json()["campaigns"]) == 1
    assert client.get("/api/v1/campaigns?status=Done", headers=h).get_json()["campaigns"] == []
    assert client.get("/api/v1/campaigns?from=yesterday", headers=h).status_code == 400
    mod = make_user("mod@example.com", workspace=ws, role="moderator")
    assert len(client.get("/api/v1/campaigns", headers=_auth(mod, ws)).get_json()["campaigns"]) == 2


def test_actions_follow_the_table_and_permissions(client, ws, author, h, sender):
    c = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved")
    assert client.post(f"/api/v1/campaigns/{c.id}/pause", headers=h).get_json()["status"] == "Paused"
    assert client.post(f"/api/v1/campaigns/{c.id}/resume", headers=h).get_json()["status"] == "Sending"
    archive = client.post(f"/api/v1/campaigns/{c.id}/archive", headers=h)
    assert archive.status_code == 409 and archive.get_json()["error"]["code"] == "illegal_transition"
    assert client.post(f"/api/v1/campaigns/{c.id}/cancel", headers=h).get_json()["status"] == "Cancelled"
    archived = client.post(f"/api/v1/campaigns/{c.id}/archive", headers=h).get_json()
    assert archived["archived_at"] is not None
    assert client.post(f"/api/v1/campaigns/{c.id}/restore", headers=h).get_json()["archived_at"] is None
    assert client.post(f"/api/v1/campaigns/{c.id}/explode", headers=h).status_code == 404
    mod = make_user("mod@example.com", workspace=ws, role="moderator")
    assert client.post("/api/v1/campaigns", json=_body(sender), headers=_auth(mod, ws)).status_code == 403
    other = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved")
    assert client.post(f"/api/v1/campaigns/{other.id}/pause", headers=_auth(mod, ws)).status_code == 403


def test_restore_with_a_new_owner_through_the_api(client, ws, author, sender):
    admin = make_user("admin@example.com", workspace=ws, role="admin")
    c = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", archived=True)
    members.remove_member(ws, author.membership_in(ws.id).id)
    headers = _auth(admin, ws)
    refused = client.post(f"/api/v1/campaigns/{c.id}/restore", headers=headers)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "owner_required"
    done = client.post(f"/api/v1/campaigns/{c.id}/restore", headers=headers, json={"owner_id": admin.id})
    assert done.status_code == 200 and done.get_json()["author"] == "admin@example.com"


def test_other_workspaces_and_authors_are_404(client, ws, author, h, sender):
    foreign_ws = make_workspace("beta")
    foreign = make_campaign(foreign_ws, make_user(workspace=foreign_ws))
    theirs = make_campaign(ws, make_user("other@example.com", workspace=ws, role="author"), sender=sender)
    for cid in (foreign.id, theirs.id):
        assert client.get(f"/api/v1/campaigns/{cid}", headers=h).status_code == 404
        assert client.post(f"/api/v1/campaigns/{cid}/cancel", headers=h).status_code == 404
    assert client.get("/api/v1/campaigns").status_code == 401


def test_openapi_describes_every_campaign_route(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    assert {"/api/v1/campaigns", "/api/v1/campaigns/{campaign_id}", "/api/v1/campaigns/{campaign_id}/submit",
            "/api/v1/campaigns/{campaign_id}/restore"} <= set(paths)
