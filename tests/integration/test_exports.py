"""Exports of delivery records: queued job with a real RQ worker, masking, formula escaping,
download scoped to the workspace and the permission table, audit, expiry (410), and the API."""
import csv
import io
import os
from datetime import timedelta

import pytest
from rq import SimpleWorker
from rq.job import Job

from extensions import db, redis_connection
from jobs import enqueue_job, get_queue
from jobs.exports import expire_exports
from models import Recipient, utcnow
from models.exports import Export
from services import exports as service
from services import file_store, tokens
from tests.campaign_factories import make_campaign, make_sender
from tests.factories import make_user, make_workspace

HOSTILE = {"4917000000001": "=HYPERLINK(\"x\")", "4917000000002": "+1", "4917000000003": "-2",
           "4917000000004": "@SUM(A1)", "4917000000005": "\tTAB", "4917000000006": "\rCR"}


@pytest.fixture(autouse=True)
def _empty_queue():
    get_queue("exports").empty()
    yield
    get_queue("exports").empty()


def run_jobs():
    SimpleWorker([get_queue("exports")], connection=redis_connection()).work(burst=True)


@pytest.fixture
def world():
    ws = make_workspace("acme", "Acme Ltd")
    author = make_user("author@acme.test", workspace=ws, role="author")
    viewer = make_user("viewer@acme.test", workspace=ws, role="admin", can_view_numbers=True)
    other = make_user("other@acme.test", workspace=ws, role="author")
    sender = make_sender(ws, created_by=author)
    campaign = make_campaign(ws, author, status="Done", moderation="approved", sender=sender, name="Spring sale")
    now = utcnow()
    for i, (number, code) in enumerate(sorted(HOSTILE.items())):
        db.session.add(Recipient(campaign_id=campaign.id, number=number, ctn_hash=f"h{i}",
                                 state="delivered" if i % 2 else "failed", smpp_status=code,
                                 submitted_at=now - timedelta(minutes=5), delivered_at=now))
    db.session.add(Recipient(campaign_id=campaign.id, number="4917000000007", ctn_hash="h7", state="queued"))
    campaign.recipients_count = 7
    db.session.commit()
    return {"ws": ws, "author": author, "viewer": viewer, "other": other, "campaign": campaign}


def _export_via_page(client, world, fmt="csv"):
    response = client.post(f"/w/acme/campaigns/{world['campaign'].id}/exports", data={"format": fmt})
    assert response.status_code == 302
    export = db.session.scalars(db.select(Export).order_by(Export.id.desc())).first()
    assert export.state == "queued" and export.job_id
    run_jobs()
    db.session.refresh(export)
    return export


def _rows(text, fmt="csv"):
    if fmt == "csv":
        return list(csv.reader(io.StringIO(text)))
    return [line.split("\t") for line in text.splitlines()]


def test_escape_cell_prefixes_formula_starts():
    for value in ("=1+1", "+1", "-1", "@x", "\tx", "\rx"):
        assert service.escape_cell(value) == "'" + value
    for value in ("", "491701", "delivered", "0x0000000B", "'already"):
        assert service.escape_cell(value) == value
    assert service.escape_txt_cell("\tTAB\r\n") == "' TAB  "


def test_author_exports_masked_csv_and_downloads_it(client, world, audit_events):
    client.login("author@acme.test")
    export = _export_via_page(client, world)
    assert export.state == "done" and export.rows == 7 and not export.unmasked
    if export.path.startswith(file_store.DB_PREFIX):   # FILE_STORE=database (the default on PostgreSQL)
        assert file_store.exists(export.path)
    else:
        assert export.path.startswith(os.path.join(client.application.config["MC_DATA_DIR"], "exports"))
    assert "Spring" not in export.path  # generated name

    page = client.get(f"/w/acme/exports/{export.id}").get_data(as_text=True)
    assert "Download CSV" in page

    response = client.get(f"/w/acme/exports/{export.id}/download")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "Spring-sale-export" in response.headers["Content-Disposition"]
    rows = _rows(response.get_data(as_text=True))
    response.close()
    assert rows[0] == ["number", "status", "smpp_code", "submitted_at", "delivered_at"]
    assert len(rows) == 8
    numbers = [r[0] for r in rows[1:]]
    assert all(n.startswith("•") and "4917" not in n for n in numbers)
    assert numbers[0].endswith("001")
    codes = {r[2] for r in rows[1:]}
    assert {"'=HYPERLINK(\"x\")", "'+1", "'-2", "'@SUM(A1)", "'\tTAB", "'\rCR", ""} == codes
    assert rows[1][3].endswith("Z") and "T" in rows[1][3]
    assert rows[-1][1] == "queued" and rows[-1][3] == ""

    requested, = audit_events(action="export.requested")
    assert requested["after"]["unmasked"] is False and requested["after"]["format"] == "csv"
    completed, = audit_events(action="export.completed")
    assert completed["after"]["rows"] == 7 and completed["actor_email"] == "author@acme.test"
    downloaded, = audit_events(action="export.downloaded")
    assert downloaded["after"] == {"campaign_id": world["campaign"].id, "format": "csv", "rows": 7,
                                   "unmasked": False}
    assert downloaded["actor_email"] == "author@acme.test"


def test_number_viewer_gets_full_numbers_in_txt(client, world, audit_events):
    client.login("viewer@acme.test")
    export = _export_via_page(client, world, "txt")
    assert export.unmasked and export.rows == 7
    response = client.get(f"/w/acme/exports/{export.id}/download")
    assert response.mimetype == "text/plain"
    rows = _rows(response.get_data(as_text=True), "txt")
    response.close()
    assert rows[1][0] == "4917000000001"
    assert rows[1][2] == "'=HYPERLINK(\"x\")"
    assert len(rows) == 8 and all(len(r) == 5 for r in rows)
    assert {"' TAB", "' CR"} <= {r[2] for r in rows}
    assert audit_events(action="export.downloaded")[0]["after"]["unmasked"] is True


def test_progress_is_reported_and_chunks_cover_every_row(client, world, monkeypatch):
    monkeypatch.setattr(service, "CHUNK_ROWS", 3)
    monkeypatch.setattr(service, "YIELD_PER", 2)
    client.login("viewer@acme.test")
    export = _export_via_page(client, world)
    assert export.rows == 7
    job = Job.fetch(export.job_id, connection=redis_connection())
    assert job.get_meta()["progress"]["rows"] == 7
    with file_store.open_file(export.path) as fh:
        numbers = [r[0] for r in _rows(fh.read().decode("utf-8"))[1:]]
    assert numbers == sorted(numbers) and len(set(numbers)) == 7


def test_download_is_scoped_to_workspace_and_permission_table(client, app, world):
    client.login("viewer@acme.test")
    export = _export_via_page(client, world)  # unmasked, of the author's campaign

    other_ws = make_workspace("bravo", "Bravo Ltd")
    make_user("admin@bravo.test", workspace=other_ws, role="admin", can_view_numbers=True)
    foreign = app.test_client()
    foreign.login("admin@bravo.test")
    assert foreign.get(f"/w/acme/exports/{export.id}/download").status_code == 404
    assert foreign.get(f"/w/bravo/exports/{export.id}/download").status_code == 404
    assert foreign.get(f"/w/bravo/exports/{export.id}").status_code == 404

    # Another author cannot see the campaign, so the export does not exist for them.
    other = app.test_client()
    other.login("other@acme.test")
    assert other.get(f"/w/acme/exports/{export.id}/download").status_code == 404

    # The campaign's author sees the campaign but may not see full numbers.
    author = app.test_client()
    author.login("author@acme.test")
    refused = author.get(f"/w/acme/exports/{export.id}/download")
    assert refused.status_code == 403
    assert "full numbers" in refused.get_data(as_text=True)

    # Exports of another workspace's campaign cannot be started either.
    assert foreign.post(f"/w/bravo/campaigns/{world['campaign'].id}/exports",
                        data={"format": "csv"}).status_code == 404


def test_expired_export_says_so_and_the_file_is_removed(client, world, audit_events):
    client.login("author@acme.test")
    export = _export_via_page(client, world)
    path = export.path
    assert file_store.exists(path)
    export.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()

    enqueue_job(expire_exports, queue="exports")
    run_jobs()
    db.session.refresh(export)
    assert export.state == "expired" and export.path is None
    assert not file_store.exists(path)
    assert audit_events(action="export.expired")

    response = client.get(f"/w/acme/exports/{export.id}/download")
    assert response.status_code == 410
    body = response.get_data(as_text=True)
    assert "This export has expired" in body and "Start a new export" in body
    assert "expired" in client.get(f"/w/acme/exports/{export.id}").get_data(as_text=True)
    assert service.expire() == 0  # idempotent


def test_export_past_expiry_but_not_yet_swept_is_refused(client, world):
    client.login("author@acme.test")
    export = _export_via_page(client, world)
    export.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert client.get(f"/w/acme/exports/{export.id}/download").status_code == 410


def test_expiry_setting(app, world):
    previous = app.config["EXPORT_TTL_HOURS"]
    app.config["EXPORT_TTL_HOURS"] = 2
    try:
        export = service.request_export(world["ws"], world["campaign"].id, "csv",
                                        world["author"].membership_in(world["ws"].id), world["author"])
        assert timedelta(hours=1, minutes=59) < export.expires_at - export.created_at <= timedelta(hours=2)
    finally:
        app.config["EXPORT_TTL_HOURS"] = previous


def test_bad_format_is_refused(client, world):
    client.login("author@acme.test")
    response = client.post(f"/w/acme/campaigns/{world['campaign'].id}/exports", data={"format": "xlsx"},
                           follow_redirects=True)
    assert "Choose the export format" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(db.func.count(Export.id))) == 0


def test_api_export_flow(client, world):
    _, token = tokens.create_token(world["author"], world["ws"], "CI")
    auth = {"Authorization": f"Bearer {token}"}
    campaign_id = world["campaign"].id

    bad = client.post(f"/api/v1/campaigns/{campaign_id}/exports", json={"format": "pdf"}, headers=auth)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_format"

    created = client.post(f"/api/v1/campaigns/{campaign_id}/exports", json={"format": "txt"}, headers=auth)
    assert created.status_code == 202
    doc = created.get_json()
    assert doc["state"] == "queued" and doc["download_url"] is None and doc["unmasked"] is False

    run_jobs()
    status = client.get(f"/api/v1/exports/{doc['id']}", headers=auth).get_json()
    assert status["state"] == "done" and status["rows"] == 7
    assert status["download_url"] == f"/api/v1/exports/{doc['id']}/download"

    file = client.get(status["download_url"], headers=auth)
    assert file.status_code == 200
    lines = file.get_data(as_text=True).splitlines()
    file.close()
    assert lines[0] == "number\tstatus\tsmpp_code\tsubmitted_at\tdelivered_at" and len(lines) == 8

    export = db.session.get(Export, doc["id"])
    export.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    service.expire()
    gone = client.get(status["download_url"], headers=auth)
    assert gone.status_code == 410 and gone.get_json()["error"]["code"] == "export_expired"
    assert client.get(f"/api/v1/exports/{doc['id']}", headers=auth).get_json()["state"] == "expired"


def test_api_cannot_reach_another_workspaces_export(client, world):
    client_export = service.request_export(world["ws"], world["campaign"].id, "csv",
                                           world["author"].membership_in(world["ws"].id), world["author"])
    other_ws = make_workspace("bravo", "Bravo Ltd")
    admin_b = make_user("admin@bravo.test", workspace=other_ws, role="admin")
    _, token = tokens.create_token(admin_b, other_ws, "B")
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/v1/exports/{client_export.id}", headers=auth).status_code == 404
    assert client.get(f"/api/v1/exports/{client_export.id}/download", headers=auth).status_code == 404
    assert client.post(f"/api/v1/campaigns/{world['campaign'].id}/exports", json={"format": "csv"},
                       headers=auth).status_code == 404


def test_campaign_partial_lists_exports(client, app, world):
    from flask import g, render_template_string

    client.login("author@acme.test")
    export = _export_via_page(client, world)
    with app.test_request_context("/w/acme/"):
        from flask_login import login_user

        login_user(world["author"])
        g.workspace, g.membership = world["ws"], world["author"].membership_in(world["ws"].id)
        html = render_template_string('{% include "campaigns/_exports.html" %}', campaign=world["campaign"])
    assert 'id="exports"' in html and f"/w/acme/exports/{export.id}/download" in html
    assert 'name="format"' in html and "24 hours" in html


def test_fast_masker_matches_the_masking_function():
    from services.numbers import mask_number

    mask = service.fast_masker()
    for number in ("", "1", "12", "123", "1234567", "491701234567", "123456789012345", "1234567890123456789"):
        assert mask(number) == mask_number(number)
