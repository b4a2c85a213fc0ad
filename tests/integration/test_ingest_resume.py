"""The ingest resumes from its committed offset: a crash at any moment (in-process, or a real
`rq worker` SIGKILLed mid-ingest) ends with exactly the rows and counters of an uninterrupted run."""
import io
import os
import subprocess
import sys
import time

import pytest
from rq import Queue
from rq.job import Job

from extensions import db, redis_connection
from models import Campaign, User
from models.campaigns import JobError
from models.recipients import Recipient, Upload
from services import recipients, stoplist
from tests.factories import make_user, make_workspace
from tests.processes import kill_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_file(lines):
    """`lines` lines: 1% bad, 1% duplicates of earlier numbers, a header, CRLF."""
    out = [b"phone;name\r\n"]
    for i in range(1, lines):
        if i % 100 == 7:
            out.append(b"not-a-number-%d;x\r\n" % i)
        elif i % 100 == 13:
            out.append(b"+49 %010d;dup\r\n" % (i - 5))
        else:
            out.append(b"+49 %010d;ok\r\n" % i)
    return b"".join(out)


@pytest.fixture(autouse=True)
def _clean_queue(app):
    queue = Queue("uploads", connection=redis_connection())
    queue.empty()
    for registry in (queue.started_job_registry, queue.failed_job_registry, queue.scheduled_job_registry):
        for job_id in registry.get_job_ids():
            registry.remove(job_id, delete_job=True)
    yield
    app.config.pop("UPLOAD_CHUNK_LINES", None)


@pytest.fixture
def people():
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    stoplist.add(ws, f"49{42:010d}")
    return ws.id, author.id


def new_upload(people, body, name):
    ws_id, author_id = people
    campaign = Campaign(workspace_id=ws_id, author_id=author_id, name=name, mode="OnDemand", status="New")
    db.session.add(campaign)
    db.session.commit()
    path, size = recipients.spool_stream(io.BytesIO(body), 10 ** 10)
    return recipients.start_upload(campaign, spool_path=path, size=size, source="cli",
                                   user=db.session.get(User, author_id))


def outcome(upload_id):
    db.session.expire_all()
    upload = db.session.get(Upload, upload_id)
    campaign = db.session.get(Campaign, upload.campaign_id)
    numbers = db.session.execute(db.select(db.func.count(), db.func.count(db.distinct(Recipient.number)),
                                           db.func.min(Recipient.number), db.func.max(Recipient.number))
                                 .filter_by(campaign_id=campaign.id)).one()
    digest = db.session.execute(db.select(Recipient.number).filter_by(campaign_id=campaign.id)
                                .order_by(Recipient.number)).scalars().all()
    errors = db.session.execute(db.select(JobError.line_no, JobError.reason, JobError.raw)
                                .filter_by(upload_id=upload_id).order_by(JobError.line_no)).all()
    return {
        "upload": (upload.state, upload.bytes_done, upload.bytes_total, upload.lines, upload.accepted,
                   upload.duplicates, upload.rejected, upload.stop_listed),
        "campaign": (campaign.status, campaign.recipients_count, campaign.queued_count),
        "rows": tuple(numbers), "numbers_hash": hash(tuple(digest)),
        "errors": [tuple(e) for e in errors],
    }


class Crash(Exception):
    pass


def test_crash_before_and_after_commits_changes_nothing(app, people, monkeypatch):
    app.config["UPLOAD_CHUNK_LINES"] = 500
    body = make_file(5_000)
    reference = new_upload(people, body, "reference").id
    recipients.ingest(reference)

    crashed = new_upload(people, body, "crashed").id
    # 1) die after the 3rd chunk committed (as if killed between chunks)
    calls = {"n": 0}

    def die_after_three(status):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash()

    with pytest.raises(Crash):
        recipients.ingest(crashed, on_progress=die_after_three)
    db.session.rollback()
    assert 0 < db.session.get(Upload, crashed).bytes_done < len(body)
    # 2) die in the middle of the 6th chunk, after its rows were inserted but before the commit
    real = recipients.store_numbers
    state = {"n": 0}

    def store_then_die(*args, **kwargs):
        state["n"] += 1
        result = real(*args, **kwargs)
        if state["n"] == 3:
            raise Crash()
        return result

    monkeypatch.setattr(recipients, "store_numbers", store_then_die)
    with pytest.raises(Crash):
        recipients.ingest(crashed)
    db.session.rollback()
    monkeypatch.setattr(recipients, "store_numbers", real)
    # 3) the re-run finishes; a further re-run is a no-op
    recipients.ingest(crashed)
    recipients.ingest(crashed)

    want, got = outcome(reference), outcome(crashed)
    assert got == want
    assert want["upload"][0] == "done" and want["campaign"] == ("New", want["upload"][4], want["upload"][4])
    assert want["upload"][6] == 50 and want["upload"][7] == 1 and want["upload"][3] == 5_000


def _worker_env(app):
    env = dict(os.environ)
    env.update({"DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"], "MC_DATA_DIR": app.config["MC_DATA_DIR"],
                "SECRET_KEY": app.config["SECRET_KEY"], "UPLOAD_CHUNK_LINES": "2000",
                "AUDIT_FALLBACK_PATH": app.config["AUDIT_FALLBACK_PATH"], "PYTHONUNBUFFERED": "1"})
    return env


def _start_worker(app):
    rq_bin = os.path.join(os.path.dirname(sys.executable), "rq")
    return subprocess.Popen([rq_bin, "worker", "--burst", "--url", os.environ["REDIS_URL"], "--path", ROOT, "uploads"],
                            cwd=ROOT, env=_worker_env(app), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.mark.slow
def test_sigkilled_rq_worker_resumes_with_identical_result(app, people):
    body = make_file(200_000)
    app.config["UPLOAD_CHUNK_LINES"] = 2000
    reference = new_upload(people, body, "reference").id
    recipients.ingest(reference)

    victim = new_upload(people, body, "victim")
    job = recipients.enqueue_ingest(victim)
    worker = _start_worker(app)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline:
        done = db.session.execute(db.select(Upload.bytes_done).filter_by(id=victim.id)).scalar()
        db.session.rollback()  # never hold a read lock the worker waits for
        if done and done > len(body) // 10:
            kill_tree(worker)
            killed_at = done
            break
        if worker.poll() is not None:
            break
        time.sleep(0.01)
    output = worker.stdout.read().decode(errors="replace")
    assert killed_at is not None, f"the worker finished or failed before it could be killed:\n{output}"
    db.session.expire_all()
    interrupted = db.session.get(Upload, victim.id)
    assert interrupted.state == "running" and interrupted.bytes_done < len(body), (killed_at, interrupted.bytes_done, len(body))
    assert db.session.get(Campaign, interrupted.campaign_id).status == "Building"

    # RQ's maintenance finds the abandoned job and schedules its retry; we run it now.
    queue = Queue("uploads", connection=redis_connection())
    queue.started_job_registry.cleanup(timestamp=time.time() + 365 * 86400)
    assert job.id in queue.scheduled_job_registry.get_job_ids()
    queue.scheduled_job_registry.requeue(job.id)
    worker = _start_worker(app)
    output = worker.communicate(timeout=300)[0].decode(errors="replace")
    assert worker.returncode == 0, output

    want, got = outcome(reference), outcome(victim.id)
    assert got == want, output
    assert want["upload"][0] == "done" and want["upload"][3] == 200_000
    assert Job.fetch(job.id, connection=redis_connection()).get_status() == "finished"
    progress = Job.fetch(job.id, connection=redis_connection()).meta["progress"]
    assert progress["state"] == "done" and progress["percent"] == 100
