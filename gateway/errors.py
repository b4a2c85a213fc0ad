"""Typed errors of the Core client. Jobs decide retry vs fail from the type (or `retryable`).

    CoreError
    ├── CoreUnavailable   connection refused/reset, TLS failure, timeout, 5xx     retry with back-off
    │   └── CoreTLSError  TLS handshake / certificate problem (ours or theirs)    retry; alert if it persists
    ├── CoreThrottled     429; `retry_after` seconds                              retry after retry_after
    ├── CoreRejected      other 4xx; `status`, `code`, `message` from the body    do not retry the same request
    └── CoreBadResponse   not JSON / wrong shape / body over the hard limit       retry (same idempotency key), a few
"""


from typing import Any


class CoreError(Exception):
    retryable = True
    outcome = "error"  # label value of mc_core_request_seconds

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " ".join(parts)


class CoreUnavailable(CoreError):
    """The Core cannot be reached or failed (connection errors, timeouts, 5xx)."""

    outcome = "unavailable"


class CoreTLSError(CoreUnavailable):
    """The TLS handshake failed: certificate refused, unknown CA, host name mismatch, unreadable files."""

    outcome = "tls_error"


class CoreThrottled(CoreError):
    """429 from the Core: wait `retry_after` seconds before the next call."""

    outcome = "throttled"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class CoreRejected(CoreError):
    """A 4xx (other than 429): the Core refused this request; resending it unchanged will not help."""

    outcome = "rejected"
    retryable = False


class CoreBadResponse(CoreError):
    """The Core answered something we cannot use (not JSON, unexpected shape, over the size limit)."""

    outcome = "bad_response"
