"""The provider interface: what the gateway asks of any AI provider.

The gateway speaks the OpenAI wire format on its front side. A provider takes
a checked OpenAI-shaped request and answers with an OpenAI-shaped reply (or a
stream of OpenAI-shaped server-sent events), so that a provider with another
format (Anthropic's Messages API, say) is one small module that translates in
both directions on top of :class:`airlock.provider.http.HTTPProvider`.

A provider refuses by raising :class:`~airlock.errors.UpstreamError` (502),
:class:`~airlock.errors.UpstreamTimeout` (504) or
:class:`~airlock.errors.UpstreamRateLimited` (503); their messages are written
by airlock and never carry content, a key or a provider's error text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from airlock.context import Usage

__all__ = ["ChatStream", "Provider", "ProviderRequest", "Reply", "usage_of"]


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """One checked request on its way out.

    ``body`` is exactly what airlock's checks produced (the re-serialised
    document when a stage changed it); ``payload`` is the same document parsed.
    """

    payload: dict[str, Any]
    body: bytes
    request_id: str

    def __repr__(self) -> str:
        return f"<ProviderRequest request_id={self.request_id} bytes={len(self.body)}>"


@dataclass(slots=True)
class Reply:
    """A complete answer to pass to the client: a success, or a provider's own 4xx refusal."""

    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    usage: Usage | None = None
    model: str | None = None
    attempts: int = 1

    def __repr__(self) -> str:
        return f"<Reply status={self.status} bytes={len(self.body)} attempts={self.attempts}>"


class ChatStream(ABC):
    """An open streamed chat completion: OpenAI-format SSE bytes, as the provider sends them.

    Iterating may raise ``UpstreamError``/``UpstreamTimeout`` when the provider
    fails mid-stream. :meth:`aclose` must be called (the gateway does, also when
    the client goes away), and closes the provider connection.
    """

    headers: dict[str, str]
    attempts: int = 1

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def aclose(self) -> None: ...


class Provider(ABC):
    """An AI provider behind the gateway.

    ``startup``/``shutdown`` open and close pooled resources; the gateway calls
    them from the app's lifespan.
    """

    name: ClassVar[str]

    async def startup(self) -> None:  # noqa: B027 - optional hook, most providers need none
        """Open pooled resources (connection pools). Default: nothing to open."""

    async def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Close what :meth:`startup` opened. Default: nothing to close."""

    @abstractmethod
    async def chat(self, request: ProviderRequest) -> Reply:
        """A non-streamed chat completion."""

    @abstractmethod
    async def stream_chat(self, request: ProviderRequest) -> ChatStream | Reply:
        """A streamed chat completion, open and ready to iterate.

        Returns a :class:`Reply` instead when the provider refused the request
        with its own 4xx answer before streaming anything.
        """

    @abstractmethod
    async def embeddings(self, request: ProviderRequest) -> Reply:
        """Embeddings for ``input``."""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def usage_of(document: Any) -> Usage | None:
    """The ``usage`` member of an OpenAI-shaped reply or chunk, if it has one."""
    usage = document.get("usage") if isinstance(document, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if not completion and "completion_tokens" not in usage:
        # Embeddings report prompt and total only.
        completion = max(0, _count(usage.get("total_tokens")) - prompt)
    return Usage(prompt, completion)
