"""The openai provider on httpx.MockTransport: what goes out, what comes back, key rotation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airlock.errors import UpstreamError
from airlock.provider import ProviderRequest, ProviderSettings, create_provider
from airlock.provider.openai import OpenAIProvider

from fake_upstream import completion, new_provider_key

pytestmark = pytest.mark.anyio

PAYLOAD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
# Spacing a re-serialisation would not keep: proves the exact checked bytes go out.
BODY = b'{"model": "gpt-test",  "messages": [{"role": "user", "content": "hi"}]}'


class Recorder:
    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def provider(recorder: Recorder, keys: dict[str, str] | None = None, **options: Any) -> OpenAIProvider:
    keys = keys if keys is not None else {"OPENAI_API_KEY": new_provider_key()}
    settings = ProviderSettings(
        kind="openai", api_key_env=tuple(keys), retry_backoff=0.0, retry_backoff_max=0.5, **options
    )
    return OpenAIProvider(settings, environ=keys, transport=httpx.MockTransport(recorder))


def request(body: bytes = BODY, payload: dict[str, Any] | None = None) -> ProviderRequest:
    return ProviderRequest(payload if payload is not None else json.loads(body), body, "req-123")


def ok(document: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(
        200, json=document if document is not None else completion("hello"), headers=headers
    )


async def test_the_request_that_goes_out() -> None:
    recorder = Recorder(ok(**{"x-request-id": "req_up_9"}))
    key = new_provider_key()
    reply = await provider(recorder, {"OPENAI_API_KEY": key}).chat(request())
    (sent,) = recorder.requests
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.method == "POST"
    assert sent.content == BODY
    assert sent.headers["authorization"] == f"Bearer {key}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == "req-123"
    assert sent.headers["user-agent"] == "airlock"
    assert "cookie" not in sent.headers
    assert reply.status == 200
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (11, 7)
    assert reply.model == "gpt-test"
    assert reply.headers == {"x-upstream-request-id": "req_up_9"}


async def test_azure_style_key_header_query_and_extra_headers() -> None:
    recorder = Recorder(ok())
    key = new_provider_key()
    prov = provider(
        recorder,
        {"AZURE_KEY": key},
        base_url="https://example.openai.azure.com/openai/v1",
        auth_header="api-key",
        query={"api-version": "preview"},
        headers={"OpenAI-Organization": "org-1"},
    )
    await prov.chat(request())
    (sent,) = recorder.requests
    assert sent.url.path == "/openai/v1/chat/completions"
    assert sent.url.params["api-version"] == "preview"
    assert sent.headers["api-key"] == key
    assert "authorization" not in sent.headers
    assert sent.headers["openai-organization"] == "org-1"


async def test_a_local_model_needs_no_key() -> None:
    recorder = Recorder(ok())
    prov = provider(recorder, {}, base_url="http://127.0.0.1:11434/v1", allow_http_loopback=True)
    await prov.chat(request())
    assert "authorization" not in recorder.requests[0].headers


async def test_streaming_asks_for_usage_and_keeps_the_rest() -> None:
    events = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\ndata: [DONE]\n\n'
    recorder = Recorder(httpx.Response(200, content=events, headers={"content-type": "text/event-stream"}))
    payload = {**PAYLOAD, "stream": True, "stream_options": {"other": 1}}
    stream = await provider(recorder).stream_chat(request(json.dumps(payload).encode(), payload))
    received = b"".join([part async for part in stream])  # type: ignore[union-attr]
    await stream.aclose()  # type: ignore[union-attr]
    assert received == events
    sent = json.loads(recorder.requests[0].content)
    assert sent["stream_options"] == {"other": 1, "include_usage": True}
    assert sent["messages"] == PAYLOAD["messages"]
    assert recorder.requests[0].headers["accept"] == "text/event-stream"


async def test_a_stream_that_is_not_an_event_stream_is_refused() -> None:
    recorder = Recorder(ok())
    payload = {**PAYLOAD, "stream": True}
    with pytest.raises(UpstreamError, match="event stream"):
        await provider(recorder).stream_chat(request(json.dumps(payload).encode(), payload))


async def test_embeddings_go_to_their_path_and_report_prompt_tokens() -> None:
    document = {"object": "list", "data": [], "model": "e", "usage": {"prompt_tokens": 9, "total_tokens": 9}}
    recorder = Recorder(ok(document))
    body = b'{"model":"e","input":"x"}'
    reply = await provider(recorder).embeddings(request(body))
    assert recorder.requests[0].url.path == "/v1/embeddings"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 0)


async def test_a_refused_key_rotates_to_the_next_and_stays_rotated() -> None:
    old, new = new_provider_key(), new_provider_key()
    refused = httpx.Response(401, json={"error": {"message": "Incorrect API key provided"}})

    def answer(request: httpx.Request) -> httpx.Response:
        return refused if request.headers["authorization"] == f"Bearer {old}" else ok()

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return answer(request)

    settings = ProviderSettings(kind="openai", api_key_env=("OLD", "NEW"))
    prov = OpenAIProvider(settings, environ={"OLD": old, "NEW": new}, transport=httpx.MockTransport(handler))
    first = await prov.chat(request())
    second = await prov.chat(request())
    assert first.status == second.status == 200
    assert seen == [f"Bearer {old}", f"Bearer {new}", f"Bearer {new}"]


async def test_a_rotated_secret_file_is_used_after_a_401(tmp_path: Path) -> None:
    old, new = new_provider_key(), new_provider_key()
    path = tmp_path / "key"
    path.write_text(old)
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] == f"Bearer {old}":
            # The operator rotated the key in the file; the provider already revoked the old one.
            path.write_text(new)
            return httpx.Response(401, json={"error": {}})
        return ok()

    settings = ProviderSettings(kind="openai", api_key_file=(str(path),))
    prov = OpenAIProvider(settings, transport=httpx.MockTransport(handler))
    reply = await prov.chat(request())
    assert reply.status == 200
    assert seen == [f"Bearer {old}", f"Bearer {new}"]


async def test_provider_refusals_pass_through_with_the_key_scrubbed() -> None:
    key = new_provider_key()
    error = {"error": {"message": f"bad request for {key}", "type": "invalid_request_error"}}
    recorder = Recorder(httpx.Response(400, json=error))
    reply = await provider(recorder, {"K": key}).chat(request())
    assert reply.status == 400
    assert key.encode() not in reply.body
    assert b"[REDACTED]" in reply.body


async def test_connection_errors_are_retried_within_the_count() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(UpstreamError, match="could not connect"):
        await provider(recorder, max_retries=3).chat(request())
    assert len(recorder.requests) == 4


def test_create_provider_builds_what_the_settings_name() -> None:
    assert create_provider(ProviderSettings()).name == "echo"
    key = new_provider_key()
    prov = create_provider(ProviderSettings(kind="openai", api_key_env=("K",)), environ={"K": key})
    assert isinstance(prov, OpenAIProvider)
    assert key not in repr(prov)
