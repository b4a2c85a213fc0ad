"""The RQ worker class Message Center runs: `rq worker -w jobs.worker.AppWorker …`.

It builds the Flask app once in the worker process, before any job runs, so every forked work
horse starts with it ready instead of paying for `create_app()` per job (about a second — far
too slow for a dispatch tick every two seconds). Building the app opens no connection, so
nothing is shared across the fork; each horse opens its own.
"""
from rq.worker import Worker

import jobs


class AppWorker(Worker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if jobs._worker_app is None:
            from app import create_app

            jobs._worker_app = create_app()
