"""The schedule `rq cron jobs/cron.py` loads: every periodic job is registered and importable."""
from rq.cron import CronScheduler

from extensions import redis_connection


def test_cron_config_registers_every_periodic_job(app):
    scheduler = CronScheduler(connection=redis_connection())
    scheduler.load_config_from_file("jobs/cron.py")
    registered = {job.func_name: job.queue_name for job in scheduler.get_jobs()}
    assert registered == {
        "jobs.dispatch.dispatch_tick": "default",
        "jobs.dispatch.poll_delivery_reports": "default",
        "jobs.maintenance.flush_audit_fallback": "default",
        "jobs.maintenance.purge_audit": "default",
        "jobs.exports.expire_exports": "default",
        "jobs.gdpr.anonymise_numbers": "default",
        "jobs.uploads.sweep_uploads": "default",
        "jobs.maintenance.recover_stalled_work": "default",
        "jobs.audit_seals.seal_audit": "default",
        "jobs.audit_seals.verify_audit_seals": "default",
        "jobs.evidence.expire_evidence_packs": "default",
    }
