"""The five-step wizard through the HTTP client: each mode end to end, validation, resumability,
permissions, audit of edits, and the rejected-then-resubmitted path."""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from extensions import db
from models import Campaign, utcnow
from services import campaigns as lifecycle
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture
def ws():
    return make_workspace("acme", timezone="Europe/Berlin", sending_window="08:00-20:00")


@pytest.fixture
def author(ws):
    return make_user("author@example.com", workspace=ws, role="author")


@pytest.fixture
def sender(ws):
    return make_sender(ws, "ACME", label="Acme")


@pytest.fixture
def signed_in(client, author):
    client.login("author@example.com")
    return client


def _campaign(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


def _new(client, mode):
    response = client.post("/w/acme/campaigns/new", data={"mode": mode})
    assert response.status_code == 302, response.get_data(as_text=True)
    campaign_id = int(response.headers["Location"].split("/campaigns/")[1].split("/")[0])
    assert response.headers["Location"].endswith(f"/campaigns/{campaign_id}/wizard/2")
    return campaign_id


def _params(sender, **extra):
    data = {"name": "May newsletter", "sender_revision_id": str(sender.id), "text": "Hello {name}€",
            "daily_limit": "", "auto_start": "y"}
    data.update(extra)
    return data


def _local(days=1, hour=10):
    day = (datetime.now(ZoneInfo("Europe/Berlin")) + timedelta(days=days)).date()
    return f"{day.isoformat()}T{hour:02d}:30", day


@pytest.mark.parametrize("mode", ["OnDemand", "OnTime", "Spread", "Trigger"])
def test_each_mode_through_all_steps_to_submission(signed_in, sender, mode, audit_events):
    client = signed_in
    cid = _new(client, mode)
    extra = {}
    if mode == "OnTime":
        extra["start_at"], _ = _local()
    if mode == "Spread":
        _, first = _local(1)
        extra.update(window_start=first.isoformat(), window_end=(first + timedelta(days=2)).isoformat())
    if mode == "Trigger":
        extra["ignore_daily_window"] = "y"
    r = client.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, **extra))
    assert r.status_code == 302 and r.headers["Location"].endswith("/wizard/3"), r.get_data(as_text=True)
    page = client.get(f"/w/acme/campaigns/{cid}/wizard/3").get_data(as_text=True)
    assert 'value="ACME"' in page                       # SADDR defaults from the sender revision
    r = client.post(f"/w/acme/campaigns/{cid}/wizard/3", data={"saddr": "ACME", "ston": "5", "snpi": "0",
                                                               "dton": "1", "dnpi": "1"})
    if mode == "Trigger":
        assert r.headers["Location"].endswith("/wizard/5")
        assert client.get(f"/w/acme/campaigns/{cid}/wizard/4").headers["Location"].endswith("/wizard/5")
    else:
        assert r.headers["Location"].endswith("/wizard/4")
        page = client.get(f"/w/acme/campaigns/{cid}/wizard/4").get_data(as_text=True)
        assert "0</strong> recipients so far" in page
        assert client.post(f"/w/acme/campaigns/{cid}/wizard/4").status_code == 400   # nothing uploaded yet
        add_recipients(_campaign(cid), ["491701234567", "491701234568", "491701234569"])
        assert client.post(f"/w/acme/campaigns/{cid}/wizard/4").headers["Location"].endswith("/wizard/5")
    review = client.get(f"/w/acme/campaigns/{cid}/wizard/5").get_data(as_text=True)
    assert "May newsletter" in review and "GSM-7" in review
    if mode != "Trigger":
        assert "•••••••••567" in review and "491701234567" not in review   # masked sample
        assert "SMS parts billed" in review and ", finishing " in review     # the pre-flight estimate (issue 17)
    r = client.post(f"/w/acme/campaigns/{cid}/wizard/5")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/campaigns/{cid}")
    campaign = _campaign(cid)
    assert campaign.status == ("Building" if mode == "Spread" else "Pending")
    assert campaign.moderation == "awaiting" and campaign.sender_revision_id == sender.id
    assert campaign.ignore_daily_window is (mode == "Trigger")
    edits = audit_events(action="campaigns.edited", object_id=str(cid))
    assert edits and any("message_text" in e["after"] for e in edits)
    assert audit_events(action="campaigns.submit", object_id=str(cid))


def test_on_time_start_is_entered_in_workspace_time_zone_and_stored_utc(signed_in, sender):
    cid = _new(signed_in, "OnTime")
    local, day = _local(days=2, hour=9)
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, start_at=local))
    want = datetime(day.year, day.month, day.day, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)
    assert _campaign(cid).start_at == want
    assert f'value="{local}"' in signed_in.get(f"/w/acme/campaigns/{cid}/wizard/2").get_data(as_text=True)


@pytest.mark.parametrize("mode,fields,field_error", [
    ("OnDemand", {"name": ""}, "Give the campaign a name"),
    ("OnDemand", {"sender_revision_id": ""}, "Choose an approved sender name"),
    ("OnDemand", {"text": "   "}, "Write the message text"),
    ("OnDemand", {"text": "x" * 1531}, "11 SMS parts"),
    ("OnDemand", {"daily_limit": "0"}, "whole number of messages above 0"),
    ("OnDemand", {"daily_limit": "ten"}, "whole number of messages above 0"),
    ("OnTime", {"start_at": ""}, "Choose when to send"),
    ("OnTime", {"start_at": "2020-01-01T10:00"}, "must be in the future"),
    ("OnTime", {"start_at": "tomorrow"}, "Enter the start as date and time"),
    ("Spread", {"window_start": "2020-01-01", "window_end": "2020-01-02"}, "in the past"),
    ("Spread", {"window_start": "2999-01-05", "window_end": "2999-01-01"}, "on or after the first day"),
    ("Spread", {"window_start": "", "window_end": ""}, "Choose the window"),
])
def test_step_two_validation_tells_what_to_fix(signed_in, sender, mode, fields, field_error):
    cid = _new(signed_in, mode)
    response = signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, **fields))
    assert response.status_code == 400
    assert field_error in response.get_data(as_text=True)
    assert _campaign(cid).wizard_step == 2


def test_only_approved_current_sender_names_are_accepted(signed_in, ws, sender):
    pending = make_sender(ws, "PENDING", state="pending")
    archived = make_sender(ws, "GONE", archived=True)
    cid = _new(signed_in, "OnDemand")
    page = signed_in.get(f"/w/acme/campaigns/{cid}/wizard/2").get_data(as_text=True)
    assert "ACME" in page and "PENDING" not in page and "GONE" not in page
    for revision in (pending, archived):
        response = signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2",
                                  data=_params(sender, sender_revision_id=str(revision.id)))
        assert response.status_code == 400 and "not (or no longer) approved" in response.get_data(as_text=True)


def test_smpp_step_validates_ton_and_npi(signed_in, sender):
    cid = _new(signed_in, "OnDemand")
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender))
    bad = signed_in.post(f"/w/acme/campaigns/{cid}/wizard/3", data={"saddr": "ACME", "ston": "7", "snpi": "2",
                                                                    "dton": "1", "dnpi": "1"})
    text = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "from 0 to 6" in text and "must be one of" in text
    ok = signed_in.post(f"/w/acme/campaigns/{cid}/wizard/3", data={"saddr": "12345", "ston": "1", "snpi": "1",
                                                                   "dton": "2", "dnpi": "8"})
    assert ok.status_code == 302
    c = _campaign(cid)
    assert (c.saddr, c.ston, c.snpi, c.dton, c.dnpi) == ("12345", 1, 1, 2, 8)


def test_ignore_daily_window_only_for_trigger(signed_in, sender):
    cid = _new(signed_in, "OnDemand")
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, ignore_daily_window="y"))
    assert _campaign(cid).ignore_daily_window is False


def test_text_newlines_are_counted_like_the_browser(signed_in, sender):
    cid = _new(signed_in, "OnDemand")
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, text="a\r\nb"))
    assert _campaign(cid).message_text == "a\nb"


def test_steps_cannot_be_skipped_and_drafts_resume(signed_in, sender):
    cid = _new(signed_in, "OnDemand")
    response = signed_in.get(f"/w/acme/campaigns/{cid}/wizard/5")
    assert response.status_code == 302 and response.headers["Location"].endswith("/wizard/2")
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data={**_params(sender), "then": "exit"})
    listing = signed_in.get("/w/acme/campaigns").get_data(as_text=True)
    assert f"/campaigns/{cid}/wizard/3" in listing and "Continue at step 3" in listing


def test_only_drafts_can_be_edited(signed_in, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=1)
    response = signed_in.post(f"/w/acme/campaigns/{campaign.id}/wizard/2", data=_params(sender, name="Changed"))
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/campaigns/{campaign.id}")
    assert _campaign(campaign.id).name != "Changed"


def test_other_authors_drafts_are_not_found_and_moderators_cannot_create(client, ws, author, sender):
    other = make_user("other@example.com", workspace=ws, role="author")
    theirs = make_campaign(ws, other, sender=sender)
    client.login("author@example.com")
    assert client.get(f"/w/acme/campaigns/{theirs.id}/wizard/2").status_code == 404
    assert client.post(f"/w/acme/campaigns/{theirs.id}/wizard/2", data=_params(sender)).status_code == 404
    make_user("mod@example.com", workspace=ws, role="moderator")
    mod = client.application.test_client()
    mod.login("mod@example.com")
    assert mod.get("/w/acme/campaigns/new").status_code == 403
    foreign = make_workspace("other")
    stranger = make_campaign(foreign, make_user(workspace=foreign), sender=make_sender(foreign))
    assert client.get(f"/w/acme/campaigns/{stranger.id}/wizard/1").status_code == 404


def test_admin_edits_any_draft(client, ws, author, sender):
    make_user("admin@example.com", workspace=ws, role="admin")
    campaign = make_campaign(ws, author, sender=sender)
    client.login("admin@example.com")
    response = client.post(f"/w/acme/campaigns/{campaign.id}/wizard/2", data=_params(sender, name="Fixed by admin"))
    assert response.status_code == 302
    assert _campaign(campaign.id).name == "Fixed by admin"


def test_rejected_campaign_is_edited_and_resubmitted(signed_in, ws, author, sender, audit_events):
    moderator = make_user("mod@example.com", workspace=ws, role="moderator")
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=1)
    lifecycle.reject(ws, campaign.id, moderator.membership_in(ws.id), moderator, "Say who you are")
    page = signed_in.get(f"/w/acme/campaigns/{campaign.id}/wizard/2").get_data(as_text=True)
    assert "Say who you are" in page
    r = signed_in.post(f"/w/acme/campaigns/{campaign.id}/wizard/2",
                       data=_params(sender, text="Hello from Acme Ltd"))
    assert r.status_code == 302
    edit = audit_events(action="campaigns.edited", object_id=str(campaign.id))[0]
    assert edit["before"]["message_text"] == "Hello from ACME" and edit["after"]["message_text"] == "Hello from Acme Ltd"
    signed_in.post(f"/w/acme/campaigns/{campaign.id}/wizard/5")
    c = _campaign(campaign.id)
    assert (c.status, c.moderation) == ("Pending", "awaiting")


def test_changing_mode_clears_the_old_modes_fields(signed_in, sender):
    cid = _new(signed_in, "OnTime")
    local, _ = _local()
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/2", data=_params(sender, start_at=local))
    signed_in.post(f"/w/acme/campaigns/{cid}/wizard/1", data={"mode": "OnDemand"})
    c = _campaign(cid)
    assert (c.mode, c.start_at, c.wizard_step) == ("OnDemand", None, 2)


def test_review_lists_what_blocks_submission(signed_in, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, mode="OnTime", start_at=utcnow() - timedelta(hours=1),
                             recipients=1)
    review = signed_in.get(f"/w/acme/campaigns/{campaign.id}/wizard/5").get_data(as_text=True)
    assert "Before you can submit" in review and "The start time has passed" in review
    signed_in.post(f"/w/acme/campaigns/{campaign.id}/wizard/5")
    assert _campaign(campaign.id).status == "New"


def test_estimate_uses_daily_limit_and_window(app, ws, author, sender):
    from services.campaign_drafts import estimates

    campaign = make_campaign(ws, author, sender=sender, daily_limit=1000)
    campaign.recipients_count = 2500
    assert estimates.estimate(campaign)["days"] == 3
    campaign.daily_limit = None
    estimate = estimates.estimate(campaign)
    assert estimate["window_hours"] == 12 and estimate["capacity_per_day"] == 12 * 36_000 and estimate["days"] == 1


def test_the_review_step_shows_the_preflight_checklist_for_a_large_campaign(client, app, monkeypatch):
    from extensions import redis_connection
    from services import diagnostics
    from tests.campaign_factories import make_campaign, make_sender
    from tests.factories import make_user, make_workspace

    redis_connection().delete(diagnostics.CORE_CACHE_KEY)  # a cached Core probe of another test

    ws = make_workspace("big")
    author = make_user("big@example.com", workspace=ws, role="author")
    small = make_campaign(ws, author, sender=make_sender(ws), recipients=3)
    monkeypatch.setitem(app.config, "PREFLIGHT_MIN_RECIPIENTS", 3)
    monkeypatch.setitem(app.config, "CORE_URL", "https://127.0.0.1:9")  # nothing listens: the Core check fails
    client.login("big@example.com")
    page = client.get(f"/w/big/campaigns/{small.id}/wizard/5").get_data(as_text=True)
    assert "Pre-flight checklist" in page and "badge-fail" in page
    monkeypatch.setitem(app.config, "PREFLIGHT_MIN_RECIPIENTS", 4)
    assert "Pre-flight checklist" not in client.get(f"/w/big/campaigns/{small.id}/wizard/5").get_data(as_text=True)
    redis_connection().delete(diagnostics.CORE_CACHE_KEY)  # leave no "Core down" for the next test
