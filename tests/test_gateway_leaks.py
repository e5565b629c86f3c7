"""The provider key never appears in a log line, an error body, an exception or a repr (grep test).

One unique key-shaped marker is the provider key; the fake upstream is made to
misbehave in every way it can, including echoing the key back in its error
bodies, while every logger runs at DEBUG and stdout/stderr are captured. Then
everything a person could read is searched for the marker.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from airlock.errors import ConfigurationError
from airlock.gateway import load_config
from airlock.provider.openai import OpenAIProvider

from fake_upstream import (
    DONE,
    FakeUpstream,
    chunk,
    gateway_app,
    lifespan,
    new_provider_key,
    reset_mid_body,
    respond,
    serving,
    stall,
    stream,
)
from helpers import RecordingSink, client_for, free_port

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


async def test_the_provider_key_is_never_shown(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    key = new_provider_key()
    echoing = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
    upstream = FakeUpstream(
        respond(200, {"id": "ok", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
        respond(401, echoing),
        respond(403, echoing),
        respond(400, echoing),
        respond(404, echoing),
        respond(500, echoing),
        respond(429, echoing, headers={"retry-after": "100"}),
        respond(400, echoing, headers={"content-type": "text/plain"}),
        reset_mid_body(),
        stream([chunk("a"), chunk(usage=(1, 1)), DONE]),
        respond(401, echoing),
        stall(),
    )
    sink = RecordingSink()
    seen: list[str] = []
    statuses: list[int] = []
    errors: list[BaseException] = []
    async with serving(upstream) as port:
        app = gateway_app(port, key, sink=sink, max_retries=0, read_timeout=0.3)
        provider: OpenAIProvider = app.state.provider
        async with lifespan(app), client_for(app) as client:
            for _ in range(9):
                response = await client.post("/v1/chat/completions", json=CHAT)
                statuses.append(response.status_code)
                seen.append(response.text + json.dumps(dict(response.headers)))
            for _ in range(2):
                response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
                statuses.append(response.status_code)
                seen.append(response.text + json.dumps(dict(response.headers)))
            response = await client.post("/v1/chat/completions", json=CHAT)  # stalls -> 504
            statuses.append(response.status_code)
            seen.append(response.text)
        dead = gateway_app(free_port(), key, max_retries=1)
        async with lifespan(dead), client_for(dead) as client:
            seen.append((await client.post("/v1/chat/completions", json=CHAT)).text)
        seen.extend(
            [repr(provider), repr(provider.settings), repr(provider.keys), repr(provider.keys.current())]
        )
        seen.append(repr(vars(provider)))
    for ctx in sink.events:
        seen.append(repr(ctx))
        seen.append(json.dumps(ctx.audit, default=str))
        if ctx.problem is not None:
            errors.append(ctx.problem)
    for error in errors:
        seen.extend([repr(error), str(error), json.dumps(error.extensions), json.dumps(error.headers)])
    out, err = capfd.readouterr()
    logs = caplog.text + "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert statuses == [200, 502, 502, 400, 404, 502, 503, 502, 502, 200, 502, 504]
    assert len(sink.events) == 12
    assert any("[REDACTED]" in text for text in seen)  # the passed-on 400 had the key scrubbed
    for place, text in [
        ("responses/reprs", "\n".join(seen)),
        ("logs", logs),
        ("stdout", out),
        ("stderr", err),
    ]:
        assert key not in text, place
        assert key[8:] not in text, place  # not even the random part


def test_a_key_in_the_config_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    key = new_provider_key()
    path = tmp_path / "airlock.toml"
    path.write_text(f'[provider]\nkind = "openai"\nheaders = {{ X-Note = "{key}" }}\n')
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert key not in str(info.value)
    assert key not in repr(info.value)
    assert "provider.headers.X-Note" in str(info.value)


async def test_httpx_debug_logging_does_not_carry_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    key = new_provider_key()
    upstream = FakeUpstream()
    async with serving(upstream) as port:
        app = gateway_app(port, key)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert upstream.last.headers["authorization"] == f"Bearer {key}"  # it was really sent...
    assert any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)
    assert key not in caplog.text  # ...and never logged
