"""Issue 15 "Done when": each fault driven through the reference Core (real HTTPS) and real
`rq worker` + `rq cron` processes (bench/faults.py's scenarios, shorter): every campaign reaches
Done, Failed or a system pause with a visible reason within a bounded time, with no duplicate,
counters that add up, at most 3 submissions per recipient under throttling, and a Core outage
logged once. The PostgreSQL connection cut runs on PostgreSQL only."""
import os

import pytest

from bench import faults as bench
from coresim.testing import sim_session, start_core

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    server = start_core(str(tmp_path_factory.mktemp("faults-workers-core")), latency_seconds=0.3,
                        failure_ratio=0.02)
    yield server
    server.stop()


@pytest.fixture
def drill(app, core, tmp_path):
    env = dict(os.environ, MC_DATA_DIR=app.config["MC_DATA_DIR"], SECRET_KEY=app.config["SECRET_KEY"],
               DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"], REDIS_URL=app.config["REDIS_URL"],
               CORE_URL=core.url, CORE_CA=f"{core.certs_dir}/ca.pem", CORE_CLIENT_CERT=f"{core.certs_dir}/client.pem",
               CORE_CLIENT_KEY=f"{core.certs_dir}/client.key")
    with sim_session(core.certs_dir) as sim:
        def run(scenario, **kwargs):
            kwargs.setdefault("recipients", 600)
            kwargs.setdefault("timeout", 150)
            return bench.run(scenario, env=env, core_url=core.url, sim=sim, log_dir=str(tmp_path / scenario), **kwargs)
        yield run


def assert_clean(outcome):
    assert outcome.duplicates == 0, outcome
    assert outcome.counters_add_up, outcome
    assert outcome.notes["tracebacks"] == 0, outcome


def test_worker_sigkill_mid_submit_the_campaign_finishes_with_every_report(drill):
    outcome = drill("worker_kill")
    assert outcome.status == "Done", outcome
    assert outcome.notes["accepted_at_kill"] < outcome.recipients and outcome.accepted == outcome.recipients
    assert_clean(outcome)


def test_postgres_connections_cut_between_submit_and_record_the_campaign_finishes(drill, app):
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("pg_terminate_backend: PostgreSQL only")
    outcome = drill("pg_cut")
    assert outcome.status == "Done" and outcome.notes["backends_cut"] > 0, outcome
    assert outcome.duplicates == 0 and outcome.counters_add_up, outcome


def test_per_message_throttling_at_most_three_submissions_per_recipient(drill):
    """The 2-minute throttle and the 30 s first resubmission scaled by 1/10 (12 s, 3 s)."""
    outcome = drill("throttle", throttle_seconds=12)
    assert outcome.status == "Done", outcome
    assert 1 < outcome.max_submissions <= 3, outcome
    assert_clean(outcome)


def test_core_outage_one_down_one_up_line_no_claims_while_down(drill):
    outcome = drill("core_down", down_seconds=6)
    assert outcome.status == "Done", outcome
    assert (outcome.core_down_lines, outcome.core_up_lines) == (1, 1), outcome
    assert outcome.claimed_while_down == 0, outcome
    assert_clean(outcome)


def test_batch_level_400_fails_the_campaign_with_a_reason(drill):
    outcome = drill("refuse_4xx")
    assert outcome.status == "Failed" and "HTTP 400" in outcome.reason, outcome
    # DISPATCH_MAX_REFUSALS = 3; the second worker's batch may have been in flight at the third.
    assert 3 <= outcome.job_errors <= 4 and outcome.accepted == 0 and outcome.seconds < 60, outcome
    assert_clean(outcome)


def test_blanket_rejection_is_paused_by_the_breaker(drill):
    outcome = drill("reject_all", recipients=1000)
    assert outcome.status == "Paused", outcome
    assert outcome.reason.startswith("ESME_RSUBMITFAIL for the last "), outcome
    assert outcome.max_submissions == 1 and outcome.seconds < 60, outcome
    assert_clean(outcome)


def test_throttled_for_ever_is_paused_after_the_give_up_time(drill):
    outcome = drill("give_up", recipients=300)
    assert outcome.status == "Paused" and "nothing accepted for 0.1 minutes" in outcome.reason, outcome
    assert outcome.max_submissions <= 3
    assert_clean(outcome)
