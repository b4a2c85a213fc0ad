"""The periodic jobs, declared as data for `rq cron jobs/cron.py` (one instance per installation).

Ticks go to the `default` queue so that the jobs they schedule (`dispatch`, `uploads`, `exports`),
which workers take first, never wait behind a backlog of ticks.
"""
from rq import cron

from jobs.audit_seals import seal_audit, verify_audit_seals
from jobs.dispatch import dispatch_tick, poll_delivery_reports
from jobs.evidence import expire_evidence_packs
from jobs.exports import expire_exports
from jobs.gdpr import anonymise_numbers
from jobs.maintenance import flush_audit_fallback, purge_audit, recover_stalled_work
from jobs.uploads import sweep_uploads

cron.register(dispatch_tick, queue_name="default", interval=2, job_timeout=120)
cron.register(poll_delivery_reports, queue_name="default", interval=2, job_timeout=120)
cron.register(flush_audit_fallback, queue_name="default", interval=60)
cron.register(purge_audit, queue_name="default", cron="17 3 * * *")
# Seals every AUDIT_SEAL_MINUTES (the job decides); the last day's seals are re-verified nightly.
cron.register(seal_audit, queue_name="default", interval=60, job_timeout=600)
cron.register(verify_audit_seals, queue_name="default", cron="41 2 * * *", job_timeout=3600)
cron.register(expire_exports, queue_name="default", interval=300)
cron.register(expire_evidence_packs, queue_name="default", interval=300)
cron.register(anonymise_numbers, queue_name="default", interval=600, job_timeout=300)
cron.register(sweep_uploads, queue_name="default", interval=60)
# A job whose worker died is retried within STALLED_JOB_SECONDS + 15 s (docs/operations.md).
cron.register(recover_stalled_work, queue_name="default", interval=15)
