"""Recipient uploads end to end: browser raw body and form fallback, API PUT, the ingest job on a
real Redis with SimpleWorker, normalisation and job errors, stop-list, masking, Spread plan."""
import io
import os
import tracemalloc
from datetime import date

import pytest
from rq import Queue, SimpleWorker

from extensions import db, redis_connection
from models import Campaign
from models.campaigns import JobError
from models.recipients import Recipient, Upload
from services import campaigns as campaign_rules
from services import file_store, recipient_files, recipients, spread, stoplist, tokens
from services.numbers import ctn_hash, mask_number
from tests.factories import make_user, make_workspace

# --- helpers -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _clean_queue(app):
    queue = Queue("uploads", connection=redis_connection())
    queue.empty()
    for registry in (queue.started_job_registry, queue.failed_job_registry, queue.scheduled_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    yield
    for key in ("UPLOAD_BROWSER_MAX_BYTES", "UPLOAD_API_MAX_BYTES", "UPLOAD_CHUNK_LINES"):
        app.config.pop(key, None)


def run_jobs():
    queue = Queue("uploads", connection=redis_connection())
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    db.session.expire_all()


def campaign_for(workspace, author, mode="OnDemand", **kw):
    campaign = Campaign(workspace_id=workspace.id, author_id=author.id, name=kw.pop("name", "Spring sale"),
                        mode=mode, status=kw.pop("status", "New"), **kw)
    db.session.add(campaign)
    db.session.commit()
    return campaign


@pytest.fixture
def world(client):
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    campaign = campaign_for(ws, author)
    client.login("author@example.com")
    return ws, author, campaign


def raw_post(client, ws, campaign_id, body, name="list.csv", token=True, **kw):
    headers = {"X-Filename": name, "Accept": "application/json"}
    if token:
        headers["X-CSRFToken"] = client.csrf_token
    return client.post(f"/w/{ws.slug}/campaigns/{campaign_id}/recipients", data=body, headers=headers,
                       content_type=kw.pop("content_type", "application/octet-stream"), **kw)


def spool_files(app):
    """Spools in either file store: files under MC_DATA_DIR/spool and rows of the database store."""
    from models.files import StoredFile

    path = os.path.join(app.config["MC_DATA_DIR"], "spool")
    local = sorted(os.listdir(path)) if os.path.isdir(path) else []
    return local + sorted(db.session.execute(db.select(StoredFile.id)).scalars())


def numbers_of(campaign):
    return sorted(db.session.execute(db.select(Recipient.number).filter_by(campaign_id=campaign.id)).scalars())


# --- browser: raw body -----------------------------------------------------------------------

SAMPLE = ("\ufeffName;Phone;City\r\n"
          "Ann;+49 170 1234567;Berlin\r\n"
          "Bob;0049-170-1234567;Bonn\r\n"          # duplicate of Ann after normalisation
          "Cid;(030) 123.456.78;Köln\r\n"
          "Dan;12345;Ulm\r\n"                      # too short
          "\r\n"                                   # blank: ignored
          "Eve;=HYPERLINK(\"x\");Hof\r\n"          # formula-looking
          "Fay;491709999999;Kiel\r\n"              # stop-listed below
          "Gil,4915112345678,Rom\r\n"              # mixed delimiter
          "Hal;4915200000001;Linz\r\n"
          "=cmd|' /C calc'!A0")                    # formula line, last line without newline


def test_browser_raw_upload_ingests_with_counters_and_job_errors(client, app, world, audit_events):
    ws, author, campaign = world
    stoplist.add(ws, "+49 170 9999999", "replied STOP")
    before = set(spool_files(app))
    response = raw_post(client, ws, campaign.id, SAMPLE.encode("utf-8"))
    assert response.status_code == 202, response.get_data(as_text=True)
    body = response.get_json()
    assert body["state"] == "queued" and body["status_url"].endswith(f"/uploads/{body['id']}/status")
    upload = db.session.get(Upload, body["id"])
    assert upload.source == "browser" and upload.original_name == "list.csv"
    assert upload.bytes_total == len(SAMPLE.encode("utf-8")) and upload.job_id
    assert db.session.get(Campaign, campaign.id).status == "Building"
    assert os.path.basename(upload.spool_path) != "list.csv"  # generated name

    run_jobs()
    status = client.get(body["status_url"]).get_json()
    assert status["state"] == "done" and status["percent"] == 100
    assert (status["lines"], status["accepted"], status["duplicates"], status["rejected"], status["stop_listed"]) \
        == (11, 3, 1, 4, 1)
    assert numbers_of(campaign) == sorted(["03012345678", "491701234567", "4915200000001"])
    errors = {e["line"]: e for e in status["errors"]}
    assert sorted(errors) == [5, 7, 9, 11]
    assert errors[5]["reason"].startswith("too short") and errors[5]["text"] == "Dan;12345;Ulm"
    assert errors[7]["reason"] == "contains characters other than digits"
    assert "mixed delimiters" in errors[9]["reason"]
    assert errors[11]["text"].startswith("'=cmd")          # neutralised for spreadsheets
    camp = db.session.get(Campaign, campaign.id)
    assert camp.status == "New" and camp.recipients_count == 3 and camp.queued_count == 3
    assert set(spool_files(app)) == before  # spool removed when done
    assert any(e["action"] == "recipients.upload" for e in audit_events())


def test_header_column_is_chosen_by_name(client, world):
    ws, author, campaign = world
    body = "id,name,msisdn\n1,Ann,491701111111\n2,Bob,491702222222\n"
    assert raw_post(client, ws, campaign.id, body.encode()).status_code == 202
    run_jobs()
    assert numbers_of(campaign) == ["491701111111", "491702222222"]


def test_plain_list_without_header_tab_and_quotes(client, world):
    ws, author, campaign = world
    body = '"491701111111"\tAnn\n+491702222222\t"Bob, Jr."\n00491703333333\tCid\n'
    raw_post(client, ws, campaign.id, body.encode(), name="x.txt")
    run_jobs()
    assert numbers_of(campaign) == ["491701111111", "491702222222", "491703333333"]
    assert db.session.execute(db.select(Upload)).scalar_one().rejected == 0


def test_raw_upload_needs_the_csrf_header(client, world):
    ws, author, campaign = world
    response = raw_post(client, ws, campaign.id, b"491701111111\n", token=False)
    assert response.status_code == 400
    assert db.session.execute(db.select(Upload)).first() is None


def test_browser_limit_is_enforced_before_storing(client, app, world):
    ws, author, campaign = world
    app.config["UPLOAD_BROWSER_MAX_BYTES"] = 100
    before = spool_files(app)
    response = raw_post(client, ws, campaign.id, b"4917011111\n" * 20)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert "limit" in response.get_json()["error"]["message"]
    assert spool_files(app) == before
    assert db.session.execute(db.select(Upload)).first() is None
    assert db.session.get(Campaign, campaign.id).status == "New"


def test_browser_limit_while_streaming_without_content_length(client, app, world):
    ws, author, campaign = world
    app.config["UPLOAD_BROWSER_MAX_BYTES"] = 100
    before = spool_files(app)
    response = client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/recipients", csrf=False,
                           input_stream=io.BytesIO(b"4917011111\n" * 50),
                           headers={"X-CSRFToken": client.csrf_token, "Accept": "application/json",
                                    "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413
    assert spool_files(app) == before


def test_bad_files_get_clear_messages(client, world):
    ws, author, campaign = world
    wrong = raw_post(client, ws, campaign.id, b"491701111111\n", name="list.xlsx")
    assert wrong.status_code == 415 and ".csv or .txt" in wrong.get_json()["error"]["message"]
    empty = raw_post(client, ws, campaign.id, b"")
    assert empty.status_code == 400 and empty.get_json()["error"]["code"] == "empty_file"
    form_encoded = raw_post(client, ws, campaign.id, b"a=b", content_type="application/x-www-form-urlencoded")
    assert form_encoded.status_code == 415
    assert db.session.get(Campaign, campaign.id).status == "New"


def test_binary_file_fails_the_build_with_one_job_error(client, world):
    ws, author, campaign = world
    body = b"PK\x03\x04" + bytes(range(256)) * 20
    raw_post(client, ws, campaign.id, body, name="list.csv")
    run_jobs()
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert upload.state == "failed" and "not a text file" in upload.error
    errors = db.session.execute(db.select(JobError).filter_by(campaign_id=campaign.id)).scalars().all()
    assert len(errors) == 1 and errors[0].line_no is None
    assert numbers_of(campaign) == []
    assert db.session.get(Campaign, campaign.id).status == "New"  # back to the wizard, nothing changed


def test_a_failed_upload_keeps_what_earlier_uploads_stored(client, world):
    from tests.campaign_factories import make_campaign, make_sender

    ws, author, _ = world
    campaign = make_campaign(ws, author, sender=make_sender(ws))
    raw_post(client, ws, campaign.id, b"491701111111\n491702222222\n")
    run_jobs()
    raw_post(client, ws, campaign.id, b"\x00\x01 binary", name="second.csv")
    run_jobs()
    campaign = db.session.get(Campaign, campaign.id)
    assert numbers_of(campaign) == ["491701111111", "491702222222"]
    assert (campaign.status, campaign.recipients_count, campaign.queued_count) == ("New", 2, 2)
    page = client.get(f"/w/{ws.slug}/campaigns/{campaign.id}/wizard/4")
    assert "The upload failed: The file is not a text file" in page.get_data(as_text=True)


def test_a_build_failing_midway_removes_only_that_uploads_rows(app, world, monkeypatch):
    """The spool vanishes after the first chunk: the chunk's rows go, the first upload's stay."""
    ws, author, campaign = world
    first = recipients.start_upload(campaign, spool_path=recipients.spool_stream(io.BytesIO(b"491700000001\n"),
                                                                                 10 ** 6)[0],
                                    size=13, source="cli")
    recipients.ingest(first.id)
    monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", 10)
    body = b"".join(b"4917%08d\n" % i for i in range(100, 150))
    path, size = recipients.spool_stream(io.BytesIO(body), 10 ** 6)
    campaign = db.session.get(Campaign, campaign.id)
    second = recipients.start_upload(campaign, spool_path=path, size=size, source="cli")

    def remove_spool(status):
        file_store.delete(path)

    upload = recipients.ingest(second.id, on_progress=remove_spool)
    assert upload.state == "failed" and "gone from the spool" in upload.error
    campaign = db.session.get(Campaign, campaign.id)
    assert numbers_of(campaign) == ["491700000001"]
    assert (campaign.status, campaign.recipients_count, campaign.queued_count) == ("New", 1, 1)


def test_a_campaign_cancelled_during_its_ingest_stays_cancelled_and_the_upload_stops(app, world, monkeypatch):
    """A campaign cancelled while its list is ingested is not moved back to New by the build's end:
    the upload stops with a message that says why, and its spool is removed."""
    ws, author, campaign = world
    monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", 10)
    body = b"".join(b"4917%08d\n" % i for i in range(100, 150))
    path, size = recipients.spool_stream(io.BytesIO(body), 10 ** 6)
    upload = recipients.start_upload(campaign, spool_path=path, size=size, source="cli")
    cancelled = []

    def cancel_once(status):
        if not cancelled:
            cancelled.append(campaign_rules.apply(db.session.get(Campaign, campaign.id), "cancel", actor=author))

    upload = recipients.ingest(upload.id, on_progress=cancel_once)
    assert upload.state == "failed" and upload.error == "The campaign became Cancelled during the upload; ingest stopped."
    assert db.session.get(Campaign, campaign.id).status == "Cancelled"
    assert not file_store.exists(path)


def test_wrong_encoding_fails_the_build(client, world):
    ws, author, campaign = world
    raw_post(client, ws, campaign.id, "Müller;491701111111\n".encode("latin-1") * 3)
    run_jobs()
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert upload.state == "failed" and "UTF-8" in upload.error
    assert numbers_of(campaign) == []


def test_header_only_file_finishes_with_a_job_error(client, world):
    ws, author, campaign = world
    raw_post(client, ws, campaign.id, b"phone;name\r\n")
    run_jobs()
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert upload.state == "done" and upload.accepted == 0
    error = db.session.execute(db.select(JobError).filter_by(upload_id=upload.id)).scalar_one()
    assert "only a header" in error.reason
    assert db.session.get(Campaign, campaign.id).status == "New"


def test_one_megabyte_line_is_a_job_error_not_a_crash(client, world):
    ws, author, campaign = world
    body = b"491701111111\n" + b"9" * (1024 * 1024) + b"\n491702222222\n"
    raw_post(client, ws, campaign.id, body)
    run_jobs()
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert upload.state == "done" and upload.accepted == 2 and upload.rejected == 1 and upload.lines == 3
    error = db.session.execute(db.select(JobError).filter_by(upload_id=upload.id)).scalar_one()
    assert error.line_no == 2 and "longer than" in error.reason and len(error.raw) <= 120


def test_only_first_errors_are_stored_but_all_are_counted(client, app, world):
    ws, author, campaign = world
    app.config["UPLOAD_CHUNK_LINES"] = 300
    body = b"".join(b"%d\n" % i for i in range(1500)) + b"491701111111\n"  # all too short
    raw_post(client, ws, campaign.id, body)
    run_jobs()
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert upload.rejected == 1500 and upload.accepted == 1
    stored = db.session.execute(db.select(db.func.count()).select_from(JobError).filter_by(upload_id=upload.id)).scalar()
    assert stored == 1000
    first = recipients.job_errors(campaign, limit=2)
    assert [e.line_no for e in first] == [1, 2]


# --- browser: form fallback ------------------------------------------------------------------

def test_multipart_form_fallback_without_javascript(client, world):
    ws, author, campaign = world
    page = f"/w/{ws.slug}/campaigns/{campaign.id}/wizard/4"
    response = client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/recipients",
                           data={"file": (io.BytesIO(b"491701111111\n491702222222\n"), "numbers.txt"), "next": page},
                           content_type="multipart/form-data")
    assert response.status_code == 302 and response.headers["Location"].endswith(page)
    run_jobs()
    assert numbers_of(campaign) == ["491701111111", "491702222222"]
    # An off-site `next` is ignored.
    c2 = campaign_for(ws, world[1], name="Second")
    response = client.post(f"/w/{ws.slug}/campaigns/{c2.id}/recipients",
                           data={"file": (io.BytesIO(b"491701111111\n"), "n.csv"), "next": "https://evil.example/"},
                           content_type="multipart/form-data")
    assert response.status_code == 302 and "evil" not in response.headers["Location"]


def test_form_fallback_needs_the_csrf_field(client, world):
    ws, author, campaign = world
    response = client.post(f"/w/{ws.slug}/campaigns/{campaign.id}/recipients", csrf=False,
                           data={"file": (io.BytesIO(b"491701111111\n"), "n.csv")}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert db.session.execute(db.select(Upload)).first() is None


# --- who may upload, scoping -------------------------------------------------------------------

def test_upload_scoping_and_permissions(client, app, world):
    ws, author, campaign = world
    other_ws = make_workspace("other")
    foreign_author = make_user("f@example.com", workspace=other_ws, role="author")
    foreign = campaign_for(other_ws, foreign_author)
    assert raw_post(client, ws, foreign.id, b"491701111111\n").status_code == 404
    colleague = make_user("colleague@example.com", workspace=ws, role="author")
    theirs = campaign_for(ws, colleague)
    assert raw_post(client, ws, theirs.id, b"491701111111\n").status_code == 404
    sending = campaign_for(ws, author, status="Pending")
    response = raw_post(client, ws, sending.id, b"491701111111\n")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "not_a_draft"

    moderator_client = app.test_client()
    make_user("mod@example.com", workspace=ws, role="moderator")
    moderator_client.login("mod@example.com")
    assert raw_post(moderator_client, ws, campaign.id, b"491701111111\n").status_code == 403
    assert db.session.execute(db.select(Upload)).first() is None

    # Status of an upload in another workspace: 404.
    raw_post(client, ws, campaign.id, b"491701111111\n")
    upload = db.session.execute(db.select(Upload)).scalar_one()
    outsider = app.test_client()
    make_user("out@example.com", workspace=other_ws, role="admin")
    outsider.login("out@example.com")
    assert outsider.get(f"/w/other/uploads/{upload.id}/status").status_code == 404
    assert client.get(f"/w/{ws.slug}/uploads/{upload.id}/status").status_code == 200


# --- API -----------------------------------------------------------------------------------------

@pytest.fixture
def api(world):
    ws, author, campaign = world
    _, token = tokens.create_token(author, ws, "ci")
    return {"Authorization": f"Bearer {token}"}


def test_api_put_and_status(app, world, api):
    ws, author, campaign = world
    api_client = app.test_client()
    body = b"number\n491701111111\n491701111111\nfoo\n491702222222\n"
    response = api_client.put(f"/api/v1/campaigns/{campaign.id}/recipients", data=body,
                              headers={**api, "Content-Type": "text/csv", "X-Filename": "big%20list.csv"})
    assert response.status_code == 202, response.get_data(as_text=True)
    data = response.get_json()
    assert data["status_url"] == f"/api/v1/uploads/{data['id']}" and response.headers["Location"] == data["status_url"]
    queued = api_client.get(data["status_url"], headers=api).get_json()
    assert queued["state"] == "queued" and queued["percent"] == 0
    run_jobs()
    status = api_client.get(data["status_url"], headers=api).get_json()
    assert status["state"] == "done" and status["file"] == "big list.csv"
    assert {k: status[k] for k in ("bytes", "lines", "accepted", "duplicates", "rejected", "stop_listed", "percent")} \
        == {"bytes": len(body), "lines": 5, "accepted": 2, "duplicates": 1, "rejected": 1, "stop_listed": 0,
            "percent": 100}
    assert status["errors"] == [{"line": 4, "reason": "contains characters other than digits", "text": "foo"}]


def test_status_polls_answer_while_an_ingest_holds_the_sqlite_write_lock(app, world, api):
    """The embedded SQLite is shared by web and worker: a status poll must not fail while the
    ingest's chunk transaction holds the write lock (it did: 'database is locked', HTTP 500)."""
    import sqlite3
    import time

    from models import ApiToken

    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's file lock")
    ws, author, campaign = world
    api_client = app.test_client()
    response = api_client.put(f"/api/v1/campaigns/{campaign.id}/recipients", data=b"491701111111\n",
                              headers={**api, "Content-Type": "text/csv"})
    status_url = response.get_json()["status_url"]
    used = db.session.execute(db.select(ApiToken.last_used_at)).scalar_one()
    assert db.session.execute(db.text("PRAGMA journal_mode")).scalar() == "wal"
    writer = sqlite3.connect(db.engine.url.database, timeout=1)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE uploads SET lines = lines + 0")
        started = time.monotonic()
        polled = api_client.get(status_url, headers=api)
        assert polled.status_code == 200 and polled.get_json()["state"] == "queued"
        assert time.monotonic() - started < 2
    finally:
        writer.rollback()
        writer.close()
    db.session.expire_all()
    assert db.session.execute(db.select(ApiToken.last_used_at)).scalar_one() == used  # recorded once a minute


def test_api_too_large(app, world, api):
    ws, author, campaign = world
    api_client = app.test_client()
    url = f"/api/v1/campaigns/{campaign.id}/recipients"
    # 1 GB + 1 byte announced: refused before a byte is read.
    response = api_client.put(url, data=b"491701111111\n", headers=api,
                              environ_overrides={"CONTENT_LENGTH": str(1024 ** 3 + 1)})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_large"
    # A streamed body (no Content-Length) that goes past the limit is cut off while copying.
    app.config["UPLOAD_API_MAX_BYTES"] = 1000
    before = spool_files(app)
    response = api_client.put(url, input_stream=io.BytesIO(b"4917011111\n" * 200),
                              headers={**api, "Content-Type": "application/octet-stream",
                                       "Transfer-Encoding": "chunked"},
                              environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "too_large"
    assert spool_files(app) == before
    assert db.session.get(Campaign, campaign.id).status == "New"
    assert db.session.execute(db.select(Upload)).first() is None


def test_api_scoping(app, world, api):
    ws, author, campaign = world
    other_ws = make_workspace("other")
    foreign = campaign_for(other_ws, make_user(workspace=other_ws, role="author"))
    api_client = app.test_client()
    assert api_client.put(f"/api/v1/campaigns/{foreign.id}/recipients", data=b"491701111111\n",
                          headers=api).status_code == 404
    assert api_client.put(f"/api/v1/campaigns/{campaign.id}/recipients", data=b"491701111111\n").status_code == 401


def test_openapi_describes_the_upload_routes(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    assert "put" in spec["paths"]["/api/v1/campaigns/{campaign_id}/recipients"]
    assert "get" in spec["paths"]["/api/v1/uploads/{upload_id}"]


# --- masking and the Recipients tab --------------------------------------------------------------

def _ingest_text(client, ws, campaign, text):
    raw_post(client, ws, campaign.id, text.encode())
    run_jobs()


def test_recipients_are_masked_unless_viewer_may_see_numbers(app, client, world, audit_events):
    ws, author, campaign = world
    _ingest_text(client, ws, campaign, "".join(f"4917000000{i:02d}\n" for i in range(7)))
    page = recipients.list_recipients(campaign, limit=3)
    assert [r.number for r in page.rows] == [mask_number("491700000000"), mask_number("491700000001"),
                                             mask_number("491700000002")]
    assert page.rows[0].number.endswith("000") and "4917" not in page.rows[0].number
    assert page.rows[0].ctn_hash == ctn_hash("491700000000", ws.id) and page.total == 7 and page.next_cursor
    second = recipients.list_recipients(campaign, after_id=page.next_cursor, limit=3)
    third = recipients.list_recipients(campaign, after_id=second.next_cursor, limit=3)
    assert len(second.rows) == 3 and len(third.rows) == 1 and third.next_cursor is None
    assert not [e for e in audit_events() if e["action"] == "recipients.view_full"]
    full = recipients.list_recipients(campaign, limit=2, may_view_full=True)
    assert full.rows[0].number == "491700000000"
    assert [e for e in audit_events() if e["action"] == "recipients.view_full"]
    # Search by full number (any format, for those who may see numbers) or by hash prefix.
    by_number = recipients.list_recipients(campaign, search="+49 170 000 0003", may_view_full=True).rows
    assert [r.id for r in by_number] == \
        [r.id for r in recipients.list_recipients(campaign, search=ctn_hash("491700000003", ws.id)[:10]).rows]
    assert len(by_number) == 1


def test_api_recipient_list_masks_by_permission(app, client, world, api):
    ws, author, campaign = world
    _ingest_text(client, ws, campaign, "491701111111\n491702222222\n")
    api_client = app.test_client()
    data = api_client.get(f"/api/v1/campaigns/{campaign.id}/recipients", headers=api).get_json()
    assert data["masked"] and data["recipients"][0]["number"] == mask_number("491701111111")
    viewer = make_user("viewer@example.com", workspace=ws, role="admin", can_view_numbers=True)
    _, token = tokens.create_token(viewer, ws, "v")
    data = api_client.get(f"/api/v1/campaigns/{campaign.id}/recipients?limit=1",
                          headers={"Authorization": f"Bearer {token}"}).get_json()
    assert not data["masked"] and data["recipients"][0]["number"] == "491701111111" and data["next_cursor"]
    nxt = api_client.get(f"/api/v1/campaigns/{campaign.id}/recipients?limit=1&after={data['next_cursor']}",
                         headers={"Authorization": f"Bearer {token}"}).get_json()
    assert nxt["recipients"][0]["number"] == "491702222222" and nxt["next_cursor"] is None


# --- stop-list, Spread, memory ---------------------------------------------------------------------

def test_stop_listed_numbers_are_skipped_and_counted(client, world):
    ws, author, campaign = world
    stoplist.add(ws, "491701111111")
    _ingest_text(client, ws, campaign, "491701111111\n491701111111\n491702222222\n")
    upload = db.session.execute(db.select(Upload)).scalar_one()
    assert (upload.accepted, upload.stop_listed, upload.duplicates) == (1, 2, 0)
    assert numbers_of(campaign) == ["491702222222"]


def test_spread_campaign_gets_an_even_day_plan(client, world):
    ws, author, _ = world
    campaign = campaign_for(ws, author, mode="Spread", name="Spread",
                            spread_first_day=date(2030, 1, 1), spread_last_day=date(2030, 1, 3))
    _ingest_text(client, ws, campaign, "".join(f"49170{i:07d}\n" for i in range(10)))
    summary = dict(spread.plan_summary(campaign))
    assert sorted(summary.values()) == [3, 3, 4] and set(summary) == {date(2030, 1, d) for d in (1, 2, 3)}
    # Re-planning after the window changed is deterministic and even again.
    campaign.spread_last_day = date(2030, 1, 4)
    db.session.commit()
    assert spread.plan(campaign) == 10
    assert sorted(dict(spread.plan_summary(campaign)).values()) == [2, 2, 3, 3]


def test_plan_spread_job_finishes_a_submitted_build(app, world):
    from jobs import enqueue_job
    from jobs.uploads import plan_spread
    ws, author, _ = world
    campaign = campaign_for(ws, author, mode="Spread", status="Building", spread_first_day=date(2030, 1, 1),
                            spread_last_day=date(2030, 1, 2))
    campaign.submitted_at = campaign.created_at
    db.session.add_all([Recipient(campaign_id=campaign.id, number=f"4917{i:08d}", ctn_hash="x" * 64)
                        for i in range(5)])
    db.session.commit()
    enqueue_job(plan_spread, campaign.id, queue="uploads")
    run_jobs()
    assert db.session.get(Campaign, campaign.id).status == "Pending"
    assert sorted(dict(spread.plan_summary(campaign)).values()) == [2, 3]


def test_ingest_memory_does_not_grow_with_file_size(app, world, monkeypatch):
    """Peak Python allocations of the ingest depend on the chunk and block size, not the file size."""
    ws_id, author_id = world[0].id, world[1].id
    monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", 2000)
    monkeypatch.setattr(recipient_files, "READ_BLOCK", 128 * 1024)
    # Both files span several chunks of the database file store too (a reader holds one chunk).
    monkeypatch.setitem(app.config, "FILE_STORE_CHUNK_BYTES", 64 * 1024)

    def peak_for(lines):
        from models import User, Workspace
        campaign = campaign_for(db.session.get(Workspace, ws_id), db.session.get(User, author_id), name=f"m{lines}")
        path, size = recipients.spool_stream(io.BytesIO(b"".join(b"49%010d\n" % i for i in range(lines))), 10 ** 9)
        upload = recipients.start_upload(campaign, spool_path=path, size=size, source="cli")
        db.session.remove()
        tracemalloc.start()
        recipients.ingest(upload.id)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert db.session.get(Upload, upload.id).accepted == lines
        return peak

    peak_for(4_000)  # warm-up: caches filled on the first run are not the ingest's memory
    # Both files span many chunks, so both peaks include the worst overlap of the read-ahead
    # thread with a chunk being stored (runs vary by ~0.3 MB). Anything kept per line — even one
    # 8-byte pointer for each of the 120k extra lines, 0.9 MB — would exceed the bound.
    medium, large = peak_for(30_000), peak_for(150_000)
    assert large - medium < 768 * 1024, (medium, large)


# --- jobs that cannot finish --------------------------------------------------------------------

def _age(upload_id, minutes=5):
    from datetime import timedelta

    from models import utcnow

    db.session.execute(db.update(Upload).where(Upload.id == upload_id)
                       .values(created_at=utcnow() - timedelta(minutes=minutes)))
    db.session.commit()


def test_an_upload_whose_job_was_lost_from_redis_is_queued_again(client, world):
    from rq.job import Job

    from jobs.uploads import sweep_uploads

    ws, author, campaign = world
    raw_post(client, ws, campaign.id, b"491701111111\n491702222222\n")
    upload = db.session.execute(db.select(Upload)).scalar_one()
    Job.fetch(upload.job_id, connection=redis_connection()).delete()   # what a Redis without its data looks like
    assert sweep_uploads() == (0, 0)                                   # too recent: maybe still being enqueued
    _age(upload.id)
    assert sweep_uploads() == (1, 0)
    run_jobs()
    assert db.session.get(Upload, upload.id).state == "done"
    assert numbers_of(campaign) == ["491701111111", "491702222222"]
    assert db.session.get(Campaign, campaign.id).status == "New"


def test_an_ingest_out_of_retries_fails_the_upload_and_returns_the_draft(client, world):
    from rq.job import Job
    from sqlalchemy.exc import OperationalError

    from jobs.uploads import on_ingest_failure

    ws, author, campaign = world
    raw_post(client, ws, campaign.id, b"491701111111\n")
    upload = db.session.execute(db.select(Upload)).scalar_one()
    job = Job.fetch(upload.job_id, connection=redis_connection())
    job.retries_left = 1
    on_ingest_failure(job, job.connection, OperationalError, OperationalError("SELECT 1", {}, "server closed"), None)
    assert db.session.get(Upload, upload.id).state == "queued"       # a retry is still coming
    job.retries_left = 0
    on_ingest_failure(job, job.connection, OperationalError, OperationalError("SELECT 1", {}, "server closed"), None)
    db.session.expire_all()
    upload = db.session.get(Upload, upload.id)
    assert upload.state == "failed" and "stopped after its retries" in upload.error and "OperationalError" in upload.error
    assert db.session.get(Campaign, campaign.id).status == "New"
    errors = recipients.job_errors(db.session.get(Campaign, campaign.id))
    assert len(errors) == 1 and "Upload it again" in errors[0].reason


def test_the_sweep_fails_an_upload_whose_job_failed_for_good(client, world):
    from rq.job import Job, JobStatus

    from jobs.uploads import sweep_uploads

    ws, author, campaign = world
    raw_post(client, ws, campaign.id, b"491701111111\n")
    upload = db.session.execute(db.select(Upload)).scalar_one()
    job = Job.fetch(upload.job_id, connection=redis_connection())
    Queue("uploads", connection=redis_connection()).remove(job)
    job.retries_left = 0
    job.set_status(JobStatus.FAILED)
    job.save()
    _age(upload.id)
    assert sweep_uploads() == (0, 1)
    assert db.session.get(Upload, upload.id).state == "failed"
    assert db.session.get(Campaign, campaign.id).status == "New"
