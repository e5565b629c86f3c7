"""Gateway routes: embeddings, models, health, security headers, CORS, what reaches the provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airlock import generate_key, hash_key
from airlock.gateway import create_app, parse_config
from airlock.gateway.config import GatewayConfig, IdentityConfig

from fake_upstream import FakeUpstream, gateway_app, lifespan, serving, with_audit
from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "what reaches the provider?"}]}
SECURITY = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def keys_file(tmp_path: Path) -> tuple[str, str]:
    key = generate_key()
    path = tmp_path / "keys.toml"
    path.write_text(f'[keys]\nalice = "{hash_key(key)}"\n')
    return key, str(path)


async def test_completion_round_trip_reports_usage() -> None:
    upstream = FakeUpstream()
    sink = RecordingSink()
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == CHAT["messages"][0]["content"]
    assert response.headers["cache-control"] == "no-store"
    (ctx,) = sink.events
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (11, 7)
    assert (ctx.provider, ctx.model, ctx.outcome) == ("openai", "gpt-test", "allowed")
    assert ctx.audit["provider"] == {"name": "openai", "stream": False, "attempts": 1, "upstream_status": 200}
    assert upstream.last.path == "/v1/chat/completions"


async def test_echo_embeddings_are_deterministic_vectors() -> None:
    async with client_for(create_app()) as client:
        first = await client.post(
            "/v1/embeddings", json={"model": "echo", "input": ["a", "b"], "dimensions": 8}
        )
        again = await client.post("/v1/embeddings", json={"model": "echo", "input": "a", "dimensions": 8})
    assert first.status_code == 200
    data = first.json()["data"]
    assert [d["index"] for d in data] == [0, 1]
    assert len(data[0]["embedding"]) == 8
    assert data[0]["embedding"] != data[1]["embedding"]
    assert again.json()["data"][0]["embedding"] == data[0]["embedding"]
    assert abs(sum(v * v for v in data[0]["embedding"]) - 1.0) < 1e-3
    assert first.json()["usage"]["prompt_tokens"] == 2


async def test_embeddings_through_the_upstream_report_usage() -> None:
    upstream = FakeUpstream()
    sink = RecordingSink()
    async with serving(upstream) as port:
        app = gateway_app(port, sink=sink)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/embeddings", json={"model": "embed-test", "input": "hello"})
    assert response.status_code == 200
    assert upstream.last.path == "/v1/embeddings"
    (ctx,) = sink.events
    assert ctx.usage is not None
    assert (ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (4, 0)


async def test_models_default_to_echo() -> None:
    async with client_for(create_app()) as client:
        response = await client.get("/v1/models")
    assert response.json() == {
        "object": "list",
        "data": [{"id": "echo", "object": "model", "created": 0, "owned_by": "echo"}],
    }


async def test_health_needs_no_key_and_is_not_audited(tmp_path: Path) -> None:
    key, path = keys_file(tmp_path)
    sink = RecordingSink()
    app = with_audit(create_app(GatewayConfig(identity=IdentityConfig(keys_file=path))), sink)
    async with client_for(app) as client:
        health = await client.get("/healthz")
        models = await client.get("/v1/models")
        allowed = await client.get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert models.status_code == 401
    assert allowed.status_code == 200
    assert len(sink.events) == 2  # the two model requests; the health check left no trace


async def test_security_headers_on_every_kind_of_answer(tmp_path: Path) -> None:
    key, path = keys_file(tmp_path)
    app = create_app(GatewayConfig(identity=IdentityConfig(keys_file=path)))
    auth = {"authorization": f"Bearer {key}"}
    async with client_for(app) as client:
        answers = [
            await client.post("/v1/chat/completions", json={"model": "echo", "messages": []}, headers=auth),
            await client.post("/v1/chat/completions", json={"model": "echo", "messages": []}),  # 401
            await client.post(
                "/v1/chat/completions", content=b"{", headers={**auth, "content-type": "application/json"}
            ),
            await client.get("/v1/models", headers=auth),
            await client.get("/healthz"),
            await client.get("/nowhere", headers=auth),
        ]
    assert [a.status_code for a in answers] == [200, 401, 400, 200, 200, 404]
    for answer in answers:
        for name, value in SECURITY.items():
            assert answer.headers[name] == value, (answer.status_code, name)
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        assert "server" not in answer.headers
    # Every checked request is traceable; the exempt health check is not checked at all.
    assert [("x-request-id" in a.headers) for a in answers] == [True, True, True, True, False, True]


async def test_cors_is_off_unless_configured() -> None:
    origin = {"origin": "https://app.example.com"}
    preflight = {
        **origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
    }
    async with client_for(create_app()) as client:
        plain = await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": []}, headers=origin
        )
        options = await client.options("/v1/chat/completions", headers=preflight)
    assert plain.status_code == 200
    assert "access-control-allow-origin" not in plain.headers
    assert "access-control-allow-origin" not in options.headers

    config = parse_config({"server": {"cors": {"allow_origins": ["https://app.example.com"]}}})
    async with client_for(create_app(config)) as client:
        allowed = await client.options("/v1/chat/completions", headers=preflight)
        other = await client.options(
            "/v1/chat/completions", headers={**preflight, "origin": "https://evil.example"}
        )
        simple = await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": []}, headers=origin
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in simple.headers["access-control-expose-headers"]


async def test_the_upstream_gets_the_checked_body_and_none_of_the_clients_headers(tmp_path: Path) -> None:
    client_key, path = keys_file(tmp_path)
    upstream = FakeUpstream()
    provider_key = "sk-test-provider-0123456789abcdef"
    body = json.dumps(CHAT, indent=1).encode()  # odd spacing survives: the bytes go out as checked
    async with serving(upstream) as port:
        app = gateway_app(port, provider_key, config={"identity": IdentityConfig(keys_file=path)})
        async with lifespan(app), client_for(app) as client:
            response = await client.post(
                "/v1/chat/completions",
                content=body,
                headers={
                    "authorization": f"Bearer {client_key}",
                    "content-type": "application/json",
                    "cookie": "session=secret-cookie",
                    "x-forwarded-for": "203.0.113.9",
                    "openai-organization": "org-from-client",
                    "x-request-id": "client-req-42",
                },
            )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "client-req-42"
    received = upstream.last
    assert received.body == body
    assert received.headers["authorization"] == f"Bearer {provider_key}"
    assert received.headers["x-request-id"] == "client-req-42"
    forwarded = json.dumps(received.headers)
    for leaked in (client_key, "secret-cookie", "203.0.113.9", "org-from-client"):
        assert leaked not in forwarded


async def test_a_body_that_is_not_an_object_is_refused() -> None:
    async with client_for(create_app()) as client:
        response = await client.post("/v1/chat/completions", json=["not", "an", "object"])
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"
