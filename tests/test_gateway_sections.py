"""The stage sections of airlock.toml, wired into the gateway: what a client and the provider see."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from airlock.errors import ConfigurationError
from airlock.gateway import GatewayConfig, create_app, parse_config
from airlock.provider.openai import OpenAIProvider

from fake_upstream import (
    DONE,
    KEY_ENV,
    FakeUpstream,
    Received,
    chunk,
    lifespan,
    new_provider_key,
    serving,
    stream,
    with_audit,
)
from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio

EMAIL, CARD, PHONE = "jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958"
PII_TEXT = f"Mail {EMAIL}, card {CARD}, call {PHONE}."


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **extra}


def upstream_app(port: int, document: dict[str, Any]) -> Any:
    """The gateway for ``document`` (a parsed airlock.toml), in front of the fake upstream on ``port``."""
    provider = {
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "allow_http_loopback": True,
        "api_key_env": KEY_ENV,
        "retry_backoff": 0.0,
    }
    config = parse_config({**document, "provider": {**provider, **document.get("provider", {})}})
    return create_app(config, provider=OpenAIProvider(config.provider, environ={KEY_ENV: new_provider_key()}))


def text_sent(received: Received) -> str:
    return str(received.json()["messages"][-1]["content"])


# --- [validation] -------------------------------------------------------------------------------


async def test_validation_applies_the_route_preset_and_its_options() -> None:
    config = parse_config(
        {"validation": {"max_prompt_tokens": 50}, "routes": {"chat": {"validation": {"max_messages": 2}}}}
    )
    three = {"model": "echo", "messages": [{"role": "user", "content": "a"}] * 3}
    async with client_for(create_app(config)) as client:
        ok = await client.post("/v1/chat/completions", json=chat("fine"))
        unknown = await client.post("/v1/chat/completions", json=chat("x", secret_field="MARKER-1"))
        too_many = await client.post("/v1/chat/completions", json=three)
        too_long = await client.post("/v1/chat/completions", json=chat("word " * 400))
        embed = await client.post("/v1/embeddings", json={"model": "echo", "input": "hi", "bogus": 1})
    assert ok.status_code == 200
    assert unknown.status_code == 422
    assert {"path": "secret_field", "rule": "unknown"} in unknown.json()["errors"]
    assert "MARKER-1" not in unknown.text
    assert too_many.status_code == 422
    assert too_long.status_code == 413
    assert too_long.json()["code"] == "prompt_too_long"
    assert embed.status_code == 422  # the embeddings preset, not the chat one


async def test_sanitisation_cleans_what_reaches_the_provider() -> None:
    upstream = FakeUpstream()
    async with serving(upstream) as port:
        app = upstream_app(port, {"validation": {}})
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=chat("pay\u200bpal \u202eevil"))
    assert response.status_code == 200
    assert text_sent(upstream.last) == "paypal evil"


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"validation": {"max_messages": 3}}, "validation.max_messages"),
        ({"validation": {"preset": "openai-chat"}}, "validation.preset"),
        ({"routes": {"chat": {"validation": {"max_msgs": 3}}}}, "routes.chat.validation.max_msgs"),
        ({"routes": {"chat": {"validation": {"preset": "nope"}}}}, "routes.chat.validation.preset"),
        ({"validation": {"caps": {"max_depth": 0}}}, "validation.caps.max_depth"),
        ({"validation": {"sanitize": {"normalize": "NFD"}}}, "validation.sanitize.normalize"),
    ],
)
def test_validation_errors_name_the_key(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        parse_config(document)


# --- [anonymize] --------------------------------------------------------------------------------


async def test_the_provider_never_receives_the_personal_data_sent_in() -> None:
    upstream = FakeUpstream()
    async with serving(upstream) as port:
        app = upstream_app(port, {"anonymize": {}})
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=chat(PII_TEXT))
            streamed = await client.post("/v1/chat/completions", json=chat(PII_TEXT, stream=False))
    assert response.status_code == 200
    assert streamed.status_code == 200
    for received in upstream.received:
        forwarded = received.body.decode()
        for value in (EMAIL, CARD, PHONE, "4111", "jane.doe"):
            assert value not in forwarded
        assert "[EMAIL_" in forwarded
    # The fake provider echoed the placeholders; the client gets its own values back.
    assert response.json()["choices"][0]["message"]["content"] == PII_TEXT


async def test_a_streamed_placeholder_split_across_chunks_is_restored() -> None:
    async def split_echo(upstream: FakeUpstream, received: Received, receive: Any, send: Any) -> None:
        text = text_sent(received)
        start = text.index("[EMAIL_")
        # Cut inside the placeholder, three times: "[EM" | "AIL_1a" | "2b...]"
        pieces = [text[: start + 3], text[start + 3 : start + 9], text[start + 9 :]]
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for piece in pieces:
            await send({"type": "http.response.body", "body": chunk(piece), "more_body": True})
        await send({"type": "http.response.body", "body": chunk(usage=(9, 3)) + DONE})

    upstream = FakeUpstream(split_echo)
    async with serving(upstream) as port:
        app = upstream_app(port, {"anonymize": {}})
        async with lifespan(app), client_for(app) as client:
            response = await client.post(
                "/v1/chat/completions", json=chat(f"write to {EMAIL} now", stream=True)
            )
    assert EMAIL not in upstream.last.body.decode()
    events = [json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: {")]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert text == f"write to {EMAIL} now"
    assert "[EMAIL_" not in response.text


def test_anonymize_refuses_unknown_operators_and_keys_in_the_file() -> None:
    with pytest.raises(ConfigurationError, match=r"anonymize\.operators\.EMAIL"):
        parse_config({"anonymize": {"operators": {"EMAIL": "shred"}}})
    with pytest.raises(ConfigurationError, match="AIRLOCK_ANONYMIZE_KEY"):
        parse_config({"anonymize": {"key": "0123456789abcdef0123"}})
    with pytest.raises(ConfigurationError, match=r"\[anonymize\].*entity"):
        create_app(parse_config({"anonymize": {"entities": ["NAME"]}}))


# --- [throttle] and [budget] --------------------------------------------------------------------


async def test_request_limits_answer_429_with_headers_and_spare_the_health_check() -> None:
    config = parse_config({"throttle": {"requests": "2/minute"}})
    async with client_for(create_app(config)) as client:
        answers = [await client.post("/v1/chat/completions", json=chat("x")) for _ in range(3)]
        models = await client.get("/v1/models")
        health = [await client.get("/healthz") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "rate_limited"
    assert "retry-after" in answers[2].headers
    assert "ratelimit-policy" in answers[0].headers
    assert models.status_code == 429  # one limit for the caller across routes
    assert {h.status_code for h in health} == {200}


async def test_a_route_with_its_own_limits_counts_apart() -> None:
    config = parse_config(
        {
            "throttle": {"requests": "1/minute"},
            "routes": {"embeddings": {"throttle": {"requests": "5/minute"}}},
        }
    )
    async with client_for(create_app(config)) as client:
        chats = [await client.post("/v1/chat/completions", json=chat("x")) for _ in range(2)]
        embeds = [await client.post("/v1/embeddings", json={"model": "echo", "input": "x"}) for _ in range(3)]
    assert [a.status_code for a in chats] == [200, 429]
    assert [a.status_code for a in embeds] == [200, 200, 200]


async def test_token_budget_settles_on_reported_usage_and_runs_out() -> None:
    upstream = FakeUpstream()  # reports 11 prompt + 7 completion tokens
    sink = RecordingSink()
    async with serving(upstream) as port:
        app = with_audit(
            upstream_app(port, {"budget": {"tokens": "70/minute", "default_max_tokens": 10}}), sink
        )
        async with lifespan(app), client_for(app) as client:
            answers = [await client.post("/v1/chat/completions", json=chat("hi")) for _ in range(4)]
    # Each request reserves about 32 tokens (estimate + max_tokens) and settles at the 18 the
    # provider reported: three fit in 70 only because the first two were settled down to 18.
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[3].json()["code"] == "budget_exhausted"
    assert [ctx.audit["budget"]["tokens"].get("settled") for ctx in sink.events] == [18, 18, 18, None]
    # The budget capped the completion: the provider was asked for at most default_max_tokens.
    assert upstream.received[0].json()["max_tokens"] == 10


async def test_a_streamed_reply_settles_the_budget_from_its_final_chunk() -> None:
    upstream = FakeUpstream(stream([chunk("ok"), chunk(finish="stop"), chunk(usage=(5, 2)), DONE]))
    sink = RecordingSink()
    async with serving(upstream) as port:
        app = with_audit(upstream_app(port, {"budget": {"tokens": "5000/minute"}, "anonymize": {}}), sink)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=chat(PII_TEXT, stream=True))
    assert response.status_code == 200
    assert EMAIL not in upstream.last.body.decode()
    (ctx,) = sink.events
    assert ctx.audit["budget"]["tokens"]["settled"] == 7
    assert ctx.audit["budget"]["tokens"]["outcome"] == "settled"


def test_throttle_needs_something_to_limit() -> None:
    with pytest.raises(ConfigurationError, match=r"\[throttle\] needs requests"):
        parse_config({"throttle": {"storage": "memory://"}})
    with pytest.raises(ConfigurationError, match=r"budget\.tokens is required"):
        parse_config({"budget": {}})
    with pytest.raises(ConfigurationError, match=r"throttle\.on_storage_error"):
        parse_config({"throttle": {"requests": "1/second", "on_storage_error": "maybe"}})


# --- [audit] ------------------------------------------------------------------------------------


async def test_audit_writes_one_event_per_request_with_provider_facts(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    upstream = FakeUpstream()
    async with serving(upstream) as port:
        app = upstream_app(port, {"audit": {"path": str(path)}, "anonymize": {}})
        async with lifespan(app), client_for(app) as client:
            await client.post("/v1/chat/completions", json=chat(PII_TEXT))
            await client.get("/healthz")
            await client.post(
                "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
            )
    with anyio.fail_after(5):
        while len(path.read_text().splitlines()) < 2:
            await anyio.sleep(0.02)
    lines = path.read_text().splitlines()
    assert len(lines) == 2  # the health check left no trace
    first, second = (json.loads(line) for line in lines)
    assert first["provider"] == "openai"
    assert first["usage"]["total_tokens"] == 18
    assert first["entities"]["EMAIL"] == 1
    assert second["code"] == "invalid_json"
    for value in (EMAIL, CARD, PHONE):
        assert value not in path.read_text()


async def test_consent_is_required_for_personal_data(tmp_path: Path) -> None:
    config = parse_config({"anonymize": {}, "audit": {"path": str(tmp_path / "a.jsonl"), "consent": {}}})
    async with lifespan(app := create_app(config)), client_for(app) as client:
        refused = await client.post("/v1/chat/completions", json={**chat(PII_TEXT), "model": "echo"})
        allowed = await client.post(
            "/v1/chat/completions",
            json={**chat(PII_TEXT), "model": "echo"},
            headers={"x-airlock-consent": "yes"},
        )
        plain = await client.post("/v1/chat/completions", json={**chat("no personal data"), "model": "echo"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "consent_required"
    assert allowed.status_code == 200
    assert plain.status_code == 200


def test_audit_applies_to_every_route() -> None:
    with pytest.raises(ConfigurationError, match="applies to every route"):
        parse_config({"routes": {"chat": {"audit": {"path": "x.jsonl"}}}})
    with pytest.raises(ConfigurationError, match="AIRLOCK_AUDIT"):
        parse_config({"audit": {"secret": "x"}})


def test_the_default_config_wires_no_stage_section() -> None:
    assert GatewayConfig().stages == {}
