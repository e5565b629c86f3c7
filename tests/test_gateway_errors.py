"""A provider that is dead, stalls, resets, fails or rate-limits: 502/503/504 problem+json, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airlock.gateway import GatewayConfig, create_app
from airlock.provider import ProviderSettings
from airlock.provider.openai import OpenAIProvider

from fake_upstream import (
    FakeUpstream,
    gateway_app,
    lifespan,
    reset_mid_body,
    resetting_server,
    respond,
    serving,
    stall,
)
from helpers import RecordingSink, client_for, free_port

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def post(app: Any, document: Any = CHAT, path: str = "/v1/chat/completions") -> httpx.Response:
    async with lifespan(app), client_for(app) as client:
        return await client.post(path, json=document)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert "request_id" in body
    return body


async def test_dead_upstream_gives_502_after_bounded_retries() -> None:
    sink = RecordingSink()
    app = gateway_app(free_port(), sink=sink, max_retries=2)
    response = await post(app)
    assert_problem(response, 502, "upstream_error")
    (ctx,) = sink.events
    assert ctx.outcome == "error"
    assert ctx.stage == "provider"
    assert ctx.problem is not None
    assert ctx.problem.code == "upstream_error"


async def test_stalled_upstream_gives_504() -> None:
    upstream = FakeUpstream(default=stall())
    async with serving(upstream) as port:
        response = await post(gateway_app(port, read_timeout=0.2, max_retries=2))
    body = assert_problem(response, 504, "upstream_timeout")
    assert "did not answer in time" in body["detail"]
    # A read timeout is not retried: the provider may still be working on the first attempt.
    assert len(upstream.received) == 1


async def test_total_timeout_bounds_the_whole_call() -> None:
    upstream = FakeUpstream(default=stall())
    async with serving(upstream) as port:
        response = await post(gateway_app(port, read_timeout=30, total_timeout=0.3))
    assert_problem(response, 504, "upstream_timeout")


async def test_connection_reset_gives_502_and_is_retried() -> None:
    async with resetting_server() as (port, connections):
        response = await post(gateway_app(port, max_retries=2))
    assert_problem(response, 502, "upstream_error")
    assert len(connections) == 3


async def test_reply_cut_mid_body_is_retried_then_succeeds() -> None:
    upstream = FakeUpstream(reset_mid_body())
    async with serving(upstream) as port:
        response = await post(gateway_app(port))
    assert response.status_code == 200
    assert len(upstream.received) == 2


@pytest.mark.parametrize("status", [500, 502, 503, 529])
async def test_server_errors_are_retried_then_502(status: int) -> None:
    upstream = FakeUpstream(default=respond(status, {"error": {"message": "down"}}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=2))
    body = assert_problem(response, 502, "upstream_error")
    assert body["upstream_status"] == status
    assert len(upstream.received) == 3


async def test_not_implemented_is_not_retried() -> None:
    upstream = FakeUpstream(default=respond(501, {}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=2))
    assert_problem(response, 502, "upstream_error")
    assert len(upstream.received) == 1


async def test_rate_limit_is_retried_after_retry_after_then_succeeds() -> None:
    upstream = FakeUpstream(respond(429, {}, headers={"retry-after-ms": "300"}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=1, retry_backoff=0.0))
    assert response.status_code == 200
    first, second = upstream.received
    # Honoured as a minimum wait (a lower bound, not a speed assertion).
    assert second.at - first.at >= 0.29


async def test_persistent_rate_limit_gives_503_with_retry_after() -> None:
    upstream = FakeUpstream(default=respond(429, {}, headers={"retry-after": "2"}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=3, retry_backoff_max=1.0))
    assert_problem(response, 503, "upstream_rate_limited")
    assert response.headers["retry-after"] == "2"
    # Retry-After (2 s) is longer than retry_backoff_max (1 s): not waited for, not retried.
    assert len(upstream.received) == 1


async def test_provider_credentials_refused_gives_502_without_retry() -> None:
    upstream = FakeUpstream(default=respond(401, {"error": {"message": "Incorrect API key"}}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=2))
    body = assert_problem(response, 502, "upstream_error")
    assert body["detail"] == "The AI provider refused the gateway's credentials."
    assert body["upstream_status"] == 401
    assert len(upstream.received) == 1


async def test_redirects_are_not_followed() -> None:
    upstream = FakeUpstream(respond(307, {}, headers={"location": "https://elsewhere.example/v1"}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port))
    assert_problem(response, 502, "upstream_error")
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (respond(200, b"<html>gateway</html>", headers={"content-type": "text/html"}), "not JSON"),
        (respond(200, {"pad": "x" * 4096}), "larger than this gateway accepts"),
        (respond(400, b"<html>bad</html>", headers={"content-type": "text/html"}), "cannot pass on"),
    ],
)
async def test_unusable_answers_give_502(behaviour: Any, detail: str) -> None:
    upstream = FakeUpstream(default=behaviour)
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_response_bytes=2048))
    body = assert_problem(response, 502, "upstream_error")
    assert detail in body["detail"]


async def test_provider_refusal_is_passed_on_unchanged() -> None:
    error = {
        "error": {
            "message": "max_tokens is too large",
            "type": "invalid_request_error",
            "param": "max_tokens",
        }
    }
    upstream = FakeUpstream(default=respond(400, error, headers={"x-request-id": "req_upstream_1"}))
    async with serving(upstream) as port:
        response = await post(gateway_app(port, max_retries=2))
    assert response.status_code == 400
    assert response.json() == error
    assert response.headers["x-upstream-request-id"] == "req_upstream_1"
    assert len(upstream.received) == 1


async def test_health_stays_up_while_the_provider_is_down() -> None:
    app = gateway_app(free_port())
    async with lifespan(app), client_for(app) as client:
        failed = await client.post("/v1/chat/completions", json=CHAT)
        health = await client.get("/healthz")
    assert failed.status_code == 502
    assert health.status_code == 200


async def test_gateway_without_lifespan_opens_its_pool_on_first_use() -> None:
    upstream = FakeUpstream()
    async with serving(upstream) as port:
        app = gateway_app(port)
        async with client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
        await app.state.provider.shutdown()
    assert response.status_code == 200


async def test_lifespan_opens_and_closes_the_pool() -> None:
    settings = ProviderSettings(
        kind="openai", base_url="http://127.0.0.1:9/v1", allow_http_loopback=True, api_key_env=("K",)
    )
    provider = OpenAIProvider(settings, environ={"K": "sk-test-lifespan-key-000"})
    app = create_app(GatewayConfig(provider=settings), provider=provider)
    assert not provider.is_open
    async with lifespan(app):
        assert provider.is_open
    assert not provider.is_open
