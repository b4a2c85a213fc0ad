"""Times for people (issue 17): the workspace's zone with its name, valid <time datetime>, words."""
from datetime import UTC, datetime, timedelta

from config import load_config
from services import timefmt

T = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)


def test_html_datetime_is_valid_html_without_microseconds():
    assert timefmt.html_datetime(T) == "2026-11-28T10:00:00Z"
    assert timefmt.html_datetime(T.replace(tzinfo=None)) == "2026-11-28T10:00:00Z"  # naive = UTC
    assert timefmt.html_datetime("2026-11-28T10:00:00.5+00:00") == "2026-11-28T10:00:00Z"


def test_clock_names_the_zone():
    assert timefmt.clock(T, "Europe/Berlin") == "2026-11-28 11:00 Europe/Berlin"
    assert timefmt.clock(T, "UTC") == "2026-11-28 10:00 UTC"
    assert timefmt.clock(T, None) == "2026-11-28 10:00 UTC"
    assert timefmt.clock(T, "Not/AZone") == "2026-11-28 10:00 UTC"  # a bad zone never breaks a page
    assert timefmt.clock(T, "Europe/Berlin", millis=True) == "2026-11-28 11:00:00.123 Europe/Berlin"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert timefmt.clock(summer, "Europe/Berlin") == "2026-07-01 14:00 Europe/Berlin"  # DST


def test_relative_and_duration_in_words():
    assert timefmt.relative(T + timedelta(hours=3), T) == "in 3 h"
    assert timefmt.relative(T + timedelta(minutes=25), T) == "in 25 min"
    assert timefmt.relative(T - timedelta(minutes=5), T) == "5 min ago"
    assert timefmt.relative(T + timedelta(days=4), T) == "in 4 days"
    assert timefmt.duration(3 * 3600 + 20 * 60) == "about 3 h 20 min"
    assert timefmt.duration(30) == "under a minute"
    assert timefmt.duration(2 * 86400 + 4 * 3600) == "about 2 days 4 h"
    assert timefmt.duration(-5) == "under a minute"


def test_day_clock_says_today_and_tomorrow_in_the_zone():
    now = datetime(2026, 11, 28, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    assert timefmt.day_clock(datetime(2026, 11, 28, 22, 45, tzinfo=UTC), "Europe/Berlin", now) == \
        "today 23:45 Europe/Berlin"
    assert timefmt.day_clock(datetime(2026, 11, 29, 9, 40, tzinfo=UTC), "Europe/Berlin", now) == \
        "tomorrow 10:40 Europe/Berlin"
    assert timefmt.day_clock(datetime(2026, 12, 3, 9, 40, tzinfo=UTC), "Europe/Berlin", now) == \
        "2026-12-03 10:40 Europe/Berlin"


def test_core_url_follows_core_port_when_unset():
    """Issue 17: `CORE_PORT=8477 ./run.sh` starts coresim on 8477; web and worker must call it there."""
    assert load_config({"SECRET_KEY": "x"}, env={})["CORE_URL"] == "https://127.0.0.1:8443"
    assert load_config({"SECRET_KEY": "x"}, env={"CORE_PORT": "8477"})["CORE_URL"] == "https://127.0.0.1:8477"
    cfg = load_config({"SECRET_KEY": "x"}, env={"CORE_PORT": "8477", "CORE_URL": "https://core.example:9443"})
    assert cfg["CORE_URL"] == "https://core.example:9443"  # an explicit URL wins
