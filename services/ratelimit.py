"""A fixed-window rate limiter on Redis, shared by every web process (INCR + EXPIRE per window)."""
import time

from extensions import redis_connection
from services.errors import DomainError


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.retry_after = retry_after


def hit(key, limit, window_seconds):
    """Count one request for `key`; raise RateLimited once `limit` requests were made in the window."""
    window = int(time.time() // window_seconds)
    redis_key = f"mc:rate:{key}:{window}"
    pipe = redis_connection().pipeline()
    pipe.incr(redis_key)
    pipe.expire(redis_key, window_seconds + 1)
    count, _ = pipe.execute()
    if count > limit:
        retry_after = int(window_seconds - time.time() % window_seconds) + 1
        raise RateLimited(f"More than {limit} requests in {window_seconds} s with this token; "
                          f"retry after {retry_after} s.", retry_after)
    return limit - count
