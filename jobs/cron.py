"""The periodic jobs, declared as data for `rq cron jobs/cron.py` (one instance per installation)."""
from rq import cron

from jobs.dispatch import dispatch_tick, poll_delivery_reports
from jobs.maintenance import flush_audit_fallback, purge_audit

cron.register(dispatch_tick, queue_name="dispatch", interval=2, job_timeout=120)
cron.register(poll_delivery_reports, queue_name="dispatch", interval=2, job_timeout=120)
cron.register(flush_audit_fallback, queue_name="default", interval=60)
cron.register(purge_audit, queue_name="default", cron="17 3 * * *")
from jobs.exports import expire_exports  # noqa: E402

cron.register(expire_exports, queue_name="exports", interval=300)
