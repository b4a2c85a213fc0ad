"""The file store (services/file_store.py), both backends on the real database and disk: streamed
in and out with flat memory, seekable (the ingest resumes at a byte offset), nothing kept of a write
that failed, a missing chunk fails the ingest with a job error instead of hanging, exports built into
the database and downloaded, files removed after the ingest and at expiry."""
import io
import os
import subprocess
import tracemalloc
from datetime import timedelta

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import create_engine, func, select

from extensions import db, redis_connection
from models import Campaign, utcnow
from models.campaigns import JobError
from models.exports import Export
from models.files import FileChunk, StoredFile
from models.recipients import Recipient, Upload
from services import exports, file_store, recipients
from tests.factories import make_user, make_workspace

CHUNK = 64 * 1024   # small chunks so that a few MB make many of them


@pytest.fixture(params=["local", "database"])
def store(request, app, monkeypatch):
    monkeypatch.setitem(app.config, "FILE_STORE", request.param)
    monkeypatch.setitem(app.config, "FILE_STORE_CHUNK_BYTES", CHUNK)
    return request.param


@pytest.fixture(autouse=True)
def _clean_queues(app):
    for name in ("uploads", "exports"):
        Queue(name, connection=redis_connection()).empty()


def run_jobs(name):
    queue = Queue(name, connection=redis_connection())
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    db.session.expire_all()


def chunk_rows():
    return db.session.scalar(select(func.count()).select_from(FileChunk))


def file_rows():
    return db.session.scalar(select(func.count()).select_from(StoredFile))


class Stream:
    """A request body: `read(n)` blocks; fails after `fail_after` bytes when asked to."""

    BLOCK = b"".join(b"49%011d\n" % i for i in range(80_000))   # 1.1 MB of lines

    def __init__(self, size, fail_after=None):
        self.size, self.pos, self.fail_after = size, 0, fail_after

    def read(self, n):
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("client went away")
        n = min(n, self.size - self.pos, len(self.BLOCK))
        self.pos += n
        return self.BLOCK[:n]


def test_round_trip_with_seeks_matches_the_bytes(store):
    body = b"".join(b"4917%08d\n" % i for i in range(50_000))   # 650 kB: about 10 chunks
    ref, size = recipients.spool_stream(io.BytesIO(body), 10 ** 9, chunk_size=10_000)
    assert size == len(body)
    assert ref.startswith("db:") == (store == "database")
    with file_store.open_file(ref) as fh:
        assert fh.read() == body
        for offset in (0, CHUNK - 3, CHUNK, 5 * CHUNK + 17, len(body) - 5, len(body), len(body) + 10):
            fh.seek(offset)
            assert fh.read(CHUNK + 10) == body[offset:offset + CHUNK + 10]
    file_store.delete(ref)
    assert not file_store.exists(ref)
    with pytest.raises(FileNotFoundError):
        file_store.open_file(ref)
    if store == "database":
        assert chunk_rows() == 0 and file_rows() == 0


def test_memory_stays_flat_for_a_large_file(store):
    size = 40 * 1024 * 1024
    tracemalloc.start()
    try:
        ref, stored = recipients.spool_stream(Stream(size), 10 ** 10)
        with file_store.open_file(ref) as fh:
            read = 0
            while block := fh.read(128 * 1024):
                read += len(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stored == read == size
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
    file_store.delete(ref)


def test_a_write_that_fails_keeps_nothing(store, app):
    with pytest.raises(OSError):
        recipients.spool_stream(Stream(5 * CHUNK, fail_after=3 * CHUNK), 10 ** 9)
    with pytest.raises(recipients.UploadTooLarge):
        recipients.spool_stream(Stream(5 * CHUNK), 2 * CHUNK)
    assert chunk_rows() == 0 and file_rows() == 0
    spool = os.path.join(app.config["MC_DATA_DIR"], "spool")
    assert not [n for n in os.listdir(spool) if n.endswith(".part")] if os.path.isdir(spool) else True


def test_a_database_that_refuses_fails_the_upload_with_a_clear_message(client, app, monkeypatch):
    """The browser upload route with a database store whose server does not answer: 503, a message
    that says what happened, the draft unchanged, no Upload row."""
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="c", mode="OnDemand", status="New")
    db.session.add(campaign)
    db.session.commit()
    client.login("author@example.com")
    dead = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    monkeypatch.setattr(file_store, "current", lambda: file_store.DatabaseStore(dead, CHUNK))
    response = client.post(f"/w/acme/campaigns/{campaign.id}/recipients", data=b"491700000001\n" * 1000,
                           headers={"X-Filename": "list.csv", "Accept": "application/json",
                                    "X-CSRFToken": client.csrf_token},
                           content_type="application/octet-stream")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "file_store_failed" and "database refused" in error["message"]
    assert "Nothing was kept" in error["message"]
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).status == "New"
    assert db.session.scalar(select(func.count()).select_from(Upload)) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_disk_fails_the_upload_with_a_clear_message(client, app, tmp_path, monkeypatch):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        monkeypatch.setitem(app.config, "FILE_STORE", "local")
        monkeypatch.setattr(file_store, "current", lambda: file_store.LocalStore(str(small)))
        ws = make_workspace("acme")
        author = make_user("author@example.com", workspace=ws, role="author")
        campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="c", mode="OnDemand", status="New")
        db.session.add(campaign)
        db.session.commit()
        client.login("author@example.com")
        response = client.post(f"/w/acme/campaigns/{campaign.id}/recipients", data=b"491700000001\n" * 100_000,
                               headers={"X-Filename": "list.csv", "Accept": "application/json",
                                        "X-CSRFToken": client.csrf_token},
                               content_type="application/octet-stream")
        assert response.status_code == 503
        assert "disk is full" in response.get_json()["error"]["message"]
        assert os.listdir(small / "spool") == []   # the partial file is gone
        assert db.session.scalar(select(func.count()).select_from(Upload)) == 0
    finally:
        subprocess.run(["umount", str(small)], check=False)


def _draft(n_lines):
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="c", mode="OnDemand", status="New")
    db.session.add(campaign)
    db.session.commit()
    body = b"".join(b"4917%08d\n" % i for i in range(n_lines))
    ref, size = recipients.spool_stream(io.BytesIO(body), 10 ** 9)
    return campaign, recipients.start_upload(campaign, spool_path=ref, size=size, source="cli")


def test_ingest_from_the_database_store_resumes_and_removes_the_file(store, app, monkeypatch):
    monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", 7_000)
    campaign, upload = _draft(50_000)
    ref = upload.spool_path

    stops = {"n": 0}

    def crash_after_two_chunks(status):
        stops["n"] += 1
        if stops["n"] == 2:
            raise RuntimeError("worker killed")

    with pytest.raises(RuntimeError):
        recipients.ingest(upload.id, on_progress=crash_after_two_chunks)
    db.session.expire_all()
    assert 0 < db.session.get(Upload, upload.id).bytes_done < db.session.get(Upload, upload.id).bytes_total
    # Another "host": a different data directory; the database store needs none of it.
    if store == "database":
        monkeypatch.setitem(app.config, "MC_DATA_DIR", str(app.config["MC_DATA_DIR"]) + "-elsewhere")
    done = recipients.ingest(upload.id)
    assert (done.state, done.accepted, done.lines) == ("done", 50_000, 50_000)
    assert db.session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.campaign_id == campaign.id)) == 50_000
    assert not file_store.exists(ref)
    assert chunk_rows() == 0 and file_rows() == 0


def test_a_missing_chunk_is_a_job_error_not_a_hang(app, monkeypatch):
    monkeypatch.setitem(app.config, "FILE_STORE", "database")
    monkeypatch.setitem(app.config, "FILE_STORE_CHUNK_BYTES", CHUNK)
    monkeypatch.setitem(app.config, "UPLOAD_CHUNK_LINES", 5_000)
    campaign, upload = _draft(30_000)     # 390 kB: 6 chunks
    file_id = upload.spool_path[len("db:"):]
    db.session.execute(db.delete(FileChunk).where(FileChunk.file_id == file_id, FileChunk.seq == 3))
    db.session.commit()
    recipients.enqueue_ingest(upload)
    run_jobs("uploads")
    upload = db.session.get(Upload, upload.id)
    assert upload.state == "failed" and "incomplete" in upload.error
    reasons = list(db.session.scalars(select(JobError.reason).where(JobError.upload_id == upload.id)))
    assert any("incomplete" in r for r in reasons)
    assert db.session.get(Campaign, campaign.id).status == "New"
    assert db.session.scalar(select(func.count()).select_from(Recipient)) == 0


def test_export_in_the_database_store_is_served_and_expires(store, client, app):
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    campaign = Campaign(workspace_id=ws.id, author_id=author.id, name="Spring", mode="OnDemand", status="Done")
    db.session.add(campaign)
    db.session.commit()
    db.session.execute(db.insert(Recipient), [
        {"campaign_id": campaign.id, "number": f"4917{i:08d}", "ctn_hash": f"h{i}", "state": "delivered"}
        for i in range(20_000)])
    campaign.recipients_count = 20_000
    db.session.commit()
    client.login("author@example.com")
    assert client.post(f"/w/acme/campaigns/{campaign.id}/exports", data={"format": "csv"}).status_code == 302
    run_jobs("exports")
    export = db.session.scalars(select(Export)).one()
    assert export.state == "done" and export.rows == 20_000
    assert export.path.startswith("db:") == (store == "database")
    response = client.get(f"/w/acme/exports/{export.id}/download")
    assert response.status_code == 200
    body = response.get_data()
    assert response.content_length == len(body)
    lines = body.decode().splitlines()
    assert len(lines) == 20_001 and lines[0].startswith("number,status")
    export.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert exports.expire() == 1
    assert not file_store.exists(export.path or "db:none")
    assert chunk_rows() == 0 and file_rows() == 0
    assert client.get(f"/w/acme/exports/{export.id}/download").status_code == 410


def test_incomplete_files_of_a_dead_writer_are_swept(store, app):
    class Killed(BaseException):
        pass

    # A writer that "dies" (its abort is what a BaseException runs; a SIGKILL runs none): simulate the
    # SIGKILL by inserting an incomplete row directly, as a killed writer leaves it.
    if store == "database":
        db.session.add(StoredFile(id="spool-dead.upload", kind="spool", size=0, chunk_bytes=CHUNK, complete=False,
                                  created_at=utcnow() - timedelta(hours=7)))
        db.session.add(FileChunk(file_id="spool-dead.upload", seq=0, data=b"x" * 10))
        db.session.commit()
        assert not file_store.exists("db:spool-dead.upload")
    else:
        part = os.path.join(file_store.LocalStore(app.config["MC_DATA_DIR"]).directory("spool"), "dead.upload.part")
        with open(part, "wb") as fh:
            fh.write(b"x")
        old = (utcnow() - timedelta(hours=7)).timestamp()
        os.utime(part, (old, old))
    with pytest.raises(Killed), file_store.create("spool", "upload") as out:
        out.write(b"fresh")
        raise Killed()
    assert file_store.sweep_incomplete() == 1
    assert chunk_rows() == 0 and file_rows() == 0
