"""The audit event: what one finished request leaves in the log, and nothing more.

Built on the event loop from the request's :class:`~airlock.context.Context`,
so it only copies and counts; formatting and hashing happen on the writer
thread. It reads content-free fields only. It never touches ``ctx.body``,
``ctx.json``, ``ctx.vault``, the raw path, the query string or any header other
than ``traceparent``; identities and addresses go through :class:`KeyedHasher`.

Schema ``airlock.audit/1`` (see notes/readme-audit.md for the table). Optional
members are left out when they have nothing to say, so a plain accepted request
stays a short line.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from airlock.audit.facts import (
    MAX_KEY_CHARS,
    bounded,
    bounded_counts,
    bounded_names,
    trace_id,
    validation_failures,
)

if TYPE_CHECKING:
    from airlock.audit.hashing import KeyedHasher
    from airlock.context import Context

__all__ = ["SCHEMA", "build_event", "event_level", "minimal_event"]

SCHEMA = "airlock.audit/1"

# A client may send any token as a method; only the registered ones are logged as sent.
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "QUERY"}
)


def event_level(ctx: Context) -> int:
    """CRITICAL when a check failed open, ERROR when the app failed, INFO otherwise."""
    if ctx.failed_open:
        return logging.CRITICAL
    if ctx.outcome == "error":
        return logging.ERROR
    return logging.INFO


def _client_address(ctx: Context) -> str | None:
    identity = ctx.identity
    if identity is not None and identity.kind == "address" and identity.id.startswith("addr:"):
        # Already resolved through the trusted proxies by ClientAddress.
        return identity.id[5:]
    client = ctx.scope.get("client")
    return str(client[0]) if client else None


def build_event(ctx: Context, hasher: KeyedHasher) -> dict[str, Any]:
    """The event for ``ctx``; ``ts`` is a Unix time the writer renders as RFC 3339 UTC."""
    method = ctx.method if ctx.method in _METHODS else "OTHER"
    event: dict[str, Any] = {
        "ts": time.time(),
        "schema": SCHEMA,
        "request_id": ctx.request_id,
    }
    trace = trace_id(ctx.scope.get("headers", ()))
    if trace is not None:
        event["trace_id"] = trace
    event["method"] = method
    # The route template, never the raw path: /users/{user_id}, not /users/jane@example.com.
    event["route"] = ctx.route
    identity = ctx.identity
    if identity is not None:
        event["identity"] = {
            "kind": identity.kind[:MAX_KEY_CHARS],
            "hash": hasher.identity(identity.id),
            "kid": hasher.key_id,
        }
    client = hasher.client(_client_address(ctx))
    if client is not None:
        event["client"] = client
    event["outcome"] = ctx.outcome
    problem = ctx.problem
    if ctx.outcome != "allowed" and ctx.stage is not None:
        event["stage"] = ctx.stage
    if problem is not None:
        event["code"] = problem.code
    event["status"] = ctx.status
    event["bytes_in"] = ctx.bytes_in
    event["bytes_out"] = ctx.bytes_out
    # Whole microseconds: exact enough, and an int costs a fraction of a float to write as JSON.
    event["duration_us"] = int((time.perf_counter() - ctx.started) * 1e6)
    event["timings_us"] = {name: int(ms * 1000.0) for name, ms in ctx.timings.items()}
    if ctx.client_disconnected:
        event["disconnected"] = True
    if ctx.failed_open:
        event["failed_open"] = bounded_names(ctx.failed_open)
    if ctx.token_estimate is not None:
        event["token_estimate"] = ctx.token_estimate
    if ctx.entity_counts:
        event["entities"] = bounded_counts(ctx.entity_counts)
    facts = ctx.audit
    if facts:
        cleaned = bounded(facts)
        if cleaned:
            event["facts"] = cleaned
    if problem is not None and problem.extensions:
        if problem.code == "validation_failed":
            # Paths and rule names only; the validation stage's own counts are in facts.validation.
            failures = validation_failures(problem.extensions)
            if failures:
                event["validation"] = failures
        else:
            event["problem"] = bounded(problem.extensions)
    if ctx.provider is not None:
        event["provider"] = bounded(ctx.provider)
    if ctx.model is not None:
        event["model"] = bounded(ctx.model)
    usage = ctx.usage
    if usage is not None:
        event["usage"] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
    return event


def minimal_event(ctx: Context) -> dict[str, Any]:
    """What is logged if building the full event failed: the request still leaves a trace."""
    return {
        "ts": time.time(),
        "schema": SCHEMA,
        "request_id": bounded(getattr(ctx, "request_id", None)),
        "outcome": bounded(getattr(ctx, "outcome", None)),
        "status": bounded(getattr(ctx, "status", None)),
        "audit_error": "event_build_failed",
    }
