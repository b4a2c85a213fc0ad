"""Diagnostics pages and the pre-flight checklist, against the reference Core over real mTLS:
Core up/down, schema mismatch, Alembic head, audit store, queues and workers, certificate expiry."""
import re
from datetime import UTC, date, timedelta

import pytest
from rq import Worker

from extensions import db, redis_connection
from jobs import get_queue
from services import diagnostics
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace


@pytest.fixture(autouse=True)
def _no_cached_probe():
    redis_connection().delete(diagnostics.CORE_CACHE_KEY)
    yield
    redis_connection().delete(diagnostics.CORE_CACHE_KEY)


@pytest.fixture
def live_worker():
    """A registered worker on every queue (heartbeat now), as `rq worker` would be."""
    worker = Worker([get_queue(q) for q in ("uploads", "dispatch", "exports", "default")],
                    connection=redis_connection())
    worker.register_birth()
    worker.heartbeat()
    yield worker
    worker.register_death()


@pytest.fixture
def world():
    ws = make_workspace("acme", "Acme Ltd", sending_window="08:00-20:00")
    admin = make_user("admin@acme.test", workspace=ws, role="admin")
    make_user("author@acme.test", workspace=ws, role="author")
    sender = make_sender(ws, created_by=admin)
    big = make_campaign(ws, admin, status="Pending", moderation="approved", sender=sender, name="Big one",
                        recipients_count=250_000)
    return {"ws": ws, "admin": admin, "sender": sender, "big": big}


def by_item(items):
    return {i["item"]: i for i in items}


def test_no_live_dispatch_worker_fails_the_preflight(world):
    workers = {"ok": False, "workers": [], "uncovered": ["dispatch"], "error": None}
    items = by_item(diagnostics.preflight(world["big"], workers=workers))
    assert items["Workers alive"]["status"] == "fail"
    assert "no live worker" in items["Workers alive"]["reason"]


def test_preflight_passes_with_core_workers_and_audit_healthy(sim, world, live_worker):
    items = by_item(diagnostics.preflight(world["big"]))
    assert set(items) == {"Core API reachable", "Schema versions match", "Workers alive", "Disk free ≥ 2× the file",
                          "Audit store healthy", "Sender revision approved",
                          "Daily limit and quiet hours can finish the campaign in its window"}
    assert all(i["status"] == "pass" for i in items.values()), items
    assert all(set(i) == {"item", "status", "reason"} and i["reason"] for i in items.values())


def test_core_down_fails_the_preflight_and_shows_on_diagnostics(sim, core, client, world):
    sim.post(core.url + "/_sim/faults", json={"down": True}).raise_for_status()
    items = by_item(diagnostics.preflight(world["big"]))
    assert items["Core API reachable"]["status"] == "fail"
    assert items["Core API reachable"]["reason"].startswith("Core ")

    client.login("admin@acme.test")
    html = client.get("/w/acme/diagnostics").get_data(as_text=True)
    assert "Pre-flight checklists" in html and "Big one" in html
    assert "Core API reachable" in html and 'class="check-fail"' in html


def test_schema_mismatch_is_a_clear_warning(sim, core, client, world):
    sim.post(core.url + "/_sim/faults", json={"schema_version": 99}).raise_for_status()
    status = diagnostics.core_status(max_age=0)
    assert status["ok"] and status["schema_match"] is False and status["schema_core"] == 99
    assert by_item(diagnostics.preflight(world["big"], core=status))["Schema versions match"]["status"] == "fail"
    client.login("admin@acme.test")
    html = client.get("/w/acme/diagnostics").get_data(as_text=True)
    assert "Schema mismatch" in html and "answers 99" in html


def test_diagnostics_page_shows_every_signal(sim, client, world, live_worker):
    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    response = client.get("/admin/diagnostics")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for text in ("Core API", "ours 1", "Migrations", "up to date", "Retention", "90 days", "Fallback file",
                 "Dropped events", "Queues and workers", "Worker heartbeats", live_worker.name, "alive",
                 "Periodic jobs", "Client certificate", "valid for"):
        assert text in html, text
    assert re.search(r"[\d.]+ (KiB|MiB|GiB|TiB) free of [\d.]+ (GiB|TiB)", html)  # sizes a person reads
    assert re.search(r"Checked <time datetime=\"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", html)
    schema = diagnostics.schema_status()
    assert schema["ok"] and schema["heads"] == schema["database"]


def test_diagnostics_access(client, app, world):
    make_user("root@example.com", superadmin=True)
    author = app.test_client()
    author.login("author@acme.test")
    assert author.get("/w/acme/diagnostics").status_code == 403
    assert author.get("/w/acme/monitoring").status_code == 403
    assert author.get("/admin/diagnostics").status_code == 404
    root = app.test_client()
    root.login("root@example.com")
    html = root.get("/admin/diagnostics").get_data(as_text=True)
    assert "whole installation" in html and "Acme Ltd" in html  # large campaigns of every workspace


def test_finish_check_catches_limits_and_windows(world):
    big = world["big"]
    big.daily_limit = 10_000
    db.session.commit()
    item = diagnostics._finish_check(big, tps=None)
    assert item["status"] == "warn" and "25 days" in item["reason"]

    big.mode, big.spread_first_day, big.spread_last_day = "Spread", date(2030, 1, 1), date(2030, 1, 5)
    db.session.commit()
    item = diagnostics._finish_check(big, tps=None, today=date(2030, 1, 1))
    assert item["status"] == "fail" and "50,000/day" in item["reason"]
    big.daily_limit = None
    assert diagnostics._finish_check(big, tps=None, today=date(2030, 1, 1))["status"] == "pass"
    assert diagnostics._finish_check(big, tps=0.5, today=date(2030, 1, 1))["status"] == "fail"  # 12 h × 0.5/s
    assert diagnostics._finish_check(big, tps=None, today=date(2030, 1, 9))["status"] == "fail"  # window over


def test_unapproved_sender_and_certificate_problems(app, world, monkeypatch, tmp_path):
    world["sender"].state = "pending"
    db.session.commit()
    items = by_item(diagnostics.preflight(world["big"]))
    assert items["Sender revision approved"]["status"] == "fail"

    monkeypatch.setitem(app.config, "CORE_CLIENT_CERT", str(tmp_path / "missing.pem"))
    assert diagnostics.certificate_status()["status"] == "fail"


def test_certificate_expiry_warning(sim):
    from datetime import datetime

    status = diagnostics.certificate_status()
    assert status["status"] == "pass"
    soon = status["not_after"] - timedelta(days=10)
    assert diagnostics.certificate_status(now=soon)["status"] == "warn"
    assert diagnostics.certificate_status(now=status["not_after"] + timedelta(days=1))["status"] == "fail"
    assert status["not_after"].tzinfo is not None and status["not_after"] > datetime.now(UTC)


def test_preflight_required_threshold(app, world, monkeypatch):
    assert diagnostics.preflight_required(world["big"])
    monkeypatch.setitem(app.config, "PREFLIGHT_MIN_RECIPIENTS", 1_000_000)
    assert not diagnostics.preflight_required(world["big"])


def test_monitoring_tab(client, app, world, monkeypatch):
    client.login("admin@acme.test")
    html = client.get("/w/acme/monitoring").get_data(as_text=True)
    assert "Grafana is not configured" in html and "GRAFANA_URL" in html
    assert "frame-src 'self';" in client.get("/w/acme/monitoring").headers["Content-Security-Policy"]

    monkeypatch.setitem(app.config, "GRAFANA_URL", "https://grafana.example.com/g/")
    response = client.get("/w/acme/monitoring")
    html = response.get_data(as_text=True)
    # A workspace admin: the one-workspace dashboard, for this workspace, and nothing installation-wide.
    assert '<iframe class="grafana" src="https://grafana.example.com/g/d/mc-workspace/?' in html
    assert "var-workspace=acme" in html
    assert "mc-delivery" not in html and "mc-platform" not in html
    assert "mc-platform" not in client.get("/w/acme/monitoring?dashboard=mc-platform").get_data(as_text=True)
    assert 'title="Grafana dashboard:' in html
    csp = response.headers["Content-Security-Policy"]
    assert "frame-src 'self' https://grafana.example.com;" in csp
    # Other pages keep the strict policy.
    assert "grafana" not in client.get("/w/acme/").headers["Content-Security-Policy"]
    assert client.get("/admin/monitoring").status_code == 404  # installation-wide: super admins only
    make_user("root@example.com", superadmin=True)
    root = app.test_client()
    root.login("root@example.com")
    html = root.get("/admin/monitoring").get_data(as_text=True)
    assert '<iframe class="grafana" src="https://grafana.example.com/g/d/mc-delivery/?' in html
    assert "var-workspace" not in html
    platform = root.get("/admin/monitoring?dashboard=mc-platform").get_data(as_text=True)
    assert "/d/mc-platform/" in platform

    monkeypatch.setitem(app.config, "GRAFANA_URL", "javascript:alert(1)")
    assert "is not an http(s) address" in client.get("/w/acme/monitoring").get_data(as_text=True)


def test_sidebar_lists_monitoring_and_diagnostics_for_admins_only(client, app, world):
    client.login("admin@acme.test")
    html = client.get("/w/acme/").get_data(as_text=True)
    assert 'href="/w/acme/monitoring"' in html and 'href="/w/acme/diagnostics"' in html
    author = app.test_client()
    author.login("author@acme.test")
    html = author.get("/w/acme/").get_data(as_text=True)
    assert "/w/acme/monitoring" not in html and "/w/acme/diagnostics" not in html


def test_a_running_cron_scheduler_and_its_jobs_are_reported(app):
    from rq.cron import CronScheduler

    connection = redis_connection()
    scheduler = CronScheduler(connection=connection, name="diag-test-cron")
    scheduler.load_config_from_file("jobs/cron.py")
    scheduler.register_birth()
    scheduler.heartbeat()
    scheduler.enqueue_jobs()
    try:
        status = diagnostics.cron_status()
        assert status["error"] is None and status["ok"]
        assert any(s["name"] == "diag-test-cron" and s["last_heartbeat"] for s in status["schedulers"])
        assert {"jobs.dispatch.dispatch_tick", "jobs.dispatch.poll_delivery_reports"} <= {j["name"] for j in status["jobs"]}
        # Statuses in words ("queued"), not the enum's repr ("JobStatus.QUEUED").
        assert {j["status"] for j in status["jobs"] if j["status"]} <= {"queued", "started", "finished", "failed",
                                                                         "deferred", "scheduled", "stopped", "canceled"}
    finally:
        scheduler.register_death()
        get_queue("default").empty()


def _closed_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


def test_a_refused_connection_is_said_in_words_that_fit_the_card(sim, app, client, monkeypatch):
    """Issue 17: "unreachable at https://…: connection refused", the raw text folded away."""
    port = _closed_port()
    monkeypatch.setitem(app.config, "CORE_URL", f"https://127.0.0.1:{port}")
    status = diagnostics.core_status(max_age=0)
    assert not status["ok"] and status["summary"] == f"unreachable at https://127.0.0.1:{port}: connection refused"
    assert len(status["summary"]) < 60 + len(str(port))
    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    html = client.get("/admin/diagnostics").get_data(as_text=True)
    assert f'<p class="core-summary">unreachable at https://127.0.0.1:{port}: connection refused</p>' in html
    assert '<details class="raw-error"><summary>Technical detail</summary>' in html


def test_the_core_tps_comes_from_the_health_channels(sim):
    status = diagnostics.core_status(max_age=0)
    assert status["ok"] and status["tps"] and status["tps"] > 0
    assert diagnostics.channels_tps({"channels": [{"up": True, "tps_limit": 50}, {"up": False, "tps_limit": 70},
                                                  {"tps_limit": "x"}, None, {"up": True, "tps_limit": -3}]}) == 50
    assert diagnostics.channels_tps({}) is None and diagnostics.channels_tps(None) is None
