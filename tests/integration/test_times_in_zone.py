"""Times in the workspace's zone (issue 17, item 4): the 24-hour chart's hours, Live Pulse "as of",
campaign and audit times carry the zone's name; `<time datetime>` is valid HTML; the API stays UTC."""
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from extensions import db, redis_connection
from models import HourlyStat, utcnow
from services import tokens
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

BERLIN = ZoneInfo("Europe/Berlin")
TIME_RE = re.compile(r'<time datetime="([^"]+)">([^<]+)</time>')


@pytest.fixture(autouse=True)
def _fresh_redis_state():
    redis = redis_connection()
    for key in list(redis.scan_iter("mc:dashboard:*")) + list(redis.scan_iter("mc:diag:*")):
        redis.delete(key)


@pytest.fixture
def world():
    ws = make_workspace("acme", timezone="Europe/Berlin")
    admin = make_user("admin@acme.test", workspace=ws, role="admin")
    campaign = make_campaign(ws, admin, sender=make_sender(ws), status="Done", moderation="approved",
                             mode="OnTime", start_at=utcnow() + timedelta(hours=2), recipients=1)
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    db.session.add(HourlyStat(campaign_id=campaign.id, hour=hour, workspace_id=ws.id, sent=321, delivered=0,
                              failed=4))
    db.session.commit()
    return ws, admin, campaign, hour


def valid_times(html):
    found = TIME_RE.findall(html)
    for value, _ in found:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value  # no microseconds, Z
    return found


def test_overview_hours_and_as_of_are_in_the_workspace_zone(client, world):
    ws, admin, _, hour = world
    client.login(admin.email)
    html = client.get("/w/acme/").get_data(as_text=True)
    local = hour.astimezone(BERLIN)
    assert f"{local:%H}:00 Europe/Berlin — Sent: 321" in html  # the chart's bar title
    assert "last 24 hours (Europe/Berlin)" in html and "Hour (Europe/Berlin)" in html
    assert re.search(r"as of \d{4}-\d\d-\d\d \d\d:\d\d:\d\d Europe/Berlin", html)
    valid_times(html)
    pulse = client.get("/w/acme/pulse.json").get_json()
    assert pulse["at"].endswith("Z") and pulse["at_local"].endswith("Europe/Berlin")


def test_campaign_and_audit_times_name_the_zone_and_the_api_stays_utc(client, world):
    ws, admin, campaign, _ = world
    client.login(admin.email)
    html = client.get(f"/w/acme/campaigns/{campaign.id}").get_data(as_text=True)
    times = valid_times(html)
    assert times and all(text.endswith("Europe/Berlin") for _, text in times)
    start_local = campaign.start_at.astimezone(BERLIN)
    assert f"{start_local:%Y-%m-%d %H:%M} Europe/Berlin" in html
    client.post(f"/w/acme/campaigns/{campaign.id}/archive")
    audit = client.get("/w/acme/audit").get_data(as_text=True)
    assert "When (Europe/Berlin)" in audit
    assert any(text.endswith("Europe/Berlin") and re.search(r":\d\d\.\d{3} ", text) for _, text in valid_times(audit))
    token = tokens.create_token(admin, ws, "t")[1]
    api = client.get(f"/api/v1/campaigns/{campaign.id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert api["start_at"].endswith("Z") and api["created_at"].endswith("Z")
