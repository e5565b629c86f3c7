"""When to try a provider call again, and how long to wait first.

Retried: connection failures (nothing or nothing usable came back), ``408``,
``429`` and ``5xx`` answers other than ``501``/``505`` (which will not change). Waits grow
exponentially with full jitter (so that many gateways do not retry in step),
and a provider's ``Retry-After`` (or ``retry-after-ms``) is honoured as a
minimum. Retries are bounded twice: by count (``max_retries``) and by the
call's total deadline; a wait that would end after the deadline is not started.
A request whose client went away is cancelled as a whole, so it is never retried.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from airlock.errors import ConfigurationError

__all__ = ["RetryPolicy", "is_retryable_status", "parse_retry_after"]

# A Retry-After longer than this is not waited for inside one request.
_MAX_RETRY_AFTER = 3600.0


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or (500 <= status <= 599 and status not in (501, 505))


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the provider asks us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` is either delay-seconds or an HTTP-date (RFC 9110 10.2.3).
    Unparseable or negative values are ignored (``None``).
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if 0.0 <= value <= _MAX_RETRY_AFTER:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return min(float(raw), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, delay), _MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how patiently to retry one provider call.

    :param max_retries: retries after the first attempt (``0`` disables retrying).
    :param backoff: base wait in seconds; attempt ``n`` waits up to ``backoff * 2**n``.
    :param backoff_max: the longest wait between two attempts, Retry-After included.
    """

    max_retries: int = 2
    backoff: float = 0.5
    backoff_max: float = 8.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigurationError("provider.max_retries must be an integer")
        if not 0 <= self.max_retries <= 10:
            raise ConfigurationError("provider.max_retries must be between 0 and 10")
        if not 0 <= self.backoff <= 60:
            raise ConfigurationError("provider.retry_backoff must be between 0 and 60 seconds")
        if not 0 <= self.backoff_max <= 600:
            raise ConfigurationError("provider.retry_backoff_max must be between 0 and 600 seconds")

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or ``None`` to give up.

        Gives up when the retries are used up or the provider asks for a wait
        longer than ``backoff_max``: waiting that long inside one request helps no one.
        """
        if retry >= self.max_retries:
            return None
        if retry_after is not None and retry_after > self.backoff_max:
            return None
        jittered = random.uniform(0.0, min(self.backoff_max, self.backoff * (2**retry)))
        return max(jittered, retry_after or 0.0)
