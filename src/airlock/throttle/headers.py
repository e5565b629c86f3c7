"""Response fields that tell a client where it stands.

* ``RateLimit-Policy`` and ``RateLimit`` as in draft-ietf-httpapi-ratelimit-headers-11
  (structured-field Lists of String items with ``q``/``w``/``qu`` and ``r``/``t``
  parameters); lists from several stages are sent as separate field lines, which
  HTTP combines into one list.
* ``X-RateLimit-Limit/Remaining/Reset``, the de-facto trio (GitHub, slowapi):
  the window with the fewest remaining requests; ``Reset`` is a Unix time in
  seconds. Token budgets use the same trio with a ``-Tokens`` suffix, the names
  OpenAI-style clients already read.
* ``Retry-After`` in delta-seconds on every 429.

All of them are added to the context before the response starts, so the engine
sends them once, on the response start, for plain and streamed responses alike.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["add_ietf_fields", "delta_seconds", "limit_item", "retry_after", "set_legacy_fields"]


def delta_seconds(at: float, now: float) -> int:
    return max(0, math.ceil(at - now))


def retry_after(at: float, now: float) -> str:
    """``Retry-After`` for a point in time: whole seconds, at least 1."""
    return str(max(1, math.ceil(at - now)))


def limit_item(name: str, remaining: int, reset: int | None = None) -> str:
    item = f'"{name}";r={max(0, remaining)}'
    return item if reset is None else f"{item};t={reset}"


def add_ietf_fields(ctx: Context, policy: str | bytes, limits: list[str]) -> None:
    """``RateLimit-Policy`` (pass it pre-encoded when it is fixed) and ``RateLimit``."""
    headers = ctx.response_headers
    headers.append((b"ratelimit-policy", policy if isinstance(policy, bytes) else policy.encode("latin-1")))
    headers.append((b"ratelimit", ", ".join(limits).encode("latin-1")))


def _trio(suffix: str) -> tuple[bytes, bytes, bytes]:
    return (
        f"x-ratelimit-limit{suffix}".encode("latin-1"),
        f"x-ratelimit-remaining{suffix}".encode("latin-1"),
        f"x-ratelimit-reset{suffix}".encode("latin-1"),
    )


_TRIOS = {"": _trio(""), "-tokens": _trio("-tokens")}


def set_legacy_fields(ctx: Context, limit: int, remaining: int, reset_at: float, suffix: str = "") -> None:
    """Set the ``X-RateLimit-*`` trio unless another stage already set a more restrictive one."""
    names = _TRIOS.get(suffix) or _trio(suffix)
    headers = ctx.response_headers
    remaining = max(0, remaining)
    for name, value in headers:
        if name == names[1]:
            if int(value) <= remaining:
                return
            headers[:] = [(k, v) for k, v in headers if k not in names]
            break
    headers.append((names[0], b"%d" % limit))
    headers.append((names[1], b"%d" % remaining))
    headers.append((names[2], b"%d" % math.ceil(reset_at)))
