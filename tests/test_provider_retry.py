"""Retry decisions: which failures, how long to wait, when to stop."""

from __future__ import annotations

import email.utils
import time

import pytest

from airlock.errors import ConfigurationError
from airlock.provider import RetryPolicy, parse_retry_after
from airlock.provider.retry import is_retryable_status


def test_retry_after_in_seconds_milliseconds_and_http_dates() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}, now=now) <= 31  # type: ignore[operator]
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


@pytest.mark.parametrize("value", ["soon", "-1", "1.5.2", "", "Wed, 99 Foo 2020"])
def test_unparseable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None
    assert parse_retry_after({}) is None


def test_retryable_statuses() -> None:
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504, 529))
    assert not any(is_retryable_status(s) for s in (200, 400, 401, 403, 404, 413, 422, 501, 505))


def test_backoff_is_jittered_bounded_and_counted() -> None:
    policy = RetryPolicy(max_retries=3, backoff=0.5, backoff_max=2.0)
    for retry, cap in ((0, 0.5), (1, 1.0), (2, 2.0)):
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(d is not None and 0 <= d <= cap for d in delays)
        assert len(set(delays)) > 100  # jitter: retries of many callers do not line up
    assert policy.delay(3) is None


def test_retry_after_is_a_minimum_and_too_long_means_give_up() -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.01, backoff_max=5.0)
    assert policy.delay(0, retry_after=1.5) == 1.5
    assert policy.delay(0, retry_after=6.0) is None


def test_zero_retries_never_retries() -> None:
    assert RetryPolicy(max_retries=0).delay(0) is None


@pytest.mark.parametrize(
    "options", [{"max_retries": -1}, {"max_retries": 11}, {"backoff": -1}, {"max_retries": True}]
)
def test_bad_policies_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**options)  # type: ignore[arg-type]
