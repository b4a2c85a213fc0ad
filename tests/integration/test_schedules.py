"""Schedules that hold (issue 17, items 1 and 2), with a controlled clock passed as `now=` through
the lifecycle, the tick and dispatch, against the reference Core over real mutual TLS.

OnTime: a Start before start_at schedules (Pending, the page says when); the tick starts it at
start_at; nothing reaches the Core earlier; a late approval starts only inside the start window.
Spread: each recipient on exactly one day; each day sends only its share inside the sending window;
the tick starts it on day one; past days' unsent recipients expire (counted); the window's end
expires the campaign; a Pending Spread past its window expires.
"""
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from coresim.testing import sim_session, start_core
from extensions import db
from models import Campaign, Recipient, utcnow
from services import approval, dispatch, schedule, spread
from services import campaigns as lifecycle
from services.errors import DomainError
from tests.campaign_factories import add_recipients, make_campaign, make_sender
from tests.factories import make_user, make_workspace

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(day, hh, mm=0):
    """UTC instant of local Berlin time `hh:mm` on `day`."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BERLIN).astimezone(UTC)


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_core(str(tmp_path_factory.mktemp("schedule-core")), latency_seconds=0.05, failure_ratio=0.0)
    yield server
    server.stop()


@pytest.fixture
def sim(core, app, monkeypatch):
    session = sim_session(core.certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, f"{core.certs_dir}/{name}")
    monkeypatch.setitem(app.config, "CORE_URL", core.url)
    monkeypatch.setitem(app.config, "DISPATCH_BATCH_SIZE", 50)
    yield session
    session.post(core.url + "/_sim/reset").raise_for_status()
    session.close()


def accepted(sim, core):
    return sim.get(core.url + "/_sim/stats").json()["accepted"]


@pytest.fixture
def world():
    ws = make_workspace(timezone="Europe/Berlin", sending_window="08:00-20:00")
    author = make_user(workspace=ws, role="author")
    moderator = make_user(workspace=ws, role="moderator")
    return ws, author, moderator, make_sender(ws, "ACME")


def numbers(n):
    return [f"4917{i:08d}" for i in range(1, n + 1)]


def fresh(campaign_id):
    db.session.expire_all()
    return db.session.get(Campaign, campaign_id)


# --- 1. OnTime holds its time ------------------------------------------------------------------

def test_start_before_start_at_schedules_and_the_tick_starts_it_on_time(core, sim, world):
    ws, author, _, sender = world
    day = date(2030, 3, 4)
    start_at, pressed = berlin(day, 14), berlin(day, 11)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="approved", sender=sender,
                             auto_start=False, start_at=start_at)
    add_recipients(campaign, numbers(20))
    campaign.queued_count = 20
    db.session.commit()

    lifecycle.apply(campaign, "start", actor=author, now=pressed)
    campaign = fresh(campaign.id)
    assert (campaign.status, campaign.start_requested_at, campaign.started_at) == ("Pending", pressed, None)
    assert approval.verify_for_dispatch(campaign.id)  # scheduling changes nothing the moderator approved
    assert schedule.start_phrase(campaign, pressed) == "starts at 14:00 Europe/Berlin, in 3 h"
    with pytest.raises(DomainError, match="Already scheduled"):  # a second Start changes nothing
        lifecycle.apply(campaign, "start", actor=author, now=pressed)

    for minute in (pressed, start_at - timedelta(minutes=1)):
        assert dispatch.start_due_campaigns(now=minute) == []
        dispatch.dispatch_campaign(campaign.id, now=minute)
    assert accepted(sim, core) == 0 and fresh(campaign.id).sent_count == 0

    assert dispatch.start_due_campaigns(now=start_at) == [campaign.id]
    assert approval.verify_for_dispatch(campaign.id)  # the job's check before dispatching
    dispatch.dispatch_campaign(campaign.id, now=start_at)
    campaign = fresh(campaign.id)
    assert campaign.status == "Sending" and campaign.started_at == start_at
    assert accepted(sim, core) == 20 and campaign.sent_count == 20


def test_nothing_reaches_the_core_before_start_at_even_if_the_row_says_sending(core, sim, world):
    """Defence in depth: a campaign put to Sending early (by hand, an old worker) still waits."""
    ws, author, _, sender = world
    start_at = berlin(date(2030, 3, 4), 14)
    campaign = make_campaign(ws, author, mode="OnTime", status="Sending", moderation="approved", sender=sender,
                             start_at=start_at)
    add_recipients(campaign, numbers(5))
    campaign.queued_count = 5
    db.session.commit()
    assert dispatch.allowance(fresh(campaign.id), start_at - timedelta(seconds=1)) == 0
    dispatch.dispatch_campaign(campaign.id, now=start_at - timedelta(seconds=1))
    assert accepted(sim, core) == 0
    dispatch.dispatch_campaign(campaign.id, now=start_at)
    assert accepted(sim, core) == 5


@pytest.mark.parametrize("start_hh,approved_at,expected", [
    (9, (0, 15), "Sending"),    # late, but inside the day's sending window: starts at once
    (9, (0, 21), "Expired"),    # after the window that day: its chance has passed
    (21, (1, 10), "Sending"),   # start_at after the window: the next day's window is its chance
    (21, (1, 20), "Expired"),
    (9, (0, 8), "Pending"),     # approved before start_at: waits for the tick
])
def test_an_ontime_campaign_approved_late_starts_only_inside_its_window(world, start_hh, approved_at, expected):
    ws, author, moderator, sender = world
    day = date(2030, 3, 4)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="awaiting", sender=sender,
                             start_at=berlin(day, start_hh), recipients=3)
    plus_days, hh = approved_at
    lifecycle.apply(campaign, "approve", actor=moderator, now=berlin(day + timedelta(days=plus_days), hh))
    campaign = fresh(campaign.id)
    assert campaign.status == expected and campaign.moderation == "approved"
    assert (campaign.finished_at is not None) == (expected == "Expired")


def test_a_start_after_the_window_is_refused_and_the_tick_expires_it(world):
    ws, author, _, sender = world
    day = date(2030, 3, 4)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="approved", sender=sender,
                             auto_start=False, start_at=berlin(day, 9), recipients=2)
    late = berlin(day, 20, 30)
    with pytest.raises(DomainError, match="start window has passed"):
        lifecycle.apply(campaign, "start", actor=author, now=late)
    assert dispatch.start_due_campaigns(now=late) == []
    assert dispatch.expire_overdue(now=berlin(day, 19, 59)) == []
    assert dispatch.expire_overdue(now=late) == [campaign.id]
    assert fresh(campaign.id).status == "Expired"
    assert dispatch.expire_overdue(now=late) == []  # idempotent


def test_an_unapproved_ontime_past_its_window_expires(world):
    ws, author, _, sender = world
    day = date(2030, 3, 4)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="awaiting", sender=sender,
                             start_at=berlin(day, 9), recipients=2)
    assert dispatch.expire_overdue(now=berlin(day + timedelta(days=1), 7)) == [campaign.id]
    assert fresh(campaign.id).status == "Expired"


def test_the_page_says_when_a_scheduled_campaign_starts(client, app, world):
    ws, author, _, sender = world
    start_at = (utcnow() + timedelta(hours=3, minutes=1)).replace(second=0, microsecond=0)
    campaign = make_campaign(ws, author, mode="OnTime", status="Pending", moderation="approved", sender=sender,
                             auto_start=False, start_at=start_at, recipients=2)
    client.login(author.email)
    page = client.get(f"/w/{ws.slug}/campaigns/{campaign.id}").get_data(as_text=True)
    assert f'action="/w/{ws.slug}/campaigns/{campaign.id}/start"' in page
    response = client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/start", follow_redirects=True)
    html = response.get_data(as_text=True)
    local = start_at.astimezone(BERLIN)
    assert f"at {local:%H:%M} Europe/Berlin, in 3 h" in html
    campaign = fresh(campaign.id)
    assert campaign.status == "Pending" and campaign.start_requested_at is not None
    assert approval.verify_for_dispatch(campaign.id)
    assert f'campaigns/{campaign.id}/start"' not in html  # scheduled: no second Start


# --- 2. Spread, end to end ---------------------------------------------------------------------

def spread_campaign(world, first, last, n=30, **fields):
    ws, author, _, sender = world
    values = {"moderation": "approved", **fields}
    campaign = make_campaign(ws, author, mode="Spread", status="Pending", sender=sender,
                             spread_first_day=first, spread_last_day=last, start_at=None, **values)
    add_recipients(campaign, numbers(n))
    campaign.queued_count = n
    db.session.commit()
    spread.plan(campaign)
    return fresh(campaign.id)


def days_sent(campaign_id):
    return dict(db.session.execute(select(Recipient.spread_day, func.count()).where(
        Recipient.campaign_id == campaign_id, Recipient.state.in_(("sent", "delivered"))).group_by(
        Recipient.spread_day)).all())


def test_spread_end_to_end_with_a_controlled_clock(core, sim, world):
    d1 = date(2030, 3, 4)
    d2, d3, d4 = d1 + timedelta(days=1), d1 + timedelta(days=2), d1 + timedelta(days=3)
    campaign = spread_campaign(world, d1, d3, n=30)
    cid = campaign.id

    # Each recipient on exactly one day of the window, evenly.
    plan = dict(db.session.execute(select(Recipient.spread_day, func.count()).where(
        Recipient.campaign_id == cid).group_by(Recipient.spread_day)).all())
    assert {(d if isinstance(d, date) else date.fromisoformat(d)): n for d, n in plan.items()} == \
        {d1: 10, d2: 10, d3: 10}

    # The day before: not started; the tick starts it on its first day.
    assert dispatch.start_due_campaigns(now=berlin(d1 - timedelta(days=1), 12)) == []
    assert dispatch.start_due_campaigns(now=berlin(d1, 0, 5)) == [cid]
    assert fresh(cid).status == "Sending"

    # Before the sending window opens: nothing; inside it: exactly the day's share, no more.
    dispatch.dispatch_campaign(cid, now=berlin(d1, 7, 59))
    assert accepted(sim, core) == 0
    dispatch.dispatch_campaign(cid, now=berlin(d1, 12))
    dispatch.dispatch_campaign(cid, now=berlin(d1, 13))  # a second turn the same day finds nothing more
    assert accepted(sim, core) == 10
    assert set(days_sent(cid)) <= {d1, str(d1)} and sum(days_sent(cid).values()) == 10
    dispatch.dispatch_campaign(cid, now=berlin(d1, 20, 1))  # after the window closes
    assert accepted(sim, core) == 10

    # Day 2 passes without a send (e.g. the Core was down all day): its share expires on day 3.
    assert dispatch.expire_overdue(now=berlin(d3, 0, 1)) == []
    campaign = fresh(cid)
    assert campaign.expired_count == 10 and campaign.queued_count == 10 and campaign.status == "Sending"
    dispatch.dispatch_campaign(cid, now=berlin(d3, 9))
    assert accepted(sim, core) == 20
    assert fresh(cid).queued_count == 0

    # The window's end: Expired, the expired recipients counted and never sent.
    assert dispatch.expire_overdue(now=berlin(d4, 0, 1)) == [cid]
    campaign = fresh(cid)
    assert campaign.status == "Expired" and campaign.expired_count == 10 and campaign.sent_count == 20
    states = dict(db.session.execute(select(Recipient.state, func.count()).where(
        Recipient.campaign_id == cid).group_by(Recipient.state)).all())
    assert states.get("expired") == 10 and states.get("queued") is None
    assert dispatch.expire_overdue(now=berlin(d4, 0, 2)) == []  # idempotent


def test_a_spread_whose_last_day_ends_with_recipients_left_expires_them(core, sim, world):
    d1 = date(2030, 3, 4)
    campaign = spread_campaign(world, d1, d1, n=8, daily_limit=5)
    assert dispatch.start_due_campaigns(now=berlin(d1, 9)) == [campaign.id]
    dispatch.dispatch_campaign(campaign.id, now=berlin(d1, 9))
    assert accepted(sim, core) == 5
    assert dispatch.expire_overdue(now=berlin(d1 + timedelta(days=1), 0, 1)) == [campaign.id]
    campaign = fresh(campaign.id)
    assert campaign.status == "Expired" and campaign.expired_count == 3 and campaign.queued_count == 0


def test_a_spread_that_sent_everything_is_done_not_expired(core, sim, world):
    d1 = date(2030, 3, 4)
    campaign = spread_campaign(world, d1, d1 + timedelta(days=1), n=4)
    dispatch.start_due_campaigns(now=berlin(d1, 9))
    dispatch.dispatch_campaign(campaign.id, now=berlin(d1, 9))
    dispatch.dispatch_campaign(campaign.id, now=berlin(d1 + timedelta(days=1), 9))
    assert accepted(sim, core) == 4
    campaign = fresh(campaign.id)
    assert campaign.expired_count == 0 and campaign.queued_count == 0
    assert dispatch.expire_overdue(now=berlin(d1 + timedelta(days=2), 1)) == []


@pytest.mark.parametrize("moderation,auto_start", [("approved", False), ("awaiting", True)])
def test_a_pending_spread_past_its_window_expires(world, moderation, auto_start):
    d1 = date(2030, 3, 4)
    campaign = spread_campaign(world, d1, d1 + timedelta(days=1), n=3, moderation=moderation,
                               auto_start=auto_start)
    assert dispatch.expire_overdue(now=berlin(d1 + timedelta(days=1), 23, 59)) == []
    assert dispatch.start_due_campaigns(now=berlin(d1 + timedelta(days=2), 0, 1)) == []
    assert dispatch.expire_overdue(now=berlin(d1 + timedelta(days=2), 0, 1)) == [campaign.id]
    assert fresh(campaign.id).status == "Expired"
