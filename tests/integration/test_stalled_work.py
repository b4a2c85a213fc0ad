"""Stalled work recovers within 2 minutes: `recover_stalled_work` (rq cron) hands a job whose worker
died to RQ's abandoned-job handling, and leaves jobs of live workers alone."""
import os
import subprocess
import sys
import time

import pytest
from rq import Queue, Retry, Worker
from rq.cron import CronScheduler
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.utils import as_text, parse_composite_key

from extensions import db, redis_connection
from jobs.maintenance import recover_stalled_work
from models import Campaign
from models.campaigns import JobError
from models.recipients import Upload
from services import recipients
from tests.factories import make_user, make_workspace
from tests.integration.test_ingest_resume import _worker_env, make_file, new_upload
from tests.processes import kill_tree, stop_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RQ = os.path.join(os.path.dirname(sys.executable), "rq")


def _empty(*names):
    connection = redis_connection()
    for name in names:
        queue = Queue(name, connection=connection)
        registries = (queue.scheduled_job_registry, queue.failed_job_registry)
        for job_id in queue.job_ids + [j for r in registries for j in r.get_job_ids()]:
            connection.delete(Job.key_for(job_id))
        queue.empty()
        for registry in (queue.started_job_registry, queue.failed_job_registry, queue.scheduled_job_registry):
            connection.delete(registry.key)
    for key in connection.keys("rq:worker:*"):
        connection.delete(key)
    connection.delete("rq:workers", *(f"rq:workers:{name}" for name in names))


@pytest.fixture(autouse=True)
def _clean_queues(app):
    _empty("uploads", "default", "dispatch", "trigger")  # trigger: the Trigger lane's queue (issue 18)
    yield
    _empty("uploads", "default", "dispatch", "trigger")
    app.config.pop("UPLOAD_CHUNK_LINES", None)


@pytest.fixture
def people():
    ws = make_workspace("acme")
    author = make_user("author@example.com", workspace=ws, role="author")
    return ws.id, author.id


def _start_as_if_running(job, worker_name, heartbeat_age=0.0):
    """Put `job` in its StartedJobRegistry the way a worker does (execution + heartbeat)."""
    connection = redis_connection()
    with connection.pipeline() as pipe:
        execution = Execution.create(job, ttl=90, pipeline=pipe, worker_name=worker_name)
        job.set_status(JobStatus.STARTED, pipeline=pipe)
        pipe.execute()
    if heartbeat_age:
        connection.hset(execution.key, "last_heartbeat", time.time() - heartbeat_age)
    return execution


def _live_worker(name):
    worker = Worker(["uploads"], connection=redis_connection(), name=name)
    worker.register_birth()
    worker.heartbeat()
    return worker


def test_only_jobs_of_dead_workers_are_recovered(app, people):
    """A job of a live worker (fresh heartbeat) is never re-run; a job whose worker vanished, or whose
    execution stopped heart-beating for STALLED_JOB_SECONDS, is retried at once (RQ's Retry)."""
    queue = Queue("uploads", connection=redis_connection())
    live = queue.enqueue("jobs.uploads.sweep_uploads", retry=Retry(max=3, interval=10))
    ghost = queue.enqueue("jobs.uploads.sweep_uploads", retry=Retry(max=3, interval=10))
    silent = queue.enqueue("jobs.uploads.sweep_uploads", retry=Retry(max=3, interval=10))
    for job in (live, ghost, silent):
        queue.remove(job)
    _live_worker("w-alive")
    _live_worker("w-silent")
    _start_as_if_running(live, "w-alive", heartbeat_age=app.config["STALLED_JOB_SECONDS"] - 20)
    _start_as_if_running(ghost, "w-killed")  # its worker key is gone: SIGKILLed long enough ago
    _start_as_if_running(silent, "w-silent", heartbeat_age=app.config["STALLED_JOB_SECONDS"] + 5)

    recovered = recover_stalled_work()
    assert set(recovered) == {"uploads"} and sorted(recovered["uploads"]) == sorted([ghost.id, silent.id])
    for job in (live, ghost, silent):
        job.refresh()
    assert live.get_status() == JobStatus.STARTED
    assert live.id in queue.started_job_registry.get_job_ids(cleanup=False)
    for job in (ghost, silent):
        assert job.get_status() == JobStatus.SCHEDULED and job.retries_left == 2
        assert job.id in queue.scheduled_job_registry.get_job_ids()
    # A second run finds nothing more to do (idempotent), and the live job is still untouched.
    assert recover_stalled_work() == {}
    live.refresh()
    assert live.get_status() == JobStatus.STARTED


def test_a_dead_ingest_without_retries_left_fails_its_upload_clearly(app, people):
    """No retry left: RQ's failure callback runs, so the upload fails with a job error and the draft
    goes back to New (instead of staying Building for good)."""
    upload = new_upload(people, make_file(200), "no-retries")
    job = recipients.enqueue_ingest(upload)
    job.retries_left = 0
    job.save()
    Queue("uploads", connection=redis_connection()).remove(job)
    _start_as_if_running(job, "w-killed")

    assert recover_stalled_work() == {"uploads": [job.id]}
    db.session.expire_all()
    upload = db.session.get(Upload, upload.id)
    assert upload.state == "failed"
    assert db.session.get(Campaign, upload.campaign_id).status == "New"
    reasons = db.session.execute(db.select(JobError.reason).filter_by(upload_id=upload.id)).scalars().all()
    assert any("stopped after its retries" in r for r in reasons)
    assert job.get_status() == JobStatus.FAILED


def _registry_state(connection, job):
    """What the recovery job saw, for a failure message: the uploads queue's running entries, their
    executions and whether their workers are still registered."""
    registry = Queue("uploads", connection=connection).started_job_registry
    lines = [f"job {job.id}: {job.get_status()}; now {time.time():.0f}"]
    for key, score in connection.zrange(registry.key, 0, -1, withscores=True):
        job_id, execution_id = parse_composite_key(as_text(key))
        execution = connection.hgetall(f"rq:execution:{job_id}:{execution_id}")
        worker = (execution.get(b"worker_name") or b"").decode()
        lines.append(f"  {as_text(key)} expires {score:.0f}; execution {execution}; "
                     f"worker registered: {bool(connection.exists('rq:worker:' + worker))}")
    return "\n".join(lines)


def _cron_file(tmp_path):
    """An `rq cron` config with only the recovery job, at the interval jobs/cron.py declares, so the
    test's only trigger is that periodic job (no dispatch ticks in the way)."""
    scheduler = CronScheduler(connection=redis_connection())
    scheduler.load_config_from_file(os.path.join(ROOT, "jobs", "cron.py"))
    interval = next(j.interval for j in scheduler.get_jobs() if j.func_name == "jobs.maintenance.recover_stalled_work")
    path = tmp_path / "cron_recovery.py"
    path.write_text("from rq import cron\nfrom jobs.maintenance import recover_stalled_work\n"
                    f"cron.register(recover_stalled_work, queue_name='default', interval={interval})\n")
    return str(path), interval


def _spawn(args, app, log_path):
    log = open(log_path, "wb")
    return subprocess.Popen(args, cwd=ROOT, env=_worker_env(app), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(proc):
    stop_tree(proc, timeout=20)


@pytest.mark.slow
def test_sigkilled_worker_mid_ingest_resumes_within_two_minutes_by_the_periodic_job_alone(app, people, tmp_path):
    # An empty Redis database: a scheduler lock left by an earlier test's killed worker would keep
    # the healthy worker's scheduler from moving the retry (a scheduled job) to the queue.
    redis_connection().flushdb()
    app.config["UPLOAD_CHUNK_LINES"] = 2000
    body = make_file(400_000)
    victim = new_upload(people, body, "victim")
    job = recipients.enqueue_ingest(victim)
    url = os.environ["REDIS_URL"]
    worker = _spawn([RQ, "worker", "--burst", "--url", url, "--path", ROOT, "uploads"], app, tmp_path / "victim.log")
    helpers = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            done = db.session.execute(db.select(Upload.bytes_done).filter_by(id=victim.id)).scalar()
            db.session.rollback()
            if done:
                break
            assert worker.poll() is None, (tmp_path / "victim.log").read_text()
            time.sleep(0.01)
        # A healthy worker (with RQ's scheduler, as in the Procfile) and rq cron with the recovery job,
        # started before the kill: a worker's own start-up maintenance is not what recovers the job.
        helpers.append(_spawn([RQ, "worker", "-w", "jobs.worker.AppWorker", "--with-scheduler", "--url", url,
                               "--path", ROOT, "uploads", "default"], app, tmp_path / "healthy.log"))
        cron_path, interval = _cron_file(tmp_path)
        helpers.append(_spawn([RQ, "cron", "--url", url, "--path", ROOT, cron_path], app, tmp_path / "cron.log"))
        connection = redis_connection()
        while len(Worker.all(connection=connection)) < 2 or not CronScheduler.all(connection):
            assert time.time() < deadline and worker.poll() is None, (tmp_path / "victim.log").read_text()
            time.sleep(0.1)
        kill_tree(worker)
        worker.wait()
        killed_at = time.time()
        db.session.expire_all()
        interrupted = db.session.get(Upload, victim.id)
        assert interrupted.state == "running" and interrupted.bytes_done < len(body)
        assert job.get_status() == JobStatus.STARTED  # RQ itself has not noticed anything

        finished_at = None
        while time.time() < killed_at + 150:
            db.session.expire_all()
            state = db.session.execute(db.select(Upload.state).filter_by(id=victim.id)).scalar()
            db.session.rollback()
            if state != "running":
                finished_at = time.time()
                break
            time.sleep(0.5)
        logs = "".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log"))
        assert finished_at is not None, f"{_registry_state(connection, job)}\n{logs}"
        took = finished_at - killed_at
        print(f"ingest resumed and finished {took:.1f} s after the SIGKILL (recovery every {interval} s)")
        assert took <= 120, logs
        upload = db.session.get(Upload, victim.id)
        assert (upload.state, upload.lines, upload.bytes_done) == ("done", 400_000, len(body)), logs
        until = time.time() + 20  # the upload row is done a moment before RQ records the job finished
        while job.get_status() != JobStatus.FINISHED and time.time() < until:
            time.sleep(0.2)
        assert job.get_status() == JobStatus.FINISHED, logs
        assert "[stalled-job]" in (tmp_path / "healthy.log").read_text(errors="replace")
    finally:
        if worker.poll() is None:
            kill_tree(worker)
        for proc in helpers:
            _stop(proc)


def test_a_dead_dispatch_job_frees_its_campaign_slot_for_the_next_tick(app):
    """Dispatch jobs have no RQ retry (the tick schedules them); recovery fails the dead one and
    frees the campaign's slot at once instead of after the slot's TTL."""
    from services.queues import slot_key as _slot_key

    connection = redis_connection()
    connection.set(_slot_key(42, 1), "1", ex=120)
    queue = Queue("dispatch", connection=connection)
    job = queue.enqueue("jobs.dispatch.dispatch_campaign", 42, 1)
    queue.remove(job)
    _start_as_if_running(job, "w-killed")

    assert recover_stalled_work() == {"dispatch": [job.id]}
    assert job.get_status() == JobStatus.FAILED
    assert not connection.exists(_slot_key(42, 1))
