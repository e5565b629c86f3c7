"""Secrets hygiene: known markers in, grep everything a person could read.

The gateway runs with every config section on (keys file, validation with sanitisation,
anonymization, throttle, budget, audit file with consent) in front of a fake provider that
misbehaves on request, even quoting its API key back in error bodies. Every scenario the
suite knows is sent with unique markers: the client's key, a wrong client key, the
provider's key, personal data (e-mail, card, IBAN, SSN, phone), a secret pasted in a
prompt and a plain content marker. Then every log record (all loggers at DEBUG, with
their arguments and tracebacks), every line of the audit log, every problem body and
response header, every exception and every repr is searched for them.

Allowed on purpose: a reply may hold the caller's own personal data (pseudonyms are put
back into replies) and the content marker (it is the reply's content). Never allowed
anywhere: either client key, the provider key, the pasted secret. The provider never
receives personal data, the pasted secret or the client's key.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from airlock import hash_key
from airlock.gateway import create_app
from airlock.gateway.config import parse_config
from airlock.provider.openai import OpenAIProvider
from hardening_stack import by_user_field

from fake_upstream import KEY_ENV, FakeUpstream, lifespan, serving
from helpers import RawExchange, free_port, http_scope

pytestmark = pytest.mark.anyio

CLIENT_KEY = "ak_" + secrets.token_urlsafe(32)
WRONG_KEY = "ak_" + secrets.token_urlsafe(32)
PROVIDER_KEY = "sk-test-" + os.urandom(16).hex()
PASTED_SECRET = "sk-proj-" + secrets.token_hex(24)
CONTENT = "content-marker-" + secrets.token_hex(6)
EMAIL = f"zed.{secrets.token_hex(4)}@example.org"
PERSONAL = [EMAIL, "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00", "536-90-4399", "+44 20 7946 0958"]
NEVER = {
    "client key": CLIENT_KEY,
    "wrong key": WRONG_KEY,
    "provider key": PROVIDER_KEY,
    "secret": PASTED_SECRET,
}
PROMPT = f"{CONTENT} mail {EMAIL}, card 4111 1111 1111 1111, iban DE89 3704 0044 0532 0130 00, " + (
    f"ssn 536-90-4399, phone +44 20 7946 0958, my key {PASTED_SECRET}"
)


def chat(user: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "user": user, "messages": [{"role": "user", "content": PROMPT}], **extra}


def auth(key: str = CLIENT_KEY, *, consent: bool = True) -> list[tuple[str, str | bytes]]:
    headers: list[tuple[str, str | bytes]] = [
        ("content-type", "application/json"),
        ("authorization", f"Bearer {key}"),
        ("cookie", f"session={CONTENT}"),
    ]
    if consent:
        headers.append(("x-airlock-consent", "yes"))
    return headers


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


# (name, path, headers, body or messages, expected status, expected code)
SCENARIOS: list[tuple[str, str, Any, Any, int, str | None]] = [
    ("accepted", "/v1/chat/completions", auth(), body(chat()), 200, None),
    ("streamed", "/v1/chat/completions", auth(), body(chat("stream_echo", stream=True)), 200, None),
    ("embeddings", "/v1/embeddings", auth(), body({"model": "gpt-test", "input": PROMPT}), 200, None),
    ("no key", "/v1/chat/completions", auth()[:1], body(chat()), 401, "unauthorized"),
    ("wrong key", "/v1/chat/completions", auth(WRONG_KEY), body(chat()), 401, "unauthorized"),
    (
        "two keys",
        "/v1/chat/completions",
        [*auth(), ("authorization", f"Bearer {WRONG_KEY}")],
        body(chat()),
        400,
        "ambiguous_credentials",
    ),
    ("too large", "/v1/chat/completions", auth(), body(chat(pad=PROMPT * 400)), 413, "body_too_large"),
    (
        "not json type",
        "/v1/chat/completions",
        [("content-type", "text/plain"), *auth()[1:]],
        body(chat()),
        415,
        None,
    ),
    ("broken json", "/v1/chat/completions", auth(), body(chat())[:-3], 400, "invalid_json"),
    (
        "not utf-8",
        "/v1/chat/completions",
        auth(),
        body(chat()).replace(b"mail", b"\xff\xfe"),
        400,
        "invalid_encoding",
    ),
    (
        "too deep",
        "/v1/chat/completions",
        auth(),
        body(chat(extra=[[[[[[[[[[[[PROMPT]]]]]]]]]]]])),
        400,
        "json_too_deep",
    ),
    ("wrong type", "/v1/chat/completions", auth(), body(chat(temperature=PROMPT)), 422, "validation_failed"),
    (
        "unknown field",
        "/v1/chat/completions",
        auth(),
        body({**chat(), EMAIL: PROMPT}),
        422,
        "validation_failed",
    ),
    ("long string", "/v1/chat/completions", auth(), body(chat(user="x" * 5000)), 422, "json_too_large"),
    (
        "prompt too long",
        "/v1/embeddings",
        auth(),
        body({"model": "gpt-test", "input": [PROMPT] * 60}),
        413,
        None,
    ),
    (
        "bidi",
        "/v1/chat/completions",
        auth(),
        body(chat()).replace(b"mail", b"\\u202email"),
        422,
        "bidi_override",
    ),
    ("no consent", "/v1/chat/completions", auth(consent=False), body(chat()), 403, "consent_required"),
    ("budget", "/v1/chat/completions", auth(), body(chat(max_tokens=16000)), 429, "budget_exhausted"),
    ("provider 5xx", "/v1/chat/completions", auth(), body(chat("e500")), 502, "upstream_error"),
    ("provider garbage", "/v1/chat/completions", auth(), body(chat("garbage")), 502, "upstream_error"),
    ("provider reset", "/v1/chat/completions", auth(), body(chat("reset")), 502, "upstream_error"),
    ("provider stall", "/v1/chat/completions", auth(), body(chat("stall")), 504, "upstream_timeout"),
    (
        "provider quotes key 401",
        "/v1/chat/completions",
        auth(),
        body(chat("leak_key_401")),
        502,
        "upstream_error",
    ),
    ("provider quotes key 400", "/v1/chat/completions", auth(), body(chat("leak_key_400")), 400, None),
    ("stream cut", "/v1/chat/completions", auth(), body(chat("stream_cut", stream=True)), 200, None),
    ("stream stall", "/v1/chat/completions", auth(), body(chat("stream_stall", stream=True)), 200, None),
    (
        "rate limited",
        "/v1/embeddings",
        auth(),
        body({"model": "gpt-test", "input": "again"}),
        429,
        "rate_limited",
    ),
]


class Capture(logging.Handler):
    """Every record of every logger, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record) + repr(record.args) + repr(record.__dict__.get("exc_info")))


@pytest.fixture
async def capture() -> AsyncIterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def gateway(folder: Path, port: int, *, storage: str = "memory://") -> Any:
    folder.mkdir(exist_ok=True)
    (folder / "keys.toml").write_text(f'[keys]\nclient = "{hash_key(CLIENT_KEY)}"\n')
    config = parse_config(
        {
            "provider": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "allow_http_loopback": True,
                "api_key_env": KEY_ENV,
                "read_timeout": 0.3,
                "max_retries": 0,
            },
            "identity": {"keys_file": "keys.toml"},
            "limits": {"max_body_bytes": 65536, "body_timeout": 0.3, "max_json_depth": 8},
            "validation": {
                "max_prompt_tokens": 2000,
                "caps": {"max_string_length": 4096},
                "sanitize": {"refuse_bidi": True},
            },
            "anonymize": {},
            "throttle": {
                "requests": "1000/minute",
                "concurrency": 8,
                "storage": storage,
                "storage_timeout": 0.05,
            },
            "budget": {"tokens": "10000/minute", "storage": storage},
            "audit": {"path": "audit.jsonl", "consent": {}},
            # An exact sliding log: the weighted window counter could let a third request
            # through when the scenarios straddle a minute boundary.
            "routes": {"embeddings": {"throttle": {"requests": "2/minute", "strategy": "moving-window"}}},
        },
        base_dir=folder,
    )
    provider = OpenAIProvider(config.provider, environ={KEY_ENV: PROVIDER_KEY})
    return create_app(config, provider=provider)


async def exchange(app: Any, path: str, headers: Any, data: Any) -> RawExchange:
    messages = (
        data if isinstance(data, list) else [{"type": "http.request", "body": data, "more_body": False}]
    )
    raw = RawExchange(messages)
    with anyio.fail_after(5):  # never a hang
        await app(http_scope(path=path, headers=headers), raw.receive, raw.send)
    return raw


def grep(places: dict[str, str], markers: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in places.items()
        for what, value in markers.items()
        if value in text
    ]


@pytest.mark.slow
async def test_no_key_secret_or_personal_data_leaks_anywhere(tmp_path: Path, capture: Capture) -> None:
    upstream = FakeUpstream(default=by_user_field)
    outcomes: list[tuple[str, int, str]] = []
    problems: list[str] = []
    replies: list[str] = []
    async with serving(upstream) as port:
        app = gateway(tmp_path, port)
        async with lifespan(app):
            for name, path, headers, data, status, code in SCENARIOS:
                raw = await exchange(app, path, headers, data)
                text = raw.body.decode("utf-8", "replace") + json.dumps(raw.headers)
                outcomes.append((name, raw.status or 0, text))
                assert raw.status == status, (name, raw.status, text[:300])
                if code is not None:
                    assert raw.json()["code"] == code, name
                (replies if status < 300 or name == "provider quotes key 400" else problems).append(text)
            # Slow body (408) and a client that leaves mid-body and mid-stream.
            trickle = [{"type": "http.request", "body": body(chat())[:20], "more_body": True}, 1.0]
            raw = await exchange(app, "/v1/chat/completions", auth(), trickle)
            assert raw.status == 408
            problems.append(raw.body.decode())
            gone = [
                {"type": "http.request", "body": body(chat())[:20], "more_body": True},
                {"type": "http.disconnect"},
            ]
            raw = await exchange(app, "/v1/chat/completions", auth(), gone)
            assert raw.status is None
            leaving = [
                {"type": "http.request", "body": body(chat("stream_stall", stream=True)), "more_body": False},
                0.1,
                {"type": "http.disconnect"},
            ]
            raw = await exchange(app, "/v1/chat/completions", auth(), leaving)
            replies.append(raw.body.decode())
            reprs = [repr(app.state.provider), repr(app.state.config), repr(vars(app.state.provider))]
        # The limit storage on a dead port: 503 storage_unavailable.
        dead = gateway(tmp_path / "dead", port, storage=f"redis://127.0.0.1:{free_port()}/0")
        async with lifespan(dead):
            raw = await exchange(dead, "/v1/chat/completions", auth(), body(chat()))
        assert raw.status == 503
        assert raw.json()["code"] == "storage_unavailable"
        problems.append(raw.body.decode())

    audit = (tmp_path / "audit.jsonl").read_text()
    events = [json.loads(line) for line in audit.splitlines()]
    assert len(events) == len(SCENARIOS) + 3  # every request, the abandoned ones included
    assert [e["outcome"] for e in events[-3:]] == ["rejected", "abandoned", "abandoned"]
    sent = [
        received.body.decode("utf-8", "replace") + json.dumps(received.headers)
        for received in upstream.received
    ]

    everything_personal = {f"personal {i}": value for i, value in enumerate(PERSONAL)}
    leaks = grep({"logs": "\n".join(capture.texts), "audit log": audit}, {**NEVER, **everything_personal})
    leaks += grep({"logs": "\n".join(capture.texts), "audit log": audit}, {"content": CONTENT})
    leaks += grep(
        {"problem bodies": "\n".join(problems)}, {**NEVER, **everything_personal, "content": CONTENT}
    )
    leaks += grep({"replies": "\n".join(replies), "reprs": "\n".join(reprs)}, NEVER)
    leaks += grep({"provider requests": "\n".join(sent)}, {**everything_personal, "secret": PASTED_SECRET})
    leaks += grep({"provider requests": "\n".join(sent)}, {"client key": CLIENT_KEY, "wrong key": WRONG_KEY})
    assert not leaks, leaks
    assert any(CONTENT in text for text in sent)  # the prompt did reach the provider...
    assert any(EMAIL in text for text in replies)  # ...and the caller's own e-mail came back restored
    assert all(
        received.headers["authorization"] == f"Bearer {PROVIDER_KEY}" for received in upstream.received
    )
    assert "[REDACTED]" in "\n".join(replies)  # the provider's quoted key was scrubbed
