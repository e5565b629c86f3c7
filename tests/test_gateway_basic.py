"""The minimal gateway: echo provider through the engine, health exempt, configuration errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from airlock import ConfigurationError, generate_key, hash_key
from airlock.gateway import create_app, load_config

from helpers import client_for

pytestmark = pytest.mark.anyio

CHAT = {
    "model": "echo",
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}],
}


async def test_echo_repeats_the_user_content_it_received() -> None:
    async with client_for(create_app()) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi there"}
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    assert response.headers["cache-control"] == "no-store"


async def test_gateway_refuses_bad_input_with_problems() -> None:
    async with client_for(create_app()) as client:
        broken = await client.post(
            "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
        )
        text = await client.post(
            "/v1/chat/completions", content=b"hi", headers={"content-type": "text/plain"}
        )
        health = await client.get("/healthz")
    assert broken.status_code == 400
    assert text.status_code == 415
    assert health.json() == {"status": "ok"}


async def test_gateway_with_keys_file_requires_a_key(tmp_path: Path) -> None:
    key = generate_key()
    (tmp_path / "keys.toml").write_text(f'[keys]\nme = "{hash_key(key)}"\n')
    (tmp_path / "airlock.toml").write_text('[identity]\nkeys_file = "keys.toml"\n')
    app = create_app(load_config(tmp_path / "airlock.toml"))
    async with client_for(app) as client:
        refused = await client.post("/v1/chat/completions", json=CHAT)
        ok = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
        health = await client.get("/healthz")
    assert refused.status_code == 401
    assert ok.status_code == 200
    assert health.status_code == 200


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "airlock.toml"
    config.write_text("[server]\nport = 'eighty'\n")
    with pytest.raises(ConfigurationError, match=r"server\.port"):
        load_config(config)
    config.write_text("[server]\nportt = 80\n")
    with pytest.raises(ConfigurationError, match="portt"):
        load_config(config)
