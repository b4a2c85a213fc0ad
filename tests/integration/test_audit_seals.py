"""Sealed audit checkpoints: events are sealed in arrival order into the main database, and
`flask audit verify` names an event altered, deleted or inserted directly in the embedded store
(exit 1), says "verified N events in M seals" otherwise (exit 0), and refuses to say verified when
the store is unreachable (exit 2). Fallback flushes are sealed after their arrival, so they never
break verification; two sealers at once cannot fork the chain."""
import json
import logging
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from rq import SimpleWorker
from sqlalchemy import select, text, update

import audit
from audit.store import AuditStore, now_ms
from extensions import db, redis_connection
from jobs import enqueue_job, get_queue
from jobs.audit_seals import seal_audit, verify_audit_seals
from models.audit_seals import AuditSeal, AuditVerification
from services import audit_seals
from tests.factories import make_workspace


@pytest.fixture(autouse=True)
def _no_grace(app):
    app.config["AUDIT_SEAL_GRACE_SECONDS"] = 0  # tests seal what they have just written


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        result = runner.invoke(args=list(args))
        db.session.expire_all()
        return result

    return invoke


def _events(n, workspace_id=None, prefix="test.event"):
    return [audit.record(f"{prefix}.{i}", workspace_id=workspace_id, object_type="thing", object_id=i,
                         after={"i": i, "nested": {"a.b": [1, 2.5, None, "ü"]}}) for i in range(n)]


def _coll():
    store = audit.get_store()
    return store, store._collection()


def test_seal_covers_events_in_arrival_order_and_logs(cli, caplog):
    events = _events(5)
    caplog.set_level(logging.INFO, logger="mc.audit.seals")
    result = cli("audit", "seal")
    assert result.exit_code == 0, result.output
    row = db.session.scalars(select(AuditSeal)).one()
    assert row.events == 5 and row.position == 1 and row.prev_root == audit_seals.GENESIS
    assert row.first_event_id == events[0]["_id"] and row.last_event_id == events[-1]["_id"]
    assert f"[audit-seal] id={row.id} events=5 root={row.root}" in caplog.text
    # A second seal chains on the first and covers only what arrived since.
    _events(2, prefix="later")
    assert cli("audit", "seal").exit_code == 0
    second = db.session.scalars(select(AuditSeal).order_by(AuditSeal.position.desc())).first()
    assert second.position == 2 and second.prev_root == row.root and second.events == 2
    assert second.lower_ms == row.upper_ms
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "verified 7 events in 2 seals" in result.output


def test_root_is_the_hash_chain_over_canonical_json():
    events = _events(3)
    row = audit_seals.seal()
    stored = [audit.get_store().get_event(e["_id"]) for e in events]
    digests = [audit_seals.event_hash(doc) for doc in stored]
    assert row.root == audit_seals.chain(audit_seals.GENESIS, digests)
    # canonical JSON: sorted keys, no spaces, UTF-8 (not \\u escapes)
    raw = audit_seals.canonical(stored[0])
    assert raw.decode("utf-8") == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"),
                                             ensure_ascii=False)
    assert "ü".encode() in raw


def test_altered_event_is_named(cli):
    events = _events(4)
    audit_seals.seal()
    _, coll = _coll()
    coll.update_one({"_id": events[2]["_id"]}, {"$set": {"actor_email": "someone.else@example.com"}})
    result = cli("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"event {events[2]['_id']} altered" in result.output
    check = db.session.scalars(select(AuditVerification).order_by(AuditVerification.id.desc())).first()
    assert check.outcome == "failed" and check.first_bad_event == events[2]["_id"]


def test_deleted_event_is_named(cli):
    events = _events(4)
    audit_seals.seal()
    _events(2, prefix="second")
    audit_seals.seal()
    _, coll = _coll()
    coll.delete_one({"_id": events[1]["_id"]})
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"event {events[1]['_id']} missing" in result.output


def test_inserted_event_is_named_with_or_without_an_arrival_stamp(cli):
    events = _events(3)
    audit_seals.seal()
    _events(1, prefix="after")
    audit_seals.seal()
    _, coll = _coll()
    forged = dict(audit.get_store().get_event(events[1]["_id"]), _id=str(uuid.uuid4()), action="forged")
    coll.insert_one(forged)  # same arrival stamp as a sealed event: lands inside the first seal
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"event {forged['_id']} inserted" in result.output
    coll.delete_one({"_id": forged["_id"]})
    assert cli("audit", "verify").exit_code == 0
    # Without an arrival stamp (e.g. written straight to the database by hand): it sorts with the
    # first seal's legacy events and is found there too.
    bare = {k: v for k, v in forged.items() if k != "arrived"}
    bare["_id"] = str(uuid.uuid4())
    coll.insert_one(bare)
    result = cli("audit", "verify")
    assert result.exit_code == 1 and f"event {bare['_id']} inserted" in result.output


def test_first_bad_event_is_the_earliest_in_arrival_order(cli):
    events = _events(6)
    audit_seals.seal()
    _, coll = _coll()
    coll.delete_one({"_id": events[4]["_id"]})
    coll.update_one({"_id": events[1]["_id"]}, {"$set": {"note": "edited"}})
    result = cli("audit", "verify")
    assert result.exit_code == 1
    first_line = result.output.splitlines()[0]
    assert events[1]["_id"] in first_line and "altered" in first_line
    assert f"event {events[4]['_id']} missing" in result.output


def test_moved_arrival_is_reported_as_altered(cli):
    events = _events(2)
    audit_seals.seal()
    _, coll = _coll()
    coll.update_one({"_id": events[0]["_id"]}, {"$set": {"arrived": now_ms() + 10_000_000}})
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert f"event {events[0]['_id']} altered" in result.output


def test_edited_seal_row_is_detected(cli):
    _events(2)
    audit_seals.seal()
    _events(2, prefix="more")
    audit_seals.seal()
    db.session.execute(update(AuditSeal).where(AuditSeal.position == 1).values(events=1))
    db.session.commit()
    result = cli("audit", "verify")
    assert result.exit_code == 1
    assert "signature" in result.output
    # A seal row deleted from the middle of the chain is named too.
    db.session.execute(update(AuditSeal).where(AuditSeal.position == 1).values(events=2))
    db.session.commit()
    assert cli("audit", "verify").exit_code == 0
    _events(1, prefix="third")
    audit_seals.seal()
    db.session.execute(text("DELETE FROM audit_seals WHERE position = 2"))
    db.session.commit()
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "does not follow" in result.output


def test_workspace_and_since_filters(cli):
    ws, other = make_workspace("acme"), make_workspace("other")
    ours = _events(3, workspace_id=ws.id)
    theirs = _events(2, workspace_id=other.id)
    audit_seals.seal()
    _, coll = _coll()
    expected = coll.count_documents({"workspace_id": ws.id})  # ours, and the workspace's own creation
    assert expected == len(ours) + 1
    result = cli("audit", "verify", "--workspace", "acme")
    assert result.exit_code == 0 and f"verified {expected} events in 1 seals" in result.output, result.output
    coll.update_one({"_id": theirs[0]["_id"]}, {"$set": {"note": "x"}})
    assert cli("audit", "verify", "--workspace", "acme").exit_code == 0
    assert cli("audit", "verify", "--workspace", "other").exit_code == 1
    coll.update_one({"_id": ours[0]["_id"]}, {"$set": {"note": "x"}})
    assert cli("audit", "verify", "--workspace", "acme").exit_code == 1
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    result = cli("audit", "verify", "--since", future)
    assert result.exit_code == 0 and "verified 0 events in 0 seals" in result.output
    # Bad input: a clear message, nothing verified.
    for args in (("--since", "yesterday"), ("--since", "2026-13-45"), ("--workspace", "nope")):
        result = cli("audit", "verify", *args)
        assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_unreachable_store_is_not_verified(cli, app):
    _events(2)
    audit_seals.seal()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.extensions["mc_audit"] = AuditStore(mongo_uri=f"mongodb://127.0.0.1:{port}/audit?directConnection=true",
                                            embedded_dir=app.config["AUDIT_EMBEDDED_DIR"],
                                            fallback_path=app.config["AUDIT_FALLBACK_PATH"], timeout_ms=300)
    result = cli("audit", "verify")
    assert result.exit_code == 2, result.output
    assert "NOT VERIFIED" in result.output and "verified 2" not in result.output
    assert cli("audit", "seal").exit_code == 2
    check = db.session.scalars(select(AuditVerification).order_by(AuditVerification.id.desc())).first()
    assert check.outcome == "unavailable"


def test_fallback_flush_is_sealed_after_its_arrival(app, cli, tmp_path):
    """Events written while the store was down arrive at flush time, after seals already taken."""
    store = audit.get_store()
    early = _events(2)
    store._skip_store_until = float("inf")      # the store "is down": events go to the fallback file
    buffered = _events(3, prefix="during.outage")
    assert store.fallback_size() > 0
    audit_seals.seal()                          # seals the two that made it
    store._skip_store_until = 0.0
    _events(1, prefix="after.outage")
    assert store.flush_fallback() == 3
    second = audit_seals.seal()
    assert second.events == 4
    leaves = [json.loads(line)[0] for line in second.leaves.splitlines()]
    assert set(leaves) >= {e["_id"] for e in buffered}
    assert not {e["_id"] for e in early} & set(leaves)
    result = cli("audit", "verify")
    assert result.exit_code == 0 and "verified 6 events in 2 seals" in result.output


def test_grace_keeps_fresh_arrivals_for_the_next_seal(app):
    _events(2)
    app.config["AUDIT_SEAL_GRACE_SECONDS"] = 3600
    assert audit_seals.seal() is None or audit_seals.last_seal().events == 0
    app.config["AUDIT_SEAL_GRACE_SECONDS"] = 0
    assert audit_seals.seal().events == 2


def test_concurrent_sealers_never_fork_the_chain(app):
    _events(20)
    errors = []

    def run():
        try:
            with app.app_context():
                audit_seals.seal()
                db.session.remove()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    positions = db.session.scalars(select(AuditSeal.position).order_by(AuditSeal.position)).all()
    assert positions == list(range(1, len(positions) + 1))
    assert audit_seals.verify().outcome == "verified"


def test_periodic_jobs_on_a_real_worker(app):
    get_queue("default").empty()
    _events(3)
    enqueue_job(seal_audit, queue="default", retries=0)
    enqueue_job(seal_audit, queue="default", retries=0)   # not due again: no second seal
    enqueue_job(verify_audit_seals, queue="default", retries=0)
    SimpleWorker([get_queue("default")], connection=redis_connection()).work(burst=True)
    db.session.expire_all()
    assert db.session.scalar(select(db.func.count(AuditSeal.id))) == 1
    check = db.session.scalars(select(AuditVerification)).one()
    assert check.source == "nightly" and check.outcome == "verified" and check.events == 3


def test_expired_events_are_not_reported_missing(app, cli):
    old = audit.record("old.event", object_type="thing", object_id=1)
    _, coll = _coll()
    coll.update_one({"_id": old["_id"]}, {"$set": {"ts": datetime.now(UTC) - timedelta(days=200)}})
    _events(1)
    audit_seals.seal()
    assert audit.get_store().purge_expired() == 1
    result = cli("audit", "verify")
    assert result.exit_code == 0, result.output
    assert "1 past retention" in result.output


def test_diagnostics_show_last_seal_and_warn_on_failed_verification(client, cli):
    from tests.factories import make_user

    make_user("root@example.com", superadmin=True)
    client.login("root@example.com")
    html = client.get("/admin/diagnostics").get_data(as_text=True)
    assert "Last audit seal" in html and "none yet" in html and "No audit seal yet" in html
    events = _events(2)
    row = audit_seals.seal()
    assert cli("audit", "verify").exit_code == 0
    html = client.get("/admin/diagnostics").get_data(as_text=True)
    # (the seal also holds the sign-in and account events of this test)
    assert f"#{row.id}" in html and row.root[:16] in html and f"verified {row.events} events in 1 seals" in html
    assert "audit verification failed" not in html
    _, coll = _coll()
    coll.delete_one({"_id": events[0]["_id"]})
    assert cli("audit", "verify").exit_code == 1
    html = client.get("/admin/diagnostics").get_data(as_text=True)
    assert "The last audit verification failed" in html and events[0]["_id"] in html
    body = client.get("/admin/diagnostics", headers={"Accept": "application/json"}).get_json()
    assert body["audit_seals"]["ok"] is False and body["audit_seals"]["verification"]["outcome"] == "failed"
    assert body["audit_seals"]["seal"]["id"] == row.id


def test_a_backlog_is_cut_into_seals_at_a_change_of_arrival(cli, monkeypatch):
    monkeypatch.setattr(audit_seals, "MAX_SEAL_EVENTS", 3)
    store, coll = _coll()
    events = _events(10)
    # Two events share one arrival millisecond: a cut never separates them.
    same = coll.find_one({"_id": events[3]["_id"]})["arrived"]
    coll.update_one({"_id": events[4]["_id"]}, {"$set": {"arrived": same}})
    result = cli("audit", "seal")
    assert result.exit_code == 0, result.output
    seals = db.session.scalars(select(AuditSeal).order_by(AuditSeal.position)).all()
    assert len(seals) >= 3 and sum(s.events for s in seals) == 10
    assert result.output.count("[audit-seal]") == len(seals)
    for seal in seals:
        ids = [json.loads(line)[0] for line in seal.leaves.splitlines()]
        assert (events[3]["_id"] in ids) == (events[4]["_id"] in ids)
    assert cli("audit", "verify").exit_code == 0
