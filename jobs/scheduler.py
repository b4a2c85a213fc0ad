"""`rq cron` with a lease, so it may run on two hosts: `python -m jobs.scheduler jobs/cron.py`.

RQ's CronScheduler enqueues every due periodic job (the list stays in jobs/cron.py). This subclass
enqueues only while it holds the scheduler lease (services/scheduler_lease.py); otherwise it stands
by, checking every renewal interval, and takes over within SCHEDULER_LEASE_SECONDS of the active
one's death. The jobs it enqueues are idempotent, so the single extra tick a holder that was paused
past its lease might still enqueue before it notices is harmless. A Redis outage (or a Sentinel
failover) is waited out instead of ending the process: the lease then decides again.
"""
import argparse
import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.cron import CronScheduler

from config import load_config
from extensions import redis_client
from services.scheduler_lease import SchedulerLease

log = logging.getLogger("mc.scheduler")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)


class LeasedCronScheduler(CronScheduler):
    def __init__(self, connection, lease_seconds, **kwargs):
        super().__init__(connection=connection, **kwargs)
        self.lease = SchedulerLease(connection, lease_seconds, name=self.name)
        self._redis_down = False

    def enqueue_jobs(self):
        try:
            if not self.lease.hold():
                return []
            jobs = super().enqueue_jobs()
        except REDIS_DOWN as exc:
            self._note_down(exc)
            return []
        self._redis_down = False
        return jobs

    def save(self, pipeline=None):
        try:
            super().save(pipeline)
        except REDIS_DOWN as exc:
            self._note_down(exc)

    def heartbeat(self):
        try:
            super().heartbeat()
        except REDIS_DOWN as exc:
            self._note_down(exc)

    def calculate_sleep_interval(self):
        """Wake at least every renewal interval: to renew the lease, or to see whether it is free."""
        if not self.lease.held:  # standby (or Redis down): every job looks overdue; do not spin
            return self.lease.renew_every
        return min(super().calculate_sleep_interval(), self.lease.renew_every)

    def register_death(self, pipeline=None):
        try:
            self.lease.release()
            super().register_death(pipeline)
        except REDIS_DOWN as exc:
            self._note_down(exc)

    def _note_down(self, exc):
        if not self._redis_down:
            log.warning("[scheduler-redis-down] %s: %s; retrying", self.name, exc)
        self._redis_down = True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config_path", help="the periodic jobs, e.g. jobs/cron.py")
    parser.add_argument("--logging-level", default="INFO", type=str.upper)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.logging_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("mc.scheduler").setLevel(logging.INFO)  # lease changes are always worth a line
    config = load_config()
    connection = redis_client(config, socket_connect_timeout=2, socket_timeout=10)
    scheduler = LeasedCronScheduler(connection, config["SCHEDULER_LEASE_SECONDS"],
                                    logging_level=args.logging_level)
    scheduler.load_config_from_file(args.config_path)
    scheduler.start()


if __name__ == "__main__":
    main()
