"""GDPR mode's periodic job: anonymise the numbers of finished campaigns past their retention.

Idempotent and resumable (see services/gdpr.py): a run stops at its time budget and the next run
continues; rows already rewritten are skipped.
"""
import logging

from jobs import app_job
from services import gdpr

log = logging.getLogger("mc.jobs.gdpr")


@app_job
def anonymise_numbers():
    completed = gdpr.anonymise_due()
    if completed:
        log.info("gdpr: %s campaign(s) anonymised", completed)
    return completed
