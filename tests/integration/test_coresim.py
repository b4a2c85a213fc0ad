"""The reference Core (coresim) over real TLS sockets: client certificates required, idempotent
batches, message de-duplication, delivery reports, metrics, and `python -m coresim`."""
import os
import socket
import subprocess
import sys
import time

import pytest
import requests

from coresim.testing import sim_session, start_core
from services import certs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def message(mid, destination="491701234567", **overrides):
    return {"id": str(mid), "destination": destination, "saddr": "ACME", "ston": 5, "snpi": 0, "dton": 1, "dnpi": 1,
            "text": "Your code is 1234", "data_coding": 0, **overrides}


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("coresim"))
    server = start_core(data_dir, latency_seconds=0.2, failure_ratio=0.0, seed=7)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certs_dir(core):
    return core.certs_dir


@pytest.fixture
def sim(core, certs_dir):
    session = sim_session(certs_dir)
    session.post(core.url + "/_sim/reset").raise_for_status()
    yield session
    session.close()


def submit(sim, core, key, messages):
    return sim.post(core.url + "/v1/batches", json={"messages": messages}, headers={"Idempotency-Key": key})


def stats(sim, core):
    return sim.get(core.url + "/_sim/stats").json()


# --- mutual TLS ----------------------------------------------------------------------------

def test_client_without_certificate_fails_the_handshake(core, certs_dir, sim):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(core.url + "/v1/health", verify=os.path.join(certs_dir, "ca.pem"), timeout=5)
    # the _sim endpoints are behind the same handshake
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(core.url + "/_sim/stats", verify=os.path.join(certs_dir, "ca.pem"), timeout=5)


def test_client_certificate_of_another_ca_is_refused(core, certs_dir, sim, tmp_path):
    other = str(tmp_path / "other")
    certs.generate_dev(other)
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(core.url + "/v1/health", verify=os.path.join(certs_dir, "ca.pem"), timeout=5,
                     cert=(os.path.join(other, "client.pem"), os.path.join(other, "client.key")))
    assert stats(sim, core)["last_client_serial"] is None  # no /v1 request got through


def test_server_certificate_is_verified_by_host_name(core, sim):
    health = sim.get(f"https://localhost:{core.port}/v1/health", timeout=5).json()
    assert health["status"] == "ok" and health["schema_version"] == 1
    assert [c["name"] for c in health["channels"]] == ["esme-a", "esme-b"]


# --- batches -------------------------------------------------------------------------------

def test_replayed_idempotency_key_returns_the_same_answer_without_resending(core, sim):
    batch = [message(1, "491700000001"), message(2, "491700000002"), message(3, "99912345")]
    first = submit(sim, core, "key-1", batch)
    assert first.status_code == 200
    results = first.json()["results"]
    assert [(r["id"], r["accepted"], r["command_status"]) for r in results] == [
        ("1", True, "0x00000000"), ("2", True, "0x00000000"), ("3", False, "0x0000000B")]
    assert all(r["core_id"] for r in results[:2]) and results[2]["core_id"] is None
    assert stats(sim, core)["accepted"] == 2

    again = submit(sim, core, "key-1", batch)
    assert again.status_code == 200 and again.headers["Idempotency-Replayed"] == "true"
    assert again.content == first.content
    after = stats(sim, core)
    assert (after["accepted"], after["rejected"], after["replays"], after["duplicates_refused"]) == (2, 1, 1, 0)

    conflict = submit(sim, core, "key-1", batch[:1])
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"


def test_a_message_id_seen_before_is_not_sent_twice(core, sim):
    first = submit(sim, core, "key-a", [message("m1", "491700000001")]).json()["results"][0]
    second = submit(sim, core, "key-b", [message("m1", "491700000001"), message("m2", "491700000002")]).json()
    assert second["results"][0] == first  # same core_id, still accepted
    assert second["results"][1]["accepted"] is True
    s = stats(sim, core)
    assert (s["accepted"], s["duplicates_refused"], s["max_per_destination"]) == (2, 1, 1)


def test_rejected_messages_may_be_resubmitted(core, sim):
    sim.post(core.url + "/_sim/faults", json={"reject_code": "0x00000058"})
    r = submit(sim, core, "key-1", [message("t1")]).json()["results"][0]
    assert (r["accepted"], r["command_status"]) == (False, "0x00000058")
    sim.post(core.url + "/_sim/faults", json={"reject_code": None})
    r = submit(sim, core, "key-2", [message("t1")]).json()["results"][0]
    assert r["accepted"] is True
    assert stats(sim, core)["duplicates_refused"] == 0


def test_per_message_validation_codes(core, sim):
    batch = [message("a", "49170abc"), message("b", saddr=""), message("c", ston=9), message("d", dnpi=42),
             message("e", text="x" * 1531), message("f", text="ü" * 671, data_coding=8), message("g", data_coding=4),
             message("h", text="ü" * 670, data_coding=8)]
    codes = [r["command_status"] for r in submit(sim, core, "k", batch).json()["results"]]
    assert codes == ["0x0000000B", "0x0000000A", "0x00000048", "0x00000051", "0x00000001", "0x00000001",
                     "0x000000FF", "0x00000000"]


@pytest.mark.parametrize("body, headers, code", [
    ({"messages": []}, {"Idempotency-Key": "k"}, "invalid_request"),
    ({"messages": [{"id": "1"}]}, {"Idempotency-Key": "k"}, "invalid_request"),
    ({"messages": [message(1), message(1)]}, {"Idempotency-Key": "k"}, "invalid_request"),
    ({"messages": [message(1)]}, {}, "missing_idempotency_key"),
])
def test_malformed_batches_are_refused_whole(core, sim, body, headers, code):
    response = sim.post(core.url + "/v1/batches", json=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert stats(sim, core)["accepted"] == 0


def test_errors_are_json(core, sim):
    response = sim.get(core.url + "/v1/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    response = sim.post(core.url + "/v1/health")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"


# --- delivery reports and metrics ----------------------------------------------------------

def test_events_arrive_after_the_latency_in_cursor_order(core, sim):
    batch = [message("e1", "491700000001"), message("e2", "491700000002"), message("e3", "99800000003")]
    core_ids = {r["id"]: r["core_id"] for r in submit(sim, core, "k", batch).json()["results"]}
    assert sim.get(core.url + "/v1/events").json() == {"events": [], "next_cursor": "0"}
    deadline, events, cursor = time.time() + 5, [], "0"
    while len(events) < 3 and time.time() < deadline:
        page = sim.get(core.url + "/v1/events", params={"cursor": cursor, "limit": 2}).json()
        events += page["events"]
        cursor = page["next_cursor"]
        time.sleep(0.05)
    assert {e["id"]: e["status"] for e in events} == {"e1": "DELIVRD", "e2": "DELIVRD", "e3": "UNDELIV"}
    assert all(e["core_id"] == core_ids[e["id"]] for e in events)
    assert [int(e["cursor"]) for e in events] == sorted(int(e["cursor"]) for e in events)
    assert {e["error_code"] for e in events if e["status"] == "DELIVRD"} == {"000"}
    assert all(e["done_at"].endswith("Z") for e in events)
    assert sim.get(core.url + "/v1/events", params={"cursor": cursor}).json() == {"events": [], "next_cursor": cursor}


def test_failure_ratio_produces_failed_reports(core, sim):
    sim.post(core.url + "/_sim/config", json={"failure_ratio": 1.0, "latency_seconds": 0.05})
    submit(sim, core, "k", [message(f"f{i}", f"4917000000{i:02d}") for i in range(20)])
    deadline = time.time() + 5
    while stats(sim, core)["events"] < 20 and time.time() < deadline:
        time.sleep(0.05)
    events = sim.get(core.url + "/v1/events", params={"limit": 100}).json()["events"]
    assert len(events) == 20
    assert {e["status"] for e in events} <= {"UNDELIV", "EXPIRED", "REJECTD"}
    assert all(e["error_code"] != "000" for e in events)


def test_metrics_per_channel(core, sim):
    submit(sim, core, "k", [message(f"x{i}", f"4917000001{i:02d}") for i in range(10)])
    metrics = sim.get(core.url + "/v1/metrics").json()
    assert metrics["accepted_total"] == 10
    assert [c["name"] for c in metrics["channels"]] == ["esme-a", "esme-b"]
    assert sum(c["accepted_total"] for c in metrics["channels"]) == 10
    assert {"throughput_tps", "queue_depth", "latency_ms", "tps_limit"} <= set(metrics["channels"][0])


def test_thousands_of_messages_per_second_in_batches_of_500(core, sim):
    started = time.monotonic()
    for b in range(10):
        batch = [message(f"p{b}-{i}", f"49{b}{i:08d}") for i in range(500)]
        assert submit(sim, core, f"perf-{b}", batch).status_code == 200
    elapsed = time.monotonic() - started
    s = stats(sim, core)
    assert (s["accepted"], s["max_per_destination"]) == (5000, 1)
    assert elapsed < 5, f"5000 messages took {elapsed:.2f} s"  # ~0.7 s here; generous for CI


# --- the process -------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_m_coresim_serves_with_data_dir_certificates(tmp_path):
    certs.generate_dev(str(tmp_path / "certs"))
    port = _free_port()
    env = {**os.environ, "CORE_PORT": str(port), "MC_DATA_DIR": str(tmp_path), "PYTHONPATH": ROOT}
    proc = subprocess.Popen([sys.executable, "-m", "coresim"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        session = sim_session(str(tmp_path / "certs"))
        deadline = time.time() + 15
        while True:
            try:
                health = session.get(f"https://127.0.0.1:{port}/v1/health", timeout=2).json()
                break
            except requests.exceptions.ConnectionError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert health["status"] == "ok"
        assert os.path.exists(tmp_path / "coresim.db")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_python_m_coresim_without_certificates_explains(tmp_path):
    result = subprocess.run([sys.executable, "-m", "coresim", "--data-dir", str(tmp_path), "--port", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 2
    assert "flask certs dev" in result.stderr
