"""Send again to failed numbers (issue 17, item 5) and the pre-flight estimate with GSM-7 hints
(item 6), through the page and the API, on real SQLite/PostgreSQL."""
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from extensions import db
from models import Campaign, Recipient, StopListEntry
from services import preflight, segments, tokens
from services.numbers import ctn_hash
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def ws():
    return make_workspace("acme", timezone="Europe/Berlin", sending_window="08:00-20:00")


@pytest.fixture
def author(ws):
    return make_user("author@example.com", workspace=ws, role="author")


@pytest.fixture
def other_author(ws):
    return make_user("other@example.com", workspace=ws, role="author")


@pytest.fixture
def sender(ws):
    return make_sender(ws, "ACME")


def bearer(user, ws):
    return {"Authorization": f"Bearer {tokens.create_token(user, ws, 'retry test')[1]}"}


# Every last state a recipient can have, with what each class must pick.
ROWS = [  # (number, state, smpp_status, in temporary, in failed, in expired)
    ("491700000001", "delivered", None, False, False, False),
    ("491700000002", "failed", "UNDELIV", False, True, False),
    ("491700000003", "failed", "EXPIRED", True, True, False),
    ("491700000004", "failed", "0x00000058", True, True, False),   # throttled, then given up
    ("491700000005", "failed", "0x0000000B", False, True, False),  # invalid destination: permanent
    ("491700000006", "expired", None, True, True, True),           # its Spread day passed
    ("491700000007", "queued", None, True, True, False),           # never reached the Core
    ("491700000008", "sent", None, False, False, False),           # no report yet: not a failure
    ("491700000009", "stop_listed", None, False, False, False),
    ("491700000010", "failed", "UNDELIV", False, False, False),    # on the stop-list now
]


def finished(ws, author, sender, status="Done", **fields):
    values = {"moderation": "approved", **fields}
    campaign = make_campaign(ws, author, sender=sender, status=status, **values)
    db.session.add_all(Recipient(campaign_id=campaign.id, number=n, ctn_hash=ctn_hash(n, ws.id), state=state,
                                 smpp_status=code) for n, state, code, *_ in ROWS)
    db.session.add(StopListEntry(workspace_id=ws.id, number="491700000010", ctn_hash=ctn_hash("491700000010", ws.id)))
    campaign.recipients_count = len(ROWS)
    db.session.commit()
    return campaign


def numbers_of(campaign_id):
    return sorted(db.session.scalars(select(Recipient.number).where(Recipient.campaign_id == campaign_id)))


@pytest.mark.parametrize("which,column", [("temporary", 3), ("failed", 4), ("expired", 5)])
def test_api_retry_holds_exactly_the_class(client, ws, author, sender, which, column):
    source = finished(ws, author, sender)
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": which}, headers=bearer(author, ws))
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    want = sorted(row[0] for row in ROWS if row[column])
    assert body["recipients"] == len(want) and numbers_of(body["id"]) == want
    draft = db.session.get(Campaign, body["id"])
    assert (draft.status, draft.moderation, draft.retry_of_id, draft.retry_which) == ("New", "awaiting",
                                                                                      source.id, which)
    assert draft.recipients_count == draft.queued_count == len(want)
    assert "491700000001" not in numbers_of(body["id"])  # never a delivered one
    states = set(db.session.scalars(select(Recipient.state).where(Recipient.campaign_id == draft.id)))
    assert states == {"queued"}
    detail = client.get(f"/api/v1/campaigns/{body['id']}", headers=bearer(author, ws)).get_json()
    assert detail["retry_of_id"] == source.id


def test_a_cancelled_expired_campaigns_leftovers_are_expired_class(client, ws, author, sender):
    source = finished(ws, author, sender, status="Expired")
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": "expired"}, headers=bearer(author, ws))
    assert r.status_code == 201
    assert numbers_of(r.get_json()["id"]) == ["491700000006", "491700000007"]


@pytest.mark.parametrize("status", ["New", "Pending", "Sending", "Paused"])
def test_retry_of_an_unfinished_campaign_is_illegal(client, ws, author, sender, status):
    source = finished(ws, author, sender, status=status, moderation="approved" if status != "New" else "awaiting")
    before = db.session.query(Campaign).count()
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": "failed"}, headers=bearer(author, ws))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "illegal_transition"
    assert db.session.query(Campaign).count() == before


def test_nothing_to_retry_is_a_409_and_makes_no_draft(client, ws, author, sender):
    source = make_campaign(ws, author, sender=sender, status="Done", moderation="approved", recipients=3)
    db.session.execute(db.update(Recipient).values(state="delivered"))
    db.session.commit()
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": "failed"}, headers=bearer(author, ws))
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "nothing_to_retry"
    assert db.session.query(Campaign).count() == 1


@pytest.mark.parametrize("payload", [{"which": "everything"}, {"which": None}, {"which": 1}, {}, {"which": ["failed"]},
                                     {"which": "failed", "extra": True}])
def test_bad_which_is_a_400_and_changes_nothing(client, ws, author, sender, payload):
    source = finished(ws, author, sender)
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json=payload, headers=bearer(author, ws))
    assert r.status_code == 400 and "error" in r.get_json()
    assert db.session.query(Campaign).count() == 1


def test_retry_of_another_authors_or_workspaces_campaign_is_404(client, ws, author, other_author, sender):
    source = finished(ws, author, sender)
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": "failed"},
                    headers=bearer(other_author, ws))
    assert r.status_code == 404
    elsewhere = make_workspace("elsewhere")
    stranger = make_user("x@example.com", workspace=elsewhere, role="admin")
    r = client.post(f"/api/v1/campaigns/{source.id}/retry", json={"which": "failed"},
                    headers=bearer(stranger, elsewhere))
    assert r.status_code == 404
    r = client.post("/api/v1/campaigns/999999999999999999999/retry", json={"which": "failed"},
                    headers=bearer(author, ws))
    assert r.status_code == 404


def test_the_page_offers_the_classes_and_makes_the_draft(client, ws, author, sender):
    source = finished(ws, author, sender, status="Failed")
    client.login(author.email)
    html = client.get(f"/w/acme/campaigns/{source.id}").get_data(as_text=True)
    assert "Send again to failed numbers" in html
    assert re.search(r"Temporary failures[^<]*\(4\)", html) and re.search(r"Every final failure \(6\)", html)
    r = client.post(f"/w/acme/campaigns/{source.id}/retry", data={"which": "temporary"})
    assert r.status_code == 302
    draft = db.session.scalars(select(Campaign).where(Campaign.retry_of_id == source.id)).one()
    assert draft.recipients_count == 4 and f"/campaigns/{draft.id}/wizard/" in r.headers["Location"]
    page = client.get(f"/w/acme/campaigns/{draft.id}").get_data(as_text=True)
    assert f"campaign #{source.id}" in page
    # Through moderation like any campaign: submit puts it in the queue, nothing is sent.
    assert client.post(f"/w/acme/campaigns/{draft.id}/submit").status_code == 302
    db.session.expire_all()
    assert (db.session.get(Campaign, draft.id).status, db.session.get(Campaign, draft.id).moderation) == \
        ("Pending", "awaiting")
    bad = client.post(f"/w/acme/campaigns/{source.id}/retry", data={"which": "bogus"}, follow_redirects=True)
    assert bad.status_code == 200 and "one of temporary, failed, expired" in bad.get_data(as_text=True)


def test_the_page_hides_the_retry_on_an_unfinished_campaign(client, ws, author, sender):
    source = make_campaign(ws, author, sender=sender, status="Sending", moderation="approved", recipients=2)
    client.login(author.email)
    assert "Send again to failed numbers" not in client.get(f"/w/acme/campaigns/{source.id}").get_data(as_text=True)


# --- 6. the pre-flight estimate ------------------------------------------------------------------

def berlin(day, hh, mm=0):
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BERLIN).astimezone(UTC)


def test_estimate_walks_the_window_and_the_daily_limit(ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, mode="OnDemand", recipients=0)
    campaign.recipients_count = 36_000
    campaign.message_text = "x" * 200  # 2 parts
    db.session.commit()
    core = {"ok": True, "tps": 10.0}   # 10 parts/s = 5 messages/s = 18,000/h
    day = date(2030, 3, 4)
    e = preflight.estimate(campaign, now=berlin(day, 18), core=core)
    assert e["parts"] == 72_000 and e["parts_per_message"] == 2 and e["rate_per_second"] == 5
    # 18:00–20:00 sends 36,000 — exactly all.
    assert e["finishes_at"] == berlin(day, 20) and e["duration_seconds"] == 2 * 3600
    assert e["words"] == "about 2 h, finishing today 20:00 Europe/Berlin"
    # Started at 19:00: 18,000 today, the rest tomorrow from 08:00 (1 h).
    e = preflight.estimate(campaign, now=berlin(day, 19), core=core)
    assert e["finishes_at"] == berlin(day + timedelta(days=1), 9)
    assert e["words"].endswith("finishing tomorrow 09:00 Europe/Berlin")
    # A daily limit of 10,000: four days.
    campaign.daily_limit = 10_000
    e = preflight.estimate(campaign, now=berlin(day, 7), core=core)
    assert e["finishes_at"].astimezone(BERLIN).date() == day + timedelta(days=3)
    # The Core does not answer: the nominal rate, said so.
    e = preflight.estimate(campaign, now=berlin(day, 7), core={"ok": False, "tps": None})
    assert e["rate_source"] == "nominal" and e["finishes_at"] is not None


def test_estimate_of_a_spread_that_cannot_fit_says_how_many_expire(ws, author, sender):
    day = date(2030, 3, 4)
    campaign = make_campaign(ws, author, sender=sender, mode="Spread", spread_first_day=day,
                             spread_last_day=day + timedelta(days=1), daily_limit=100)
    campaign.recipients_count = 500
    db.session.commit()
    e = preflight.estimate(campaign, now=berlin(day - timedelta(days=1), 12), core={"ok": True, "tps": 100})
    assert e["left_over"] == 300 and "300 recipients do not fit" in e["words"]


def test_encoding_hints_and_replacements():
    text = "It’s “great” – «vraiment»… 😀 ok"
    hints = preflight.encoding_hints(text)
    assert [(h["char"], h["replacement"]) for h in hints] == [
        ("’", "'"), ("“", '"'), ("”", '"'), ("–", "-"), ("«", '"'), ("»", '"'), ("…", "..."), ("😀", None)]
    assert preflight.encoding_hints("Plain GSM text {€}") == []
    assert preflight.replaced("a’b…") == "a'b..."


def test_the_review_step_highlights_and_replaces_and_the_json_lists_hints(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, recipients=3,
                             message_text="Sale – 20 % off… don’t miss it")
    client.login(author.email)
    html = client.get(f"/w/acme/campaigns/{campaign.id}/wizard/5").get_data(as_text=True)
    assert '<mark class="ucs2-char"' in html and "Use GSM-7 characters" in html
    assert "SMS parts billed" in html and "Pre-flight estimate" in html
    api = client.get(f"/api/v1/campaigns/{campaign.id}", headers=bearer(author, ws)).get_json()
    assert api["encoding"] == "UCS-2"
    assert {"char": "–", "replacement": "-"} in api["encoding_hints"]
    assert set(api["estimate"]) == {"parts", "duration_seconds", "finishes_at"} and api["estimate"]["parts"] == 3
    r = client.post(f"/w/acme/campaigns/{campaign.id}/wizard/gsm7", follow_redirects=True)
    assert "now GSM-7, 1 SMS part" in r.get_data(as_text=True)
    db.session.expire_all()
    text = db.session.get(Campaign, campaign.id).message_text
    assert text == "Sale - 20 % off... don't miss it" and segments.encoding_of(text) == "GSM-7"
    again = client.post(f"/w/acme/campaigns/{campaign.id}/wizard/gsm7", follow_redirects=True)
    assert "Nothing to replace" in again.get_data(as_text=True)
    api = client.get(f"/api/v1/campaigns/{campaign.id}", headers=bearer(author, ws)).get_json()
    assert api["encoding_hints"] == []


def test_gsm7_replacement_is_refused_on_a_submitted_campaign(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=1, message_text="don’t")
    client.login(author.email)
    r = client.post(f"/w/acme/campaigns/{campaign.id}/wizard/gsm7", follow_redirects=True)
    assert "only drafts" in r.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).message_text == "don’t"


def test_the_moderation_row_shows_the_estimate(client, ws, author, sender):
    make_make = make_campaign(ws, author, sender=sender, status="Pending", recipients=4, message_text="Hello")
    moderator = make_user("mod@example.com", workspace=ws, role="moderator")
    client.login(moderator.email)
    html = client.get("/w/acme/moderation").get_data(as_text=True)
    assert f'id="campaign-{make_make.id}"' in html
    assert re.search(r"4 SMS parts billed · (about|under)", html)


def test_the_moderation_api_carries_the_estimate(client, ws, author, sender):
    campaign = make_campaign(ws, author, sender=sender, status="Pending", recipients=4, message_text="Hello")
    moderator = make_user("mod@example.com", workspace=ws, role="moderator")
    items = client.get("/api/v1/moderation?kind=campaign", headers=bearer(moderator, ws)).get_json()["items"]
    [item] = [i for i in items if i["id"] == campaign.id]
    assert item["estimate"]["parts"] == 4 and item["estimate"]["duration_seconds"] is not None
    assert re.search(r"^(about|under)", item["estimate"]["words"])
