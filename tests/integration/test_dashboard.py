"""The Overview dashboard: KPI tiles, Live Pulse (JSON refreshed by static/js/pulse.js), accessible
SVG charts, Top Authors, the super admin's all-workspaces view — read from counters only."""
import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from extensions import db, redis_connection
from models import HourlyStat, utcnow
from services import dashboard, pulse
from tests.campaign_factories import make_campaign
from tests.factories import make_user, make_workspace


@pytest.fixture(autouse=True)
def _fresh_redis_state():
    redis = redis_connection()
    for key in redis.scan_iter("mc:pulse:*"):
        redis.delete(key)
    redis.delete("mc:diag:core")
    for key in redis.scan_iter("mc:dashboard:*"):
        redis.delete(key)


@pytest.fixture
def world():
    ws = make_workspace("acme", "Acme Ltd")
    admin = make_user("admin@acme.test", workspace=ws, role="admin")
    author = make_user("author@acme.test", workspace=ws, role="author")
    now = utcnow()
    make_campaign(ws, author, status="Sending", moderation="approved", recipients_count=1000, sent_count=700,
                  delivered_count=500, failed_count=50, inflight_count=150)
    make_campaign(ws, author, status="Paused", moderation="approved", recipients_count=100, sent_count=60,
                  delivered_count=40, failed_count=10, inflight_count=10)
    make_campaign(ws, admin, status="Done", moderation="approved", recipients_count=10, sent_count=10,
                  delivered_count=9, failed_count=1)
    make_campaign(ws, author, status="Failed")
    make_campaign(ws, author, status="Expired", moderation="approved")
    make_campaign(ws, author, status="New")
    old = make_campaign(ws, admin, status="Done", moderation="approved", sent_count=5)
    old.created_at = now - timedelta(days=45)
    make_campaign(ws, author, status="Done", archived=True)
    db.session.commit()
    hour = now.replace(minute=0, second=0, microsecond=0)
    campaign_id = dashboard.db.session.scalars(db.select(dashboard.Campaign.id)).first()
    db.session.add_all([HourlyStat(campaign_id=campaign_id, hour=hour, workspace_id=ws.id, sent=300, delivered=200,
                                   failed=7),
                        HourlyStat(campaign_id=campaign_id, hour=hour - timedelta(hours=3), workspace_id=ws.id,
                                   sent=400, delivered=300, failed=43),
                        HourlyStat(campaign_id=campaign_id, hour=hour - timedelta(hours=30), workspace_id=ws.id,
                                   sent=999, delivered=0, failed=999)])
    db.session.commit()
    return {"ws": ws, "admin": admin, "author": author}


def test_figures_come_from_counters(world):
    data = dashboard.dashboard([world["ws"].id])
    assert data["kpis"]["total"] == 7  # archived not counted
    assert data["kpis"]["active"] == 2 and data["kpis"]["completed"] == 2 and data["kpis"]["failed"] == 1
    assert data["kpis"]["expired"] == 1
    assert dict(data["ring"]) == {"Delivered": 540, "In flight": 160, "Errors": 60}
    assert dict(data["funnel"])["Sending"] == 1 and list(dict(data["funnel"]))[0] == "New"
    assert len(data["hourly"]) == 24
    assert data["hourly"][-1][1:] == (300, 7) and data["hourly"][-4][1:] == (400, 43)
    assert sum(s for _, s, _ in data["hourly"]) == 700  # the 30-hour-old row is outside the window
    top = data["top_authors"]
    assert top[0]["user"]["email"] == "author@acme.test" and top[0]["campaigns"] == 6 and top[0]["sent"] == 760
    assert top[1]["campaigns"] == 1  # the admin's 45-day-old campaign is not counted
    assert data["pulse"]["inflight"] == 160


def test_overview_page_is_finished_and_accessible(client, world):
    client.login("author@acme.test")
    response = client.get("/w/acme/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in ("Live Pulse", "In flight", "Delivery rate", "Core API", "Status funnel", "Last 24 hours",
                 "Top authors", 'data-pulse-url="/w/acme/pulse.json"'):
        assert text in html, text
    assert "Recent activity" not in html  # audit.view only (tests/integration/test_least_information.py)
    assert "<script>" not in html and 'src="/static/js/pulse.js"' in html
    svgs = re.findall(r"<svg[^>]*>.*?</svg>", html, re.S)
    assert len(svgs) == 3
    for svg in svgs:
        assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg and "aria-labelledby" in svg
    ring = svgs[0]
    assert "Delivered: 540" in ring and "In flight: 160" in ring and "Errors: 60" in ring
    assert ">540 · 71.1%<" in ring  # values printed, not only coloured
    assert "pattern" in ring  # series told apart by pattern, not by colour alone
    assert "Sending: 1" in svgs[1]
    assert "700 sent, 50 failed" in svgs[2]
    headings = [int(h) for h in re.findall(r"<h([1-6])", html)]
    assert headings[0] == 1 and all(b - a <= 1 for a, b in zip(headings, headings[1:]))


def test_last_minute_slides_over_the_minute_boundary(app, world):
    """Counts do not drop to zero when the clock passes :00; they fade out over the next minute."""
    ws = world["ws"].id
    minute_start = 60 * 29_000_000
    pulse.record(ws, now=minute_start + 50, sent=200, delivered=100)
    assert pulse.last_minute([ws], now=minute_start + 59) == {"sent": 200, "delivered": 100, "failed": 0}
    assert pulse.last_minute([ws], now=minute_start + 60) == {"sent": 200, "delivered": 100, "failed": 0}
    assert pulse.last_minute([ws], now=minute_start + 90) == {"sent": 100, "delivered": 50, "failed": 0}
    pulse.record(ws, now=minute_start + 90, failed=4)
    assert pulse.last_minute([ws], now=minute_start + 105) == {"sent": 50, "delivered": 25, "failed": 4}
    assert pulse.last_minute([ws], now=minute_start + 120) == {"sent": 0, "delivered": 0, "failed": 4}
    assert pulse.last_minute([ws + 1000], now=minute_start + 60) == {"sent": 0, "delivered": 0, "failed": 0}


def _campaigns_tile(html):
    return int(re.search(r'tile-value">([\d,]+)</span><span class="tile-label">Campaigns<', html).group(1))


def test_campaign_figures_are_shared_for_a_few_seconds(client, app, world):
    """Fifty operators on one home page: one set of GROUP BYs per DASHBOARD_CACHE_SECONDS."""
    app.config["DASHBOARD_CACHE_SECONDS"] = 5
    client.login("author@acme.test")
    assert _campaigns_tile(client.get("/w/acme/").get_data(as_text=True)) == 7
    key = dashboard._cache_key([world["ws"].id])
    assert 0 < redis_connection().ttl(key) <= 5
    make_campaign(world["ws"], world["author"], status="Sending", moderation="approved", inflight_count=40)
    db.session.commit()
    html = client.get("/w/acme/").get_data(as_text=True)
    assert _campaigns_tile(html) == 7    # the shared figures, at most 5 s old
    assert client.get("/w/acme/pulse.json").get_json()["inflight"] == 200  # the Live Pulse is live
    redis_connection().delete(key)       # what the expiry does
    assert _campaigns_tile(client.get("/w/acme/").get_data(as_text=True)) == 8


def test_dashboard_without_redis_computes_the_figures(client, app, world):
    app.config["DASHBOARD_CACHE_SECONDS"] = 5
    client.login("author@acme.test")
    working = app.extensions.pop("mc_redis", None)
    app.config["REDIS_URL"] = "redis://127.0.0.1:1/0"  # nothing listens there
    try:
        html = client.get("/w/acme/").get_data(as_text=True)
    finally:
        app.extensions.pop("mc_redis", None)
        if working is not None:
            app.extensions["mc_redis"] = working
    assert _campaigns_tile(html) == 7


def test_pulse_json_reports_the_last_minute(client, world):
    pulse.record(world["ws"].id, sent=20, delivered=8, failed=2)
    pulse.record(world["ws"].id + 1000, sent=999, delivered=999)  # another workspace: not counted
    client.login("author@acme.test")
    data = client.get("/w/acme/pulse.json").get_json()
    assert data["inflight"] == 160 and data["sent_last_minute"] == 20
    assert data["delivery_rate"] == 80.0
    assert data["core"]["ok"] is False  # no Core configured in the suite
    pulse.record(world["ws"].id, delivered=10)
    assert client.get("/w/acme/pulse.json").get_json()["delivery_rate"] == 90.0


def test_dashboard_never_reads_recipient_rows(client, world):
    statements = []

    def capture(conn, cursor, statement, *args):
        statements.append(statement.lower())

    client.login("author@acme.test")
    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert client.get("/w/acme/").status_code == 200
        assert client.get("/w/acme/pulse.json").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert statements
    # The recipients table (not a column such as workspaces.quota_max_recipients) is never read.
    assert not [s for s in statements if re.search(r"\b(from|join|update)\s+recipients\b", s)]


def test_superadmin_sees_every_workspace(client, app, world):
    other = make_workspace("bravo", "Bravo Ltd")
    make_campaign(other, make_user("b@bravo.test", workspace=other, role="author"), status="Sending",
                  moderation="approved", delivered_count=100, inflight_count=40)
    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    html = client.get("/admin/overview").get_data(as_text=True)
    assert "Overview · all workspaces" in html and "Delivered: 640" in html
    assert client.get("/admin/pulse.json").get_json()["inflight"] == 200

    member = app.test_client()
    member.login("admin@acme.test")
    assert member.get("/admin/overview").status_code == 404
    assert member.get("/admin/pulse.json").status_code == 404


def test_empty_workspace_renders(client):
    ws = make_workspace("empty", "Empty Ltd")
    make_user("solo@empty.test", workspace=ws, role="admin")
    client.login("solo@empty.test")
    html = client.get("/w/empty/").get_data(as_text=True)
    assert "No campaigns were created in the last 30 days." in html
    assert "Total 0." in html


def test_pulse_script_is_served(client):
    js = client.get("/static/js/pulse.js")
    assert js.status_code == 200 and b"data-pulse-url" in js.data
    js.close()
