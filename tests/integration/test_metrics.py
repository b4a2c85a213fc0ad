"""/metrics: Prometheus text with the aggregates, token or loopback access, multiprocess mode, and
the shipped Grafana dashboards / Prometheus config checked against what we export."""
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from extensions import db
from services import core_probe, metrics
from tests.campaign_factories import make_campaign
from tests.factories import make_user, make_workspace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def scrape(client, **kwargs):
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/plain"
    return list(text_string_to_metric_families(response.get_data(as_text=True)))


def samples(families):
    out = {}
    for family in families:
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(found, name, **labels):
    for s in found.get(name, []):
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"{name}{labels} not exported")


def test_metrics_carry_the_aggregates(client, monkeypatch):
    monkeypatch.setitem(core_probe.metrics_cache, "at", 0.0)  # no Core answer cached by an earlier test's Core
    ws = make_workspace("acme", "Acme Ltd")
    author = make_user("author@acme.test", workspace=ws, role="author")
    make_campaign(ws, author, status="Sending", moderation="approved", sent_count=70, delivered_count=50,
                  failed_count=5, inflight_count=15)
    make_campaign(ws, author, status="Done", moderation="approved", sent_count=10, delivered_count=10)
    found = samples(scrape(client))
    assert value(found, "mc_campaigns", status="Sending") == 1
    assert value(found, "mc_campaigns", status="Pending") == 0
    assert value(found, "mc_messages_total", status="sent") == 80
    assert value(found, "mc_messages_total", status="delivered") == 60
    assert value(found, "mc_messages_total", status="failed") == 5
    assert value(found, "mc_messages_inflight") == 15
    for queue in ("uploads", "dispatch", "exports", "default"):
        assert value(found, "mc_queue_depth", queue=queue) >= 0
    assert value(found, "mc_audit_fallback_bytes") == 0
    assert value(found, "mc_audit_dropped_events_total") == 0
    assert value(found, "mc_audit_store_up") == 1
    assert value(found, "mc_core_up") == 0  # no Core in the suite: reported, not an error page
    assert value(found, "mc_scrape_errors", part="database") == 0
    assert value(found, "mc_core_slow_total", operation="health") >= 0  # the gateway's series are there too


def test_metrics_token_is_required_when_set(client, app, monkeypatch):
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "s3cret-scrape-token")
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-scrape-token"}).status_code == 403
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"},
                    environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert ok.status_code == 200 and b"mc_campaigns" in ok.data


def test_without_token_only_local_unproxied_scrapes(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 404
    assert client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics").status_code == 200


MULTIPROC_CHILD = """
import sys
from gateway.client import CORE_SLOW
from services.metrics import observe_job
CORE_SLOW.labels("health").inc()
observe_job("build_export", "exports", 0.3)
"""

MULTIPROC_SCRAPE = """
from app import create_app
from services import core_probe, metrics
app = create_app({"TESTING": True, "SECRET_KEY": "x", "MC_DATA_DIR": sys.argv[1]})
with app.app_context():
    sys.stdout.write(metrics.render(app).decode())
"""


def test_multiprocess_mode_merges_every_process(tmp_path, app):
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(mp_dir), PYTHONPATH=ROOT,
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"])
    for _ in range(2):  # two "gunicorn workers"
        subprocess.run([sys.executable, "-c", "import sys\n" + MULTIPROC_CHILD], env=env, check=True, cwd=ROOT)
    out = subprocess.run([sys.executable, "-c", "import sys\n" + MULTIPROC_SCRAPE, str(tmp_path)], env=env,
                         check=True, cwd=ROOT, capture_output=True, text=True).stdout
    found = samples(text_string_to_metric_families(out))
    assert value(found, "mc_core_slow_total", operation="health") == 2
    assert value(found, "mc_job_duration_seconds_count", job_name="build_export", queue="exports") == 2
    assert "mc_campaigns" in found


# --- the shipped Grafana dashboards and Prometheus config ---------------------------------------

def _exported_names(client):
    names = set(samples(scrape(client)))
    for family in metrics.EXPORTED:  # labelled series without observations yet have no samples
        names.add(family)
        if not family.endswith("_total"):
            names.update(family + s for s in ("_bucket", "_sum", "_count", "_created"))
    return names


def _queries():
    files = sorted(glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json")))
    assert len(files) >= 2
    for path in files:
        with open(path, encoding="utf-8") as fh:
            dash = json.load(fh)
        assert dash["uid"] and dash["title"] and dash["panels"]
        for panel in dash["panels"]:
            assert panel["targets"], f"{path}: panel {panel['title']!r} has no query"
            for target in panel["targets"]:
                yield os.path.basename(path), panel["title"], target["expr"]


def test_every_grafana_query_names_a_metric_we_export(client):
    exported = _exported_names(client)
    problems, seen = [], set()
    for name, title, expr in _queries():
        used = set(re.findall(r"\b(mc_[a-z0-9_]+)", expr))
        if not used:
            problems.append(f"{name} / {title}: query names no mc_ metric: {expr}")
        for metric in used - exported:
            problems.append(f"{name} / {title}: {metric} is not exported")
        seen |= used
    assert not problems, "\n".join(problems)
    # The dashboards cover what the issue asks for: ESME throughput, queue depth, latency, errors.
    for needed in ("mc_core_channel_throughput_tps", "mc_queue_depth", "mc_core_request_seconds_bucket",
                   "mc_messages_total", "mc_core_slow_total", "mc_audit_fallback_bytes"):
        assert needed in seen, needed


def test_monitoring_tab_embeds_the_shipped_dashboards():
    from blueprints.monitoring import DASHBOARDS, WORKSPACE_DASHBOARD

    uids = set()
    for path in glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json")):
        with open(path, encoding="utf-8") as fh:
            uids.add(json.load(fh)["uid"])
    assert set(DASHBOARDS) | {WORKSPACE_DASHBOARD[0]} <= uids


def test_prometheus_config_scrapes_metrics_with_a_token():
    with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml"), encoding="utf-8") as fh:
        text = fh.read()
    assert "metrics_path: /metrics" in text and "type: Bearer" in text and "job_name: message-center" in text
    provisioning = glob.glob(os.path.join(ROOT, "deploy", "grafana", "provisioning", "*", "*.yml"))
    assert any("uid: mc-prometheus" in open(p, encoding="utf-8").read() for p in provisioning)
    for path in glob.glob(os.path.join(ROOT, "deploy", "grafana", "dashboards", "*.json")):
        with open(path, encoding="utf-8") as fh:
            assert '"uid": "mc-prometheus"' in fh.read()


@pytest.fixture(autouse=True)
def _no_leftover_token(app):
    app.config["METRICS_TOKEN"] = None
    yield
    db.session.rollback()
