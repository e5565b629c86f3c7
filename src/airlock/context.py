"""The per-request object: what the engine learnt about one request.

A handler finds it at ``request.state.airlock`` (or as the FastAPI dependency's
value). Stages write to it; the audit stage reads it at the end. It never holds
a raw credential, and nothing in it is logged except through the audit stage,
which only takes the content-free fields.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.types import Scope

if TYPE_CHECKING:
    from airlock.errors import Rejection
    from airlock.policy import Policy

__all__ = ["BodyFilter", "Context", "Identity", "Usage"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking.

    ``id`` is what limits and budgets are counted against: ``key:<name>`` for an
    API key (never the key itself), ``user:<id>`` for an authenticated user,
    ``addr:<ip>`` for a client address. The audit log stores only a keyed hash of it.
    """

    kind: str
    id: str
    name: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


@dataclass(slots=True)
class Usage:
    """Token usage as reported by the provider."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class BodyFilter(Protocol):
    """Rewrites a response body chunk by chunk (e.g. restoring pseudonyms).

    ``begin`` sees the response headers when the response starts and returns
    ``False`` to leave this response untouched (e.g. a binary media type).
    ``feed`` may hold back a tail that could still change once more bytes
    arrive; ``flush`` returns whatever is held back at the end of the body.
    """

    def begin(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool: ...

    def feed(self, chunk: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


# A finalizer may do its work right away (return None) or return an awaitable; only
# awaitables need the shielded scope that keeps a cancelled request's cleanup running.
Finalizer = Callable[["Context"], "Awaitable[None] | None"]


class Context:
    __slots__ = (
        "audit",
        "body",
        "body_complete",
        "body_filter",
        "bytes_in",
        "bytes_out",
        "client_disconnected",
        "entity_counts",
        "failed_open",
        "finalizers",
        "identity",
        "json",
        "method",
        "model",
        "modified",
        "outcome",
        "path",
        "policy",
        "problem",
        "provider",
        "request_id",
        "response_headers",
        "response_started",
        "route",
        "scope",
        "stage",
        "stage_started",
        "started",
        "status",
        "timings",
        "token_estimate",
        "usage",
        "vault",
    )

    def __init__(self, scope: Scope, policy: Policy, request_id: str, route: str | None) -> None:
        self.scope = scope
        self.policy = policy
        self.request_id = request_id
        self.method: str = scope.get("method", "GET")
        self.path: str = scope.get("path", "")
        self.route = route
        self.started = time.perf_counter()
        self.identity: Identity | None = None
        self.body: bytes = b""
        self.body_complete = False
        self.json: Any = None
        self.modified = False
        self.token_estimate: int | None = None
        self.vault: Any = None
        # Personal data and secrets found by the anonymize stage, per entity type (counts only).
        self.entity_counts: dict[str, int] = {}
        self.usage: Usage | None = None
        self.provider: str | None = None
        self.model: str | None = None
        # Content-free facts stages want in the audit event (counts, codes, paths).
        self.audit: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.failed_open: list[str] = []
        self.outcome = "allowed"
        self.stage: str | None = None
        self.stage_started = 0.0
        self.problem: Rejection | None = None
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.body_filter: BodyFilter | None = None
        self.finalizers: list[Finalizer] = []
        self.response_started = False
        self.client_disconnected = False

    def __repr__(self) -> str:
        # Deliberately content-free: a repr ends up in tracebacks and debuggers' logs.
        return (
            f"<airlock.Context request_id={self.request_id} {self.method} route={self.route!r} "
            f"outcome={self.outcome} status={self.status}>"
        )

    def mark_modified(self) -> None:
        """A stage changed ``json``: the app gets the re-serialised body, not the original."""
        self.modified = True

    def add_response_header(self, name: str, value: str) -> None:
        self.response_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))

    def defer(self, finalizer: Finalizer) -> None:
        """Run ``finalizer(ctx)`` once the response is over (or abandoned), before the audit event.

        It may be a plain function or return an awaitable (an ``async def``); awaitables run
        shielded from cancellation, so a cancelled request still releases what it holds.
        """
        self.finalizers.append(finalizer)

    def report_usage(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        """Tell airlock what the provider reported, so budgets settle and the audit shows it."""
        self.usage = Usage(max(0, int(prompt_tokens)), max(0, int(completion_tokens)))
        if provider is not None:
            self.provider = provider
        if model is not None:
            self.model = model

    @property
    def duration_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0
