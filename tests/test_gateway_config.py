"""airlock.toml: every section validated at start-up, errors naming the key, keys never in the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airlock.errors import ConfigurationError
from airlock.gateway import create_app, load_config, parse_config
from airlock.gateway.config import GatewayConfig

from fake_upstream import new_provider_key
from helpers import client_for

pytestmark = pytest.mark.anyio

FULL = """
[server]
host = "127.0.0.1"
port = 9000
workers = 1

[server.cors]
allow_origins = ["https://app.example.com"]

[provider]
kind = "openai"
base_url = "https://api.openai.com/v1"
api_key_env = ["OPENAI_API_KEY", "OPENAI_API_KEY_NEXT"]
api_key_file = "secrets/openai"
ca_bundle = "ca.pem"
connect_timeout = 3
read_timeout = 30.5
total_timeout = 90
max_retries = 3
models = ["gpt-4o-mini", "text-embedding-3-small"]
headers = { OpenAI-Organization = "org-123" }

[identity]
keys_file = "keys.toml"
trusted_proxies = ["10.0.0.0/8"]

[limits]
max_body_bytes = 65536
body_timeout = 5

[routes.embeddings]
max_body_bytes = 1024
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return path


def test_no_file_is_the_safe_offline_default() -> None:
    config = load_config(None)
    assert config == GatewayConfig()
    assert config.server.host == "127.0.0.1"
    assert config.provider.kind == "echo"
    assert config.identity.keys_file is None


def test_a_full_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.server.port == 9000
    assert config.server.cors.allow_origins == ("https://app.example.com",)
    provider = config.provider
    assert provider.api_key_env == ("OPENAI_API_KEY", "OPENAI_API_KEY_NEXT")
    assert provider.api_key_file == (str(tmp_path.resolve() / "secrets/openai"),)
    assert provider.ca_bundle == str(tmp_path.resolve() / "ca.pem")
    assert (provider.connect_timeout, provider.read_timeout, provider.total_timeout) == (3.0, 30.5, 90.0)
    assert provider.headers == {"OpenAI-Organization": "org-123"}
    assert config.identity.keys_file == str(tmp_path.resolve() / "keys.toml")
    assert config.limits.max_body_bytes == 65536
    assert config.route("embeddings").limits.max_body_bytes == 1024
    assert config.route("embeddings").limits.body_timeout == 5.0  # inherited from [limits]
    assert config.route("chat").limits.max_body_bytes == 65536


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"server": {"port": "80"}}, "server.port"),
        ({"server": {"workers": 0}}, "server.workers"),
        ({"server": {"cors": {"allow_origins": ["app.example.com"]}}}, "server.cors.allow_origins"),
        ({"provider": {"kind": "anthropic"}}, "provider.kind"),
        ({"provider": {"kind": "openai", "read_timeout": "slow"}}, "provider.read_timeout"),
        ({"provider": {"kind": "openai", "max_retries": 50}}, "provider.max_retries"),
        ({"provider": {"kind": "openai", "base_url": "http://api.example.com"}}, "provider.base_url"),
        ({"provider": {"kind": "echo", "base_url": "https://api.example.com"}}, "echo"),
        ({"provider": {"kind": "openai", "api_key_env": "my-key"}}, "provider.api_key_env"),
        ({"identity": {"trusted_proxies": [1]}}, "identity.trusted_proxies"),
        ({"limits": {"max_json_depth": 0}}, "limits.max_json_depth"),
        ({"limits": {"body_timeout": True}}, "limits.body_timeout"),
        ({"routes": {"chat": {"max_body_bytes": "big"}}}, "routes.chat.max_body_bytes"),
    ],
)
def test_errors_name_the_key(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace(".", r"\.")):
        parse_config(document)


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"serverr": {}}, "serverr"),
        ({"server": {"hots": "x"}}, "hots"),
        ({"provider": {"kind": "openai", "verify": False}}, "verify"),
        ({"routes": {"completions": {}}}, "completions"),
        ({"routes": {"chat": {"max_body": 1}}}, "max_body"),
    ],
)
def test_unknown_names_are_refused(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        parse_config(document)


@pytest.mark.parametrize("name", ["api_key", "key", "token", "secret", "password"])
def test_a_key_option_is_refused_with_where_to_put_it(name: str) -> None:
    key = new_provider_key()
    with pytest.raises(ConfigurationError) as info:
        parse_config({"provider": {"kind": "openai", name: key}})
    message = str(info.value)
    assert f"provider.{name}" in message
    assert "api_key_env" in message
    assert "api_key_file" in message
    assert key not in message


@pytest.mark.parametrize(
    "document",
    [
        {"provider": {"kind": "openai", "headers": {"X-Custom": "KEY"}}},
        {"provider": {"kind": "openai", "api_key_env": "KEY"}},
        {"identity": {"header": "KEY"}},
        {"routes": {"chat": {"note": ["a", "KEY"]}}},
        {"provider": {"kind": "openai", "headers": {"X-Custom": "Bearer abcdefghijkl"}}},
    ],
)
def test_a_key_written_anywhere_is_refused_without_echoing_it(document: dict[str, Any]) -> None:
    key = new_provider_key()

    def plant(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plant(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plant(v) for v in value]
        return key if value == "KEY" else value

    with pytest.raises(ConfigurationError, match="looks like a key") as info:
        parse_config(plant(document))
    assert key not in str(info.value)
    assert "api_key_env" in str(info.value)


def test_credential_headers_and_parameters_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"provider\.headers\.Authorization"):
        parse_config({"provider": {"kind": "openai", "headers": {"Authorization": "x"}}})
    with pytest.raises(ConfigurationError, match=r"provider\.query\.api_key"):
        parse_config({"provider": {"kind": "openai", "query": {"api_key": "x"}}})


def test_broken_toml_and_missing_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\nport = 1"))
    with pytest.raises(ConfigurationError, match="cannot read config"):
        load_config(tmp_path / "missing.toml")


def test_a_missing_key_variable_stops_the_gateway_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRLOCK_TEST_UNSET_KEY", raising=False)
    config = parse_config({"provider": {"kind": "openai", "api_key_env": "AIRLOCK_TEST_UNSET_KEY"}})
    with pytest.raises(ConfigurationError, match="AIRLOCK_TEST_UNSET_KEY is not set"):
        create_app(config)


async def test_route_overrides_apply_to_their_route_only() -> None:
    config = parse_config(
        {"limits": {"max_body_bytes": 4096}, "routes": {"embeddings": {"max_body_bytes": 64}}}
    )
    big = "x" * 200
    async with client_for(create_app(config)) as client:
        chat = await client.post(
            "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": big}]}
        )
        embed = await client.post("/v1/embeddings", json={"model": "echo", "input": big})
    assert chat.status_code == 200
    assert embed.status_code == 413
    assert embed.json()["max_body_bytes"] == 64


async def test_the_models_list_is_served_and_enforced() -> None:
    config = parse_config({"provider": {"models": ["echo", "echo-large"]}})
    async with client_for(create_app(config)) as client:
        listed = await client.get("/v1/models")
        allowed = await client.post("/v1/chat/completions", json={"model": "echo-large", "messages": []})
        refused = await client.post("/v1/chat/completions", json={"model": "gpt-5", "messages": []})
        missing = await client.post("/v1/embeddings", json={"input": "x"})
    assert [m["id"] for m in listed.json()["data"]] == ["echo", "echo-large"]
    assert listed.json()["object"] == "list"
    assert allowed.status_code == 200
    assert refused.status_code == 422
    assert refused.json()["errors"] == [{"path": "model", "rule": "allowed"}]
    assert "gpt-5" not in refused.text
    assert missing.status_code == 422
    assert missing.json()["errors"] == [{"path": "model", "rule": "required"}]
