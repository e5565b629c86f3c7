"""`airlock serve` in front of an OpenAI-compatible upstream, as the README's five-minute guide runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

from fake_upstream import FakeUpstream, serving
from helpers import free_port

pytestmark = pytest.mark.anyio


async def wait_healthy(port: int, process: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient() as client:
        with anyio.fail_after(30):
            while True:
                assert process.poll() is None, process.communicate()[1]
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)).status_code == 200:
                        return
                except httpx.HTTPError:
                    await anyio.sleep(0.1)


async def test_serve_in_front_of_an_openai_compatible_upstream(tmp_path: Path) -> None:
    upstream = FakeUpstream()
    key = "sk-test-five-minutes-0123456789"
    async with serving(upstream) as upstream_port:
        config = tmp_path / "airlock.toml"
        config.write_text(
            "[provider]\n"
            'kind = "openai"\n'
            f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
            "allow_http_loopback = true\n"
            'api_key_env = "OPENAI_API_KEY"\n'
            'models = ["gpt-test"]\n'
        )
        port = free_port()
        command = [sys.executable, "-m", "airlock", "serve", "--config", str(config), "--port", str(port)]
        process = await anyio.to_thread.run_sync(
            lambda: subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "OPENAI_API_KEY": key},
            )
        )
        try:
            assert process.stdout is not None
            curl_line = await anyio.to_thread.run_sync(process.stdout.readline)
            assert '"model":"gpt-test"' in curl_line
            await wait_healthy(port, process)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "gpt-test",
                        "messages": [{"role": "user", "content": "through the gateway"}],
                    },
                )
                models = await client.get("/v1/models")
        finally:
            process.terminate()
            _, stderr = await anyio.to_thread.run_sync(process.communicate)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "through the gateway"
    assert upstream.last.headers["authorization"] == f"Bearer {key}"
    assert [m["id"] for m in models.json()["data"]] == ["gpt-test"]
    # No server banner, and the security headers, on the real wire.
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert key not in stderr


def test_serve_refuses_to_start_without_the_provider_key(tmp_path: Path) -> None:
    config = tmp_path / "airlock.toml"
    config.write_text('[provider]\nkind = "openai"\napi_key_env = "AIRLOCK_CLI_MISSING_KEY"\n')
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_CLI_MISSING_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "airlock", "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert "AIRLOCK_CLI_MISSING_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_new_says_the_file_is_reloaded() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airlock", "keys", "new", "--name", "bob"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "re-reads it on change" in result.stdout
    assert result.stdout.count("ak_") == 1  # the key is shown exactly once


async def test_serve_with_several_workers(tmp_path: Path) -> None:
    config = tmp_path / "airlock.toml"
    config.write_text("[server]\nworkers = 2\n")
    port = free_port()
    command = [sys.executable, "-m", "airlock", "serve", "--config", str(config), "--port", str(port)]
    process = await anyio.to_thread.run_sync(
        lambda: subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    )
    try:
        await wait_healthy(port, process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.post(
                "/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": "w"}]}
            )
    finally:
        process.terminate()
        _, stderr = await anyio.to_thread.run_sync(process.communicate)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "w"
    assert stderr.count("Started server process") >= 2, stderr  # one per worker
