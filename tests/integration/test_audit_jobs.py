"""Audit through the app: events carry the request context, and the periodic flush job runs on a
real RQ worker against real Redis, moving fallback events back without duplicates."""
import socket

from rq import SimpleWorker

import audit
from audit.store import AuditStore
from extensions import redis_connection
from jobs import enqueue_job, get_queue
from jobs.maintenance import flush_audit_fallback, purge_audit
from tests.factories import make_user, make_workspace


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_event_carries_actor_ip_request_id_and_milliseconds(client, audit_events):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    # The browser keeps one user agent (a changed one ends the session: strong session protection).
    client.environ_base["HTTP_USER_AGENT"] = "pytest-browser"
    client.login("boss@example.com")
    client.post("/w/acme/invitations", data={"email": "new@example.com", "role": "author"},
                headers={"X-Request-ID": "req-123"})
    event = audit_events(action="invitations.created")[0]
    assert event["actor_email"] == "boss@example.com"
    assert event["actor_role"] == "admin"
    assert event["workspace_id"] == ws.id
    assert event["request_id"] == "req-123"
    assert event["user_agent"] == "pytest-browser"
    assert event["ip"] == "127.0.0.1"
    assert event["ts"].microsecond % 1000 == 0
    assert event["after"] == {"email": "new@example.com", "role": "author"}


def test_store_down_then_flush_job_on_real_worker(app, audit_events):
    good_store = app.extensions["mc_audit"]
    down = AuditStore(mongo_uri=f"mongodb://127.0.0.1:{_closed_port()}/mc?serverSelectionTimeoutMS=300",
                      embedded_dir=app.config["AUDIT_EMBEDDED_DIR"], fallback_path=app.config["AUDIT_FALLBACK_PATH"])
    app.extensions["mc_audit"] = down
    try:
        for n in range(3):
            audit.record("test.while_down", object_type="thing", object_id=n)
        assert down.fallback_size() > 0
    finally:
        app.extensions["mc_audit"] = good_store
        down.close()

    redis_connection().delete("rq:queue:default")
    enqueue_job(flush_audit_fallback, queue="default")
    enqueue_job(flush_audit_fallback, queue="default")  # a second run must not duplicate
    SimpleWorker([get_queue("default")], connection=redis_connection()).work(burst=True)
    assert len(audit_events(action="test.while_down")) == 3
    assert good_store.fallback_size() == 0


def test_purge_job_runs(app, audit_events):
    audit.record("test.recent")
    assert purge_audit() == 0
    assert audit_events(action="test.recent")


def test_audit_page_shows_where_each_event_came_from(client, app):
    ws = make_workspace("acme")
    make_user("boss@example.com", workspace=ws, role="admin")
    # Outside any request, as a CLI command or a job records it.
    audit.record("workspace.settings_changed", workspace_id=ws.id, object_type="workspace", object_id=ws.id)
    client.login("boss@example.com")
    client.post("/w/acme/invitations", data={"email": "new@example.com", "role": "author"},
                headers={"X-Request-ID": "req-from-browser"})
    html = client.get("/w/acme/audit").get_data(as_text=True)
    assert '<code class="action">invitations.created</code>' in html
    assert "req req-from-bro<" in html                      # a web request: its id (first 12 characters)
    rows = html.split("<tr")
    system_row = next(r for r in rows if "workspace.settings_changed" in r)
    assert "req " not in system_row and "—" in system_row  # no request: a dash, not a bare "req"
