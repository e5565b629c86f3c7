"""`airlock serve` and `airlock keys new` as a user runs them: real processes, real loopback sockets."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from airlock import KeyStore
from airlock._toml import toml

from helpers import free_port


def airlock(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airlock", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "airlock", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    curl_line = process.stdout.readline().strip()
    return process, curl_line


def wait_healthy(port: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("gateway did not start")


def test_serve_prints_a_curl_line_that_gets_an_echo_completion() -> None:
    port = free_port()
    process, curl_line = start_server("--port", str(port))
    try:
        assert curl_line.startswith("curl ")
        wait_healthy(port)
        if shutil.which("curl"):
            output = subprocess.run(
                shlex.split(curl_line), capture_output=True, text=True, timeout=10, check=True
            )
            completion = json.loads(output.stdout)
        else:  # pragma: no cover - curl is on the CI machine
            completion = httpx.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={
                    "model": "echo",
                    "messages": [{"role": "user", "content": "Hello, my email is jane@example.com"}],
                },
            ).json()
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["role"] == "assistant"
        assert isinstance(completion["choices"][0]["message"]["content"], str)
        assert completion["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_refuses_a_public_address_without_client_keys() -> None:
    result = airlock("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 2
    assert "without client keys" in result.stderr


def test_keys_new_prints_a_key_once_and_a_hash_line(tmp_path: Path) -> None:
    result = airlock("keys", "new", "--name", "ci-bot")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    key = next(line.split(": ", 1)[1] for line in lines if line.startswith("key"))
    entry = next(line for line in lines if line.startswith("ci-bot = "))
    assert key not in entry
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text("[keys]\n" + entry + "\n")
    assert toml.loads(keys_file.read_text())["keys"]["ci-bot"].startswith("sha256:")
    assert KeyStore.from_file(keys_file).lookup(key) == "ci-bot"


@pytest.mark.parametrize("name", ["", "has space", "x" * 65, "-leading"])
def test_keys_new_refuses_bad_names(name: str) -> None:
    result = airlock("keys", "new", "--name", name)
    assert result.returncode == 2


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    not (shutil.which("make") and shutil.which("curl") and (ROOT / ".venv" / ".run-installed").exists()),
    reason="needs make, curl and the project's .venv (made by `make test`)",
)
def test_make_run_then_the_printed_curl_line_gets_a_completion() -> None:
    """The README's quick start, literally: `make run`, then paste the printed curl line."""
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        curl_line = ""
        for line in process.stdout:
            if line.startswith("curl "):
                curl_line = line.strip()
                break
        assert curl_line, "make run printed no curl line"
        wait_healthy(port)
        output = subprocess.run(
            shlex.split(curl_line), capture_output=True, text=True, timeout=10, check=True
        )
        completion = json.loads(output.stdout)
        assert completion["choices"][0]["message"]["content"] == "Hello, my email is jane@example.com"
    finally:
        import os
        import signal

        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
