"""The shipped Prometheus files: alert rules checked and unit-tested with Prometheus's own promtool
(Debian package `prometheus`; .ci/run installs it), every metric they name is one we export, and
the deploy files agree on the web port."""
import os
import re
import shutil
import subprocess

import pytest
import yaml

from services import metrics

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROM = os.path.join(ROOT, "deploy", "prometheus")
needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian: prometheus) not installed")


def promtool(*args):
    result = subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@needs_promtool
def test_promtool_checks_the_rules_and_the_scrape_config():
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")
    promtool("check", "config", "--syntax-only", "prometheus.yml")


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass():
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


def _rules():
    with open(os.path.join(PROM, "alerts.yml"), encoding="utf-8") as fh:
        return [rule for group in yaml.safe_load(fh)["groups"] for rule in group["rules"]]


def test_the_alerts_operations_lists_are_there_and_each_is_unit_tested():
    names = {rule["alert"] for rule in _rules()}
    for needed in ("CoreLatencyHigh", "CoreDown", "QueueBacklog", "AuditFallbackActive", "AuditFallbackOverflow",
                   "NoLiveWorker", "SchedulerMissing", "ClientCertificateExpiring"):
        assert needed in names
    with open(os.path.join(PROM, "alerts.test.yml"), encoding="utf-8") as fh:
        tests = yaml.safe_load(fh)["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert names == fired, names ^ fired  # every alert has a test where it fires
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "page", "critical"}
        assert rule["annotations"]["summary"]


def test_every_metric_an_alert_names_is_exported():
    exported = set()
    for family in metrics.EXPORTED:
        exported |= {family, *(family + s for s in ("_bucket", "_sum", "_count"))}
    for rule in _rules():
        for name in re.findall(r"\b(mc_[a-z0-9_]+)", rule["expr"]):
            assert name in exported, (rule["alert"], name)


def test_the_deploy_files_agree_on_the_web_port():
    def read(*parts):
        with open(os.path.join(ROOT, "deploy", *parts), encoding="utf-8") as fh:
            return fh.read()

    port = re.search(r"^PORT=(\d+)$", read("systemd", "env.example"), re.M).group(1)
    assert re.findall(r'targets: \["127\.0\.0\.1:(\d+)"\]', read("prometheus", "prometheus.yml")) == [port]
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", read("nginx.conf.example")) == [port]
