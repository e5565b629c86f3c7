"""What a failed provider exchange means for the client: which rejection, and whether to retry.

Every failure becomes ``502 upstream_error``, ``503 upstream_rate_limited`` or
``504 upstream_timeout`` with a detail written here, never the provider's text
or httpx's message (which can carry the URL).
"""

from __future__ import annotations

import math
import ssl

import httpx

from airlock.errors import Rejection, UpstreamError, UpstreamRateLimited, UpstreamTimeout

__all__ = ["is_json", "status_failure", "transport_failure"]


def _has_ssl_cause(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def transport_failure(exc: httpx.HTTPError) -> tuple[Rejection, bool]:
    """The rejection for a failed exchange, and whether another attempt could help."""
    if isinstance(exc, httpx.ConnectTimeout):
        return UpstreamTimeout("The AI provider did not accept a connection in time."), True
    if isinstance(exc, httpx.PoolTimeout):
        return UpstreamTimeout("Every connection to the AI provider is busy."), False
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(), False
    if isinstance(exc, httpx.ConnectError) and _has_ssl_cause(exc):
        # A certificate or protocol-version failure will fail the same way again.
        return (
            UpstreamError(
                "The TLS handshake with the AI provider failed (certificate or protocol version).",
                extensions={"reason": "tls"},
            ),
            False,
        )
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError("airlock could not connect to the AI provider."), True
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return UpstreamError("The connection to the AI provider failed."), True
    return UpstreamError(), False


def status_failure(status: int, retry_after: float | None) -> Rejection:
    extensions = {"upstream_status": status}
    if status == 429:
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else None
        return UpstreamRateLimited(headers=headers, extensions=extensions)
    if status in (408, 504):
        return UpstreamTimeout(extensions=extensions)
    return UpstreamError(extensions=extensions)


def is_json(response: httpx.Response) -> bool:
    media: str = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))
