"""Each example runs as `python examples/<file>.py` and answers like its docstring says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_ready(process: subprocess.Popen[bytes], port: int) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"example exited early with {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("example did not start in time")


@pytest.fixture
def run_example() -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, **env: str) -> int:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / name)],
            env={**os.environ, "PORT": str(port), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        wait_ready(process, port)
        return port

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("name", ["starlette_app.py", "fastapi_app.py", "per_route.py"])
def test_example_serves_checked_chat_and_refuses_bad_input(run_example, name: str) -> None:  # type: ignore[no-untyped-def]
    port = run_example(name)
    base = f"http://127.0.0.1:{port}"
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(f"{base}/chat", json=chat)
    assert ok.status_code == 200
    # The full-stage example also writes the budget's default max_tokens into the request.
    assert {k: v for k, v in ok.json()["received"].items() if k != "max_tokens"} == chat
    assert "x-request-id" in ok.headers

    broken = httpx.post(f"{base}/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.headers["content-type"] == "application/problem+json"
    assert broken.json()["code"] == "invalid_json"

    too_big = httpx.post(f"{base}/chat", json={"q": "x" * 300_000})
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "body_too_large"


def test_fastapi_example_documents_problem_answers(run_example) -> None:  # type: ignore[no-untyped-def]
    port = run_example("fastapi_app.py")
    schema = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
    responses = schema["paths"]["/chat"]["post"]["responses"]
    for status in ("400", "408", "413", "415"):
        assert "application/problem+json" in responses[status]["content"]


def test_per_route_example_with_keys(run_example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airlock import generate_key, hash_key

    key = generate_key()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(f'[keys]\ndemo = "{hash_key(key)}"\n')
    port = run_example("per_route.py", AIRLOCK_KEYS_FILE=str(keys_file))
    base = f"http://127.0.0.1:{port}"
    assert httpx.post(f"{base}/chat", json={}).status_code == 401
    ok = httpx.post(f"{base}/chat", json={"a": 1}, headers={"Authorization": f"Bearer {key}"})
    assert ok.json() == {"received": {"a": 1}}


def test_starlette_example_runs_every_stage(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stdout.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "starlette_app.py")],
            env={**os.environ, "PORT": str(port), "AIRLOCK_AUDIT_KEY": "example-audit-key-0123456789"},
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_ready(process, port)
            base = f"http://127.0.0.1:{port}"
            secret = "jane.doe.example.marker@example.com"
            message = {"role": "user", "content": f"mail {secret}\u200b!"}
            sent = {"model": "gpt-4o-mini", "messages": [message]}
            ok = httpx.post(f"{base}/chat", json=sent)
            assert ok.status_code == 200, ok.text
            received = ok.json()
            # The handler saw a pseudonym (counted as one EMAIL); the reply restored the original
            # for the caller, and the zero-width space stayed removed.
            assert received["found"] == {"EMAIL": 1}
            assert received["received"]["messages"][0]["content"] == f"mail {secret}!"
            assert "ratelimit-policy" in ok.headers

            unknown = httpx.post(f"{base}/chat", json={"model": "m", "messages": [], "surprise": secret})
            assert unknown.status_code == 422
            assert secret not in unknown.text
        finally:
            process.terminate()
            process.wait(timeout=10)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert len(events) == 2
    assert secret not in log.read_text()
