"""Evidence packs: the API 202 → status → download flow on a real RQ worker, the ZIP unzipped and
its manifest checked like `sha256sum -c`, masking with and without numbers.view_full, the
permission table (an author gets 403), foreign and bad ids (JSON 404s), the browser flow from the
campaign page, expiry (410), audit events with their seal ids, and a re-run after a crash."""
import hashlib
import io
import json
import os
import zipfile
from datetime import timedelta

import pytest
from rq import SimpleWorker
from sqlalchemy import update

import audit
from extensions import db, redis_connection
from jobs import get_queue
from jobs.evidence import expire_evidence_packs
from models import Recipient, Upload, utcnow
from models.evidence import EvidencePack
from services import audit_seals, evidence, file_store, tokens
from tests.campaign_factories import bind_approval, make_campaign, make_sender
from tests.factories import make_user, make_workspace

NUMBERS = [f"49170000000{i:02d}" for i in range(1, 11)]


@pytest.fixture(autouse=True)
def _setup(app):
    app.config["AUDIT_SEAL_GRACE_SECONDS"] = 0
    get_queue("exports").empty()
    yield
    get_queue("exports").empty()


def run_jobs():
    SimpleWorker([get_queue("exports")], connection=redis_connection()).work(burst=True)


@pytest.fixture
def world():
    ws = make_workspace("acme", "Acme Ltd")
    author = make_user("author@acme.test", workspace=ws, role="author")
    moderator = make_user("mod@acme.test", workspace=ws, role="moderator")
    viewer = make_user("viewer@acme.test", workspace=ws, role="admin", can_view_numbers=True)
    rival = make_workspace("rival", "Rival")
    rival_author = make_user("author@rival.test", workspace=rival, role="author")
    sender = make_sender(ws, created_by=author)
    campaign = make_campaign(ws, author, status="Done", moderation="approved", sender=sender, name="Spring sale")
    campaign.moderated_by_id, campaign.moderation_note = moderator.id, "checked the text"
    now = utcnow()
    for i, number in enumerate(NUMBERS):
        db.session.add(Recipient(campaign_id=campaign.id, number=number, ctn_hash=f"h{i}",
                                 state=("delivered", "failed", "sent")[i % 3],
                                 smpp_status="0x0000000B" if i % 3 == 1 else None,
                                 submitted_at=now - timedelta(minutes=5), delivered_at=now if i % 3 == 0 else None))
    campaign.recipients_count = len(NUMBERS)
    db.session.add(Upload(workspace_id=ws.id, campaign_id=campaign.id, created_by_id=author.id, source="browser",
                          original_name="list.csv", spool_path="/nonexistent", state="done", bytes_total=140,
                          lines=10, accepted=10, sha256="ab" * 32))
    db.session.commit()
    bind_approval(campaign)
    audit.record("campaigns.created", workspace_id=ws.id, object_type="campaign", object_id=campaign.id,
                 actor_id=author.id, actor_email=author.email, actor_role="author", after={"name": "Spring sale"})
    audit.record("campaigns.approve", workspace_id=ws.id, object_type="campaign", object_id=campaign.id,
                 actor_id=moderator.id, actor_email=moderator.email, actor_role="moderator",
                 note="checked the text", after={"fingerprint": campaign.approval_fingerprint})
    audit_seals.seal()
    audit.record("campaigns.finish", workspace_id=ws.id, object_type="campaign", object_id=campaign.id,
                 actor_email="system", actor_role="system")  # not sealed yet
    foreign = make_campaign(rival, rival_author, status="Done", moderation="approved", name="Theirs")
    tok = {u: tokens.create_token(u, ws, "t")[1] for u in (author, moderator, viewer)}
    return {"ws": ws, "author": author, "moderator": moderator, "viewer": viewer, "campaign": campaign,
            "foreign": foreign, "h": {u.email: {"Authorization": f"Bearer {t}"} for u, t in tok.items()}}


def _unzip(data):
    zf = zipfile.ZipFile(io.BytesIO(data))
    return {name: zf.read(name) for name in zf.namelist()}


def check_manifest(files):
    """What an auditor does: every file listed in manifest.json and SHA256SUMS has that SHA-256."""
    manifest = json.loads(files["manifest.json"])
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) | {"manifest.json", "SHA256SUMS"} == set(files)
    for name, entry in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"], name
        assert len(files[name]) == entry["bytes"]
    sums = files["SHA256SUMS"].decode().splitlines()
    assert len(sums) == len(files) - 1  # every file but SHA256SUMS itself, manifest.json included
    for line in sums:  # `sha256sum -c` format: "<hex>  <name>"
        digest, name = line.split("  ", 1)
        assert hashlib.sha256(files[name]).hexdigest() == digest, f"{name}: FAILED"
    return manifest


def stored_files(app):
    """Complete and incomplete files of either file store (evidence directory, database rows)."""
    from models.files import StoredFile

    path = os.path.join(app.config["MC_DATA_DIR"], "evidence")
    local = os.listdir(path) if os.path.isdir(path) else []
    return len(local) + db.session.scalar(db.select(db.func.count(StoredFile.id)))


def _api_pack(client, world, email):
    h = world["h"][email]
    created = client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence", headers=h)
    assert created.status_code == 202, created.get_data(as_text=True)
    body = created.get_json()
    assert body["state"] == "queued" and body["download_url"] is None and body["sha256"] is None
    assert created.headers["Location"].endswith(body["status_url"])
    run_jobs()
    status = client.get(body["status_url"], headers=h)
    assert status.status_code == 200
    doc = status.get_json()
    assert doc["state"] == "done" and doc["download_url"] and len(doc["sha256"]) == 64
    download = client.get(doc["download_url"], headers=h)
    assert download.status_code == 200 and download.mimetype == "application/zip"
    data = download.get_data()
    download.close()
    assert hashlib.sha256(data).hexdigest() == doc["sha256"]
    return doc, _unzip(data)


def test_api_flow_manifest_verifies_and_numbers_are_masked(client, world, audit_events):
    doc, files = _api_pack(client, world, "mod@acme.test")
    manifest = check_manifest(files)
    for name in ("recipients.csv", "manifest.json", "audit-events.jsonl"):  # the check catches an edit
        with pytest.raises(AssertionError):
            check_manifest({**files, name: files[name].replace(b"0", b"1", 1)})
    assert manifest["numbers"] == "masked" and manifest["recipients"] == len(NUMBERS)
    assert manifest["campaign_id"] == world["campaign"].id
    blob = b"".join(files.values())
    assert not any(n.encode() in blob for n in NUMBERS)  # no full number anywhere in the pack
    rows = files["recipients.csv"].decode().splitlines()
    assert rows[0] == "number,status,smpp_code,submitted_at,delivered_at" and len(rows) == 11
    assert all(r.startswith("•") for r in rows[1:])

    campaign = json.loads(files["campaign.json"])
    assert campaign["approval"]["fingerprint"] == world["campaign"].approval_fingerprint
    assert campaign["approval"]["basis_matches_fingerprint"] is True
    assert campaign["approval"]["campaign_still_matches"] is True
    assert campaign["smpp"]["values"]["saddr"] == "ACME" and campaign["schedule"]["mode"] == "OnDemand"
    assert campaign["campaign"]["moderated_by"]["email"] == "mod@acme.test"
    uploads = json.loads(files["uploads.json"])
    assert uploads[0]["sha256"] == "ab" * 32 and uploads[0]["accepted"] == 10
    delivery = json.loads(files["delivery.json"])
    assert delivery["by_state"] == {"delivered": 4, "failed": 3, "sent": 3}
    assert delivery["by_smpp_code"] == {"0x0000000B": 3, "none": 7} and delivery["recipients"] == 10

    events = [json.loads(line) for line in files["audit-events.jsonl"].decode().splitlines()]
    by_action = {e["action"]: e for e in events}
    first_seal = audit_seals.last_seal()
    assert by_action["campaigns.approve"]["seal_id"] == first_seal.id
    assert by_action["campaigns.finish"]["seal_id"] is None  # arrived after the last seal
    # Each event's sha256 is the leaf its seal holds.
    leaves = {json.loads(line)[0]: json.loads(line)[4] for line in first_seal.leaves.splitlines()}
    assert leaves[by_action["campaigns.approve"]["_id"]] == by_action["campaigns.approve"]["sha256"]
    people = json.loads(files["people.json"])
    approve = [a for a in people["actions"] if a["action"] == "campaigns.approve"][0]
    assert approve["actor_email"] == "mod@acme.test" and approve["note"] == "checked the text" and approve["at"]
    assert {a["action"] for a in people["actions"]} >= {"campaigns.created", "campaigns.approve"}
    seals = json.loads(files["seals.json"])
    assert [s["root"] for s in seals["seals"]] == [first_seal.root]

    requested, = audit_events(action="evidence.requested")
    assert requested["actor_email"] == "mod@acme.test" and requested["after"]["unmasked"] is False
    completed, = audit_events(action="evidence.completed")
    assert completed["after"]["sha256"] == doc["sha256"]
    downloaded, = audit_events(action="evidence.downloaded")
    assert downloaded["object_id"] == str(doc["id"])


def test_numbers_view_full_gets_full_numbers_and_others_may_not_download_them(client, world):
    doc, files = _api_pack(client, world, "viewer@acme.test")
    manifest = check_manifest(files)
    assert manifest["numbers"] == "full"
    rows = files["recipients.csv"].decode().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == sorted(NUMBERS)
    refused = client.get(doc["download_url"], headers=world["h"]["mod@acme.test"])
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"


def test_author_may_not_build_or_read_packs(client, world):
    h = world["h"]["author@acme.test"]
    response = client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence", headers=h)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert db.session.query(EvidencePack).count() == 0
    client.login("author@acme.test")
    assert client.post(f"/w/acme/campaigns/{world['campaign'].id}/evidence").status_code == 403
    page = client.get(f"/w/acme/campaigns/{world['campaign'].id}").get_data(as_text=True)
    assert "Build evidence pack" not in page
    pack = evidence.request_pack(world["ws"], world["campaign"].id, world["moderator"].membership_in(world["ws"].id),
                                 world["moderator"])
    assert client.get(f"/w/acme/evidence/{pack.id}").status_code == 403
    assert client.get(f"/api/v1/evidence/{pack.id}", headers=h).status_code == 403


def test_foreign_and_bad_ids_are_json_errors(client, world):
    h = world["h"]["mod@acme.test"]
    for url in (f"/api/v1/campaigns/{world['foreign'].id}/evidence", "/api/v1/campaigns/999999/evidence",
                f"/api/v1/campaigns/{2**63}/evidence"):
        response = client.post(url, headers=h)
        assert response.status_code == 404, url
        assert response.get_json()["error"]["code"] == "not_found"
    for url in ("/api/v1/evidence/999999", f"/api/v1/evidence/{2**31}", f"/api/v1/evidence/{10**30}",
                "/api/v1/evidence/abc", "/api/v1/evidence/-1", "/api/v1/evidence/999999/download"):
        response = client.get(url, headers=h)
        assert response.status_code == 404, url
        assert response.get_json()["error"]["code"] == "not_found", url
    bad = client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence", headers=h, json={"unmasked": True})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"]
    bad = client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence", headers=h, data="[1]",
                      content_type="application/json")
    assert bad.status_code == 400
    assert client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence").status_code == 401
    assert db.session.query(EvidencePack).count() == 0
    # Another workspace's pack is a 404, in the API and in the pages.
    rival_admin = make_user("admin@rival.test", workspace=world["foreign"].workspace, role="admin")
    theirs = evidence.request_pack(world["foreign"].workspace, world["foreign"].id,
                                   rival_admin.membership_in(world["foreign"].workspace_id), rival_admin)
    assert client.get(f"/api/v1/evidence/{theirs.id}", headers=h).status_code == 404
    client.login("mod@acme.test")
    assert client.get(f"/w/acme/evidence/{theirs.id}").status_code == 404
    assert client.get(f"/w/acme/evidence/{theirs.id}/download").status_code == 404
    assert client.post(f"/w/acme/campaigns/{world['foreign'].id}/evidence").status_code == 404


def test_browser_flow_from_the_campaign_page(client, world):
    client.login("mod@acme.test")
    page = client.get(f"/w/acme/campaigns/{world['campaign'].id}").get_data(as_text=True)
    assert "Build evidence pack" in page
    response = client.post(f"/w/acme/campaigns/{world['campaign'].id}/evidence")
    assert response.status_code == 302
    pack = db.session.query(EvidencePack).one()
    assert response.headers["Location"].endswith(f"/w/acme/evidence/{pack.id}")
    assert "being built" in client.get(f"/w/acme/evidence/{pack.id}").get_data(as_text=True)
    assert client.get(f"/w/acme/evidence/{pack.id}/download").status_code == 409
    run_jobs()
    page = client.get(f"/w/acme/evidence/{pack.id}").get_data(as_text=True)
    assert "Download ZIP" in page
    db.session.refresh(pack)
    assert pack.sha256 in page
    download = client.get(f"/w/acme/evidence/{pack.id}/download")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    check_manifest(_unzip(download.get_data()))
    download.close()
    assert f"Evidence pack #{pack.id}" in client.get(f"/w/acme/campaigns/{world['campaign'].id}").get_data(as_text=True)


def test_expired_pack_is_removed_and_answers_410(client, world):
    doc, _ = _api_pack(client, world, "mod@acme.test")
    pack = db.session.get(EvidencePack, doc["id"])
    path = pack.path
    assert file_store.exists(path)
    db.session.execute(update(EvidencePack).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    expire_evidence_packs()
    assert not file_store.exists(path)
    response = client.get(doc["download_url"], headers=world["h"]["mod@acme.test"])
    assert response.status_code == 410 and response.get_json()["error"]["code"] == "export_expired"
    assert client.get(doc["status_url"], headers=world["h"]["mod@acme.test"]).get_json()["state"] == "expired"


def test_rerun_after_a_crash_rewrites_the_same_pack(app, client, world, monkeypatch):
    before = stored_files(app)
    pack = evidence.request_pack(world["ws"], world["campaign"].id, world["viewer"].membership_in(world["ws"].id),
                                 world["viewer"])
    calls = {"n": 0}
    original = evidence._write_recipients

    def crash_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("worker killed mid-pack")
        return original(*args, **kwargs)

    monkeypatch.setattr(evidence, "_write_recipients", crash_once)
    with pytest.raises(RuntimeError):
        evidence.build(pack.id)
    db.session.refresh(pack)
    assert pack.state == "running" and pack.path is None   # the half-written file is never visible
    assert stored_files(app) == before
    evidence.build(pack.id)  # what RQ's retry does
    db.session.refresh(pack)
    assert pack.state == "done" and stored_files(app) == before + 1
    with file_store.open_file(pack.path) as fh:
        data = fh.read()
    assert hashlib.sha256(data).hexdigest() == pack.sha256
    check_manifest(_unzip(data))


def test_unreachable_audit_store_fails_the_pack_instead_of_leaving_events_out(app, world):
    from audit.store import AuditStore, AuditStoreUnavailable

    pack = evidence.request_pack(world["ws"], world["campaign"].id, world["moderator"].membership_in(world["ws"].id),
                                 world["moderator"])
    app.extensions["mc_audit"] = AuditStore(mongo_uri="mongodb://127.0.0.1:1/audit?directConnection=true",
                                            embedded_dir=app.config["AUDIT_EMBEDDED_DIR"],
                                            fallback_path=app.config["AUDIT_FALLBACK_PATH"], timeout_ms=300)
    with pytest.raises(AuditStoreUnavailable):
        evidence.build(pack.id)
    evidence.mark_failed(pack.id, "Evidence pack stopped after retries")
    db.session.refresh(pack)
    assert pack.state == "failed" and pack.path is None


def test_a_pack_built_on_a_worker_host_downloads_from_a_web_host_without_a_shared_disk(app, client, world, tmp_path,
                                                                                       monkeypatch):
    """FILE_STORE=database: the worker writes the ZIP into the main database, so a web host whose
    data directory is empty (another machine) serves it, hash and manifest intact."""
    monkeypatch.setitem(app.config, "FILE_STORE", "database")
    created = client.post(f"/api/v1/campaigns/{world['campaign'].id}/evidence", headers=world["h"]["mod@acme.test"])
    run_jobs()   # the "worker host"
    pack = db.session.get(EvidencePack, created.get_json()["id"])
    assert pack.state == "done" and pack.path.startswith("db:")
    monkeypatch.setitem(app.config, "MC_DATA_DIR", str(tmp_path / "web-host"))   # the "web host": an empty disk
    download = client.get(f"/api/v1/evidence/{pack.id}/download", headers=world["h"]["mod@acme.test"])
    assert download.status_code == 200 and int(download.headers["Content-Length"]) == pack.size
    data = download.get_data()
    download.close()
    assert hashlib.sha256(data).hexdigest() == pack.sha256
    check_manifest(_unzip(data))
    assert not os.path.exists(tmp_path / "web-host" / "evidence")
