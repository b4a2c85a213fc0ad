"""The periodic jobs, declared as data for `rq cron jobs/cron.py` (one instance per installation)."""
from rq import cron

from jobs.maintenance import flush_audit_fallback, purge_audit

cron.register(flush_audit_fallback, queue_name="default", interval=60)
cron.register(purge_audit, queue_name="default", cron="17 3 * * *")
