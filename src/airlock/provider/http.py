"""The outbound HTTP machinery every network provider shares.

One pooled ``httpx.AsyncClient`` per provider (opened in the app's lifespan,
or lazily on first use when a server runs no lifespan), the TLS context of
:mod:`airlock.provider.tls`, the key of :mod:`airlock.provider.credentials`,
retries per :mod:`airlock.provider.retry`, and one mapping of every failure to
``502 upstream_error``, ``503 upstream_rate_limited`` or ``504 upstream_timeout``.

Nothing the client sent is forwarded except the checked body: no client
header, cookie or credential reaches the provider. Redirects are never followed
(a redirect would carry the key to another host). Environment proxy and CA
variables are ignored (``trust_env=False``): what the config says is what runs.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

try:
    import httpx
except ImportError:  # pragma: no cover - exercised only without the gateway extra
    httpx = None  # type: ignore[assignment]

from airlock.errors import ConfigurationError, Rejection, UpstreamError, UpstreamTimeout
from airlock.provider.base import ChatStream, Provider, ProviderRequest, Reply, usage_of
from airlock.provider.credentials import ProviderKeys, Secret
from airlock.provider.failures import is_json, status_failure, transport_failure
from airlock.provider.retry import RetryPolicy, is_retryable_status, parse_retry_after
from airlock.provider.settings import ProviderSettings
from airlock.provider.tls import make_ssl_context

__all__ = ["HTTPProvider"]

logger = logging.getLogger("airlock.provider")

_UPSTREAM_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CREDENTIALS_REFUSED = "The AI provider refused the gateway's credentials."


@dataclass(slots=True)
class _Answer:
    response: httpx.Response
    body: bytes | None
    attempts: int


class _HTTPChatStream(ChatStream):
    def __init__(self, response: httpx.Response, attempts: int, headers: dict[str, str]) -> None:
        self._response = response
        self.attempts = attempts
        self.headers = headers

    def __repr__(self) -> str:
        return f"<ChatStream attempts={self.attempts}>"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_bytes():
                yield chunk
        except httpx.TimeoutException:
            raise UpstreamTimeout("The AI provider stopped sending in the middle of a stream.") from None
        except httpx.HTTPError:
            raise UpstreamError(
                "The connection to the AI provider broke in the middle of a stream."
            ) from None

    async def aclose(self) -> None:
        await self._response.aclose()


class HTTPProvider(Provider):
    """A provider reached over HTTPS. Subclasses say which paths to call and how to translate."""

    name = "http"

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        environ: Any = None,
        transport: Any = None,
    ) -> None:
        if httpx is None:  # pragma: no cover - exercised only without the gateway extra
            raise ConfigurationError("network providers need httpx: pip install 'asgi-airlock[gateway]'")
        if settings.base_url is None:
            raise ConfigurationError("provider.base_url is required")
        self.settings = settings
        self.keys = ProviderKeys(
            env=settings.api_key_env,
            files=settings.api_key_file,
            environ=environ,
            cooldown=settings.key_cooldown,
        )
        self.retry = RetryPolicy(settings.max_retries, settings.retry_backoff, settings.retry_backoff_max)
        # Reads the trust store from disk: done here, at start-up, never per request.
        self._ssl = make_ssl_context(settings.ca_bundle)
        self._transport: httpx.AsyncBaseTransport | None = transport
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.connect_timeout,
        )
        self._limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_keepalive_connections,
        )
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self.settings.base_url!r} keys={len(self.keys)}>"

    @property
    def ssl_context(self) -> ssl.SSLContext:
        return self._ssl

    def _open(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.settings.base_url or "",
                verify=self._ssl,
                transport=self._transport,
                timeout=self._timeout,
                limits=self._limits,
                params=dict(self.settings.query),
                headers={"user-agent": "airlock", **self.settings.headers},
                trust_env=False,
                follow_redirects=False,
            )
        return self._client

    async def startup(self) -> None:
        self._open()

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def is_open(self) -> bool:
        return self._client is not None and not self._client.is_closed

    def _headers(self, secret: Secret | None, request_id: str, accept: str) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": accept, "x-request-id": request_id}
        if secret is not None:
            value = secret.reveal()
            auth = self.settings.auth_header
            headers[auth] = f"Bearer {value}" if auth == "authorization" else value
        return headers

    async def _read(self, response: httpx.Response) -> bytes:
        limit = self.settings.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise UpstreamError(
                    "The AI provider's answer is larger than this gateway accepts.",
                    extensions={"max_response_bytes": limit},
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _exchange(
        self, path: str, request: ProviderRequest, content: bytes, *, stream: bool
    ) -> _Answer:
        """Send until an answer worth passing on arrives; raise the right rejection otherwise."""
        client = self._open()
        await self.keys.refresh()
        deadline = anyio.current_time() + self.settings.total_timeout
        accept = "text/event-stream" if stream else "application/json"
        attempts = retries = key_switches = 0
        while True:
            attempts += 1
            secret = self.keys.current()
            outgoing = client.build_request(
                "POST", path, content=content, headers=self._headers(secret, request.request_id, accept)
            )
            failure: Rejection | None = None
            retryable = False
            retry_after: float | None = None
            try:
                response = await client.send(outgoing, stream=True)
                status = response.status_code
                if 200 <= status < 300:
                    if stream:
                        return _Answer(response, None, attempts)
                    try:
                        return _Answer(response, await self._read(response), attempts)
                    finally:
                        await response.aclose()
                try:
                    body = b"" if is_retryable_status(status) else await self._read(response)
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                failure, retryable = transport_failure(exc)
                status = 0
            if failure is None:
                if status == 401 and secret is not None and key_switches < len(self.keys):
                    # Rotation: set the refused key aside, pick up a rotated secret file, try the next.
                    self.keys.refused(secret)
                    await self.keys.refresh(force=True)
                    if self.keys.current() is not secret:
                        key_switches += 1
                        continue
                if status in (401, 403, 407):
                    raise UpstreamError(_CREDENTIALS_REFUSED, extensions={"upstream_status": status})
                if is_retryable_status(status):
                    retry_after = parse_retry_after(response.headers)
                    failure, retryable = status_failure(status, retry_after), True
                elif 400 <= status < 500 and is_json(response):
                    # The provider's own refusal (bad model, bad parameter): the client can act on it.
                    return _Answer(response, self.keys.scrub(body), attempts)
                else:
                    raise UpstreamError(
                        "The AI provider sent an answer airlock cannot pass on.",
                        extensions={"upstream_status": status},
                    )
            delay = self.retry.delay(retries, retry_after) if retryable else None
            if delay is None or anyio.current_time() + delay >= deadline:
                raise failure
            logger.warning(
                "airlock: provider attempt %d failed (%s); retrying in %.2fs (request_id=%s)",
                attempts,
                failure.code if status == 0 else f"HTTP {status}",
                delay,
                request.request_id,
            )
            retries += 1
            await anyio.sleep(delay)

    def _reply_headers(self, response: httpx.Response) -> dict[str, str]:
        upstream_id = response.headers.get("x-request-id", "")
        return {"x-upstream-request-id": upstream_id} if _UPSTREAM_ID_RE.fullmatch(upstream_id) else {}

    async def _complete(self, path: str, request: ProviderRequest, content: bytes) -> Reply:
        """A non-streamed call: the whole exchange, retries included, within ``total_timeout``."""
        try:
            with anyio.fail_after(self.settings.total_timeout):
                answer = await self._exchange(path, request, content, stream=False)
        except TimeoutError:
            raise UpstreamTimeout(extensions={"total_timeout": self.settings.total_timeout}) from None
        response, body = answer.response, answer.body or b""
        headers = self._reply_headers(response)
        if response.status_code >= 300:
            return Reply(response.status_code, body, headers=headers, attempts=answer.attempts)
        try:
            document = json.loads(body)
        except ValueError:
            raise UpstreamError("The AI provider's answer is not JSON.") from None
        model = document.get("model") if isinstance(document, dict) else None
        return Reply(
            response.status_code,
            body,
            headers=headers,
            usage=usage_of(document),
            model=model if isinstance(model, str) else None,
            attempts=answer.attempts,
        )

    async def _open_stream(self, path: str, request: ProviderRequest, content: bytes) -> ChatStream | Reply:
        """A streamed call, open once the provider starts answering (within ``total_timeout``)."""
        try:
            with anyio.fail_after(self.settings.total_timeout):
                answer = await self._exchange(path, request, content, stream=True)
        except TimeoutError:
            raise UpstreamTimeout(extensions={"total_timeout": self.settings.total_timeout}) from None
        response = answer.response
        headers = self._reply_headers(response)
        if answer.body is not None:
            return Reply(response.status_code, answer.body, headers=headers, attempts=answer.attempts)
        media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "text/event-stream":
            await response.aclose()
            raise UpstreamError("The AI provider did not answer with an event stream.")
        return _HTTPChatStream(response, answer.attempts, headers)
