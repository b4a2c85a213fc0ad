"""Client of the SMS Core API (docs/core-api.md): mutual TLS with hot certificate rotation,
`X-Request-ID` on every call, `[core-slow]` / `[core-large]` sentinels, typed errors.

    from gateway import get_client, CoreThrottled, CoreUnavailable, CoreRejected
    result = get_client().submit_batch(idempotency_key, messages)
"""
from gateway.client import SCHEMA_VERSION, CoreClient, build_ssl_context, client_settings, get_client
from gateway.errors import CoreBadResponse, CoreError, CoreRejected, CoreThrottled, CoreTLSError, CoreUnavailable

__all__ = ["SCHEMA_VERSION", "CoreClient", "build_ssl_context", "client_settings", "get_client", "CoreError",
           "CoreUnavailable", "CoreTLSError", "CoreThrottled", "CoreRejected", "CoreBadResponse"]
