"""Trigger API: numbers pushed by a client system are stored, reported per index, and dispatched."""
import pytest
from sqlalchemy import select

from extensions import db, redis_connection
from models import Recipient, StopListEntry
from services import tokens
from services.numbers import ctn_hash
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def otp(app):
    for key in redis_connection().scan_iter("mc:dispatch:*"):
        redis_connection().delete(key)
    for key in redis_connection().scan_iter("mc:trigger:*"):
        redis_connection().delete(key)
    redis_connection().delete("rq:queue:dispatch", "rq:queue:trigger")
    ws = make_workspace("otp")
    author = make_user("svc@example.com", workspace=ws, role="author")
    campaign = make_campaign(ws, author, mode="Trigger", status="Sending", moderation="approved",
                             sender=make_sender(ws))
    _, token = tokens.create_token(author, ws, "otp service")
    return campaign, {"Authorization": f"Bearer {token}"}


def push(client, campaign, headers, numbers):
    return client.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": numbers}, headers=headers)


def test_numbers_are_stored_reported_by_index_and_scheduled(client, otp):
    campaign, headers = otp
    db.session.add(StopListEntry(workspace_id=campaign.workspace_id, number="491700000003",
                                 ctn_hash=ctn_hash("491700000003", campaign.workspace_id)))
    db.session.commit()
    response = push(client, campaign, headers, ["+49 170 0000001", "0049-170-0000001", "not a number",
                                                "491700000003", "491700000004"])
    assert response.status_code == 200
    body = response.json
    assert body["accepted"] == 2
    assert body["stop_listed"] == [3]
    assert body["rejected"] == [{"index": 2, "reason": "contains characters other than digits"}]
    assert sorted(db.session.scalars(select(Recipient.number))) == ["491700000001", "491700000004"]
    db.session.refresh(campaign)
    assert campaign.queued_count == 2 and campaign.recipients_count == 2
    # dispatched without waiting for the tick, on the Trigger lane's own queue (never behind bulk work)
    assert redis_connection().llen("rq:queue:trigger") == 1
    assert redis_connection().llen("rq:queue:dispatch") == 0

    again = push(client, campaign, headers, ["491700000004"])
    assert again.json["accepted"] == 0 and again.json["duplicates"] == [0]


def test_wrong_mode_or_status_is_not_accepting(client, otp):
    campaign, headers = otp
    campaign.status = "Paused"
    db.session.commit()
    response = push(client, campaign, headers, ["491700000001"])
    assert response.status_code == 409 and response.json["error"]["code"] == "not_accepting"
    assert db.session.scalar(select(Recipient.id)) is None


def test_limits_and_bad_bodies_are_clear_json_errors(client, otp):
    campaign, headers = otp
    too_many = push(client, campaign, headers, [f"49170{i:07d}" for i in range(1001)])
    assert too_many.status_code == 413 and too_many.json["error"]["code"] == "too_many_numbers"
    wrong_type = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"numbers": "491700000001"},
                             headers=headers)
    assert wrong_type.status_code == 400 and wrong_type.json["error"]["code"] == "invalid_numbers"
    not_json = client.post(f"/api/v1/campaigns/{campaign.id}/recipients", data="numbers=1", headers=headers)
    assert not_json.status_code == 400 and not_json.json["error"]["code"] == "invalid_json"
    assert db.session.scalar(select(Recipient.id)) is None


def test_rate_limit_per_token(client, otp, app, monkeypatch):
    campaign, headers = otp
    monkeypatch.setitem(app.config, "TRIGGER_RATE_PER_MINUTE", 3)
    codes = [push(client, campaign, headers, [f"4917000001{i:02d}"]).status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    limited = push(client, campaign, headers, ["491700000199"])
    assert limited.json["error"]["code"] == "rate_limited" and 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "with this token" in limited.json["error"]["message"]
    # The limit is the token's, not the address's: a second token of the same owner starts afresh.
    _, other = tokens.create_token(campaign.author, campaign.workspace, "second")
    assert push(client, campaign, {"Authorization": f"Bearer {other}"}, ["491700000198"]).status_code == 200


def test_another_workspaces_token_sees_nothing(client, otp):
    campaign, _ = otp
    other = make_workspace("other")
    stranger = make_user("x@example.com", workspace=other, role="admin")
    _, token = tokens.create_token(stranger, other, "x")
    response = push(client, campaign, {"Authorization": f"Bearer {token}"}, ["491700000001"])
    assert response.status_code == 404
