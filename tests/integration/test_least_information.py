"""Least information: the overview's recent activity only for `audit.view`; a workspace admin's
Diagnostics without hosts, PIDs, paths or exception texts; `/readyz` in status words only; the
Monitoring tab scoped to the workspace's own series."""
import logging
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rq import Worker

import audit
from extensions import redis_connection
from jobs import get_queue
from services import diagnostics, metrics
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace
from tests.integration.test_access_matrix import browser, fresh_app  # noqa: F401  (fixtures used by name)


def _closed_port():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def world():
    ws = make_workspace("acme", "Acme Ltd")
    admin = make_user("admin@acme.test", workspace=ws, role="admin")
    make_user("author@acme.test", workspace=ws, role="author")
    make_user("mod@acme.test", workspace=ws, role="author", is_moderator=True)
    make_user("moderator@acme.test", workspace=ws, role="moderator")
    make_user("root@example.com", superadmin=True)
    audit.record("members.role_changed", workspace_id=ws.id, actor_email="someone-private@acme.test",
                 object_type="membership", object_id=1)
    return {"ws": ws, "admin": admin}


@pytest.mark.parametrize("email", ["author@acme.test", "mod@acme.test", "moderator@acme.test"])
def test_the_overview_shows_no_activity_to_members_who_may_not_read_the_audit_log(app, world, email):
    client = app.test_client()
    client.login(email)
    html = client.get("/w/acme/").get_data(as_text=True)
    assert "Live Pulse" in html  # the page itself is there
    assert "Recent activity" not in html
    assert "someone-private@acme.test" not in html and "members.role_changed" not in html


def test_admins_and_super_admins_still_see_the_recent_activity(app, world):
    for email in ("admin@acme.test", "root@example.com"):
        client = app.test_client()
        client.login(email)
        html = client.get("/w/acme/").get_data(as_text=True)
        assert "Recent activity" in html and "someone-private@acme.test" in html, email


@pytest.fixture
def noisy_installation(app, world, monkeypatch):
    """Everything that would leak: a live worker (host, pid), the Core down on a port (exception text
    with host:port), the data directory and certificate paths, a large campaign's pre-flight."""
    port = _closed_port()
    monkeypatch.setitem(app.config, "CORE_URL", f"https://127.0.0.1:{port}")
    monkeypatch.setitem(app.config, "PREFLIGHT_MIN_RECIPIENTS", 10)
    redis_connection().delete(diagnostics.CORE_CACHE_KEY)
    worker = Worker([get_queue(q) for q in ("uploads", "dispatch", "exports", "default")],
                    connection=redis_connection(), name="leaky-worker-name")
    worker.register_birth()
    worker.heartbeat()
    sender = make_sender(world["ws"], created_by=world["admin"])
    make_campaign(world["ws"], world["admin"], status="Pending", moderation="approved", sender=sender,
                  name="Big one", recipients_count=250_000)
    secrets = [f":{port}", "leaky-worker-name", socket.gethostname(), app.config["MC_DATA_DIR"],
               app.config["CORE_CLIENT_CERT"], f"{worker.pid}", "Worker heartbeats", "Queues and workers"]
    yield secrets
    worker.register_death()
    redis_connection().delete(diagnostics.CORE_CACHE_KEY)


def test_a_workspace_admin_sees_core_status_and_own_preflight_but_no_host_pid_or_path(app, noisy_installation):
    client = app.test_client()
    client.login("admin@acme.test")
    response = client.get("/w/acme/diagnostics")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Core API" in html and "down" in html  # the Core's status in words
    assert "Big one" in html and "Core API reachable" in html and "Core unreachable" in html  # own pre-flight
    for secret in noisy_installation:
        assert secret not in html, secret

    data = client.get("/w/acme/diagnostics", headers={"Accept": "application/json"}).get_json()
    # The Trigger lane's state is a yes/no with a sentence (no host, pid or queue detail).
    assert set(data) == {"core", "preflight", "trigger_lane"} and "error" not in data["core"]
    assert not any(secret in str(data) for secret in noisy_installation), data

    # A super admin on the installation page sees everything.
    root = app.test_client()
    root.login("root@example.com")
    full = root.get("/admin/diagnostics").get_data(as_text=True)
    for secret in ("leaky-worker-name", socket.gethostname(), app.config["MC_DATA_DIR"],
                   app.config["CORE_CLIENT_CERT"], "Worker heartbeats"):
        assert secret in full, secret
    assert diagnostics.core_status()["error"]  # the exception text exists; only the workspace page hides it


def test_an_authors_preflight_in_the_wizard_names_no_host_or_path(app, world, noisy_installation):
    ws = world["ws"]
    author = make_user("big@acme.test", workspace=ws, role="author")
    draft = make_campaign(ws, author, sender=make_sender(ws, created_by=author), recipients=12)
    client = app.test_client()
    client.login("big@acme.test")
    page = client.get(f"/w/acme/campaigns/{draft.id}/wizard/5").get_data(as_text=True)
    assert "Pre-flight checklist" in page and "Core unreachable" in page
    for secret in noisy_installation:
        assert secret not in page, secret


def test_readyz_with_the_database_down_answers_words_only_and_logs_the_detail(
        fresh_app, browser, caplog):  # noqa: F811
    port = _closed_port()
    application = fresh_app(SQLALCHEMY_DATABASE_URI=f"postgresql+psycopg://mc:pw@127.0.0.1:{port}/nothing")
    with caplog.at_level(logging.WARNING, logger="mc.health"):
        response = browser(target=application).get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable",
                                   "checks": {"database": "down", "redis": "ok", "audit": "ok"}}
    body = response.get_data(as_text=True)
    assert str(port) not in body and "127.0.0.1" not in body and "Error" not in body
    assert any("database down" in r.getMessage() and str(port) in r.getMessage() for r in caplog.records)


def test_the_workspace_series_carry_the_workspace_label(app, world):
    other = make_workspace("other")
    make_campaign(world["ws"], world["admin"], status="Sending", moderation="approved", sent_count=7, recipients_count=10)
    make_campaign(other, make_user("o@other.test", workspace=other, role="admin"), status="Done",
                  sent_count=3, recipients_count=3)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(app).decode())}
    sent = {s.labels["workspace"]: s.value for s in families["mc_workspace_messages"].samples
            if s.name == "mc_workspace_messages_total" and s.labels["status"] == "sent"}
    assert sent == {"acme": 7, "other": 3}
    assert {(s.labels["workspace"], s.labels["status"]) for s in families["mc_workspace_campaigns"].samples} == \
        {("acme", "Sending"), ("other", "Done")}
