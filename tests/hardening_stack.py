"""The whole engine, every stage on, for the hardening tests (fuzzing, wrong types, leaks).

``Stack`` builds one Starlette app behind ``AirlockMiddleware``: API-key identity, a rate
limit and a concurrency cap, a validation preset per route (plus a custom Cerberus schema),
sanitisation, anonymization, a token budget and an ``AuditLog`` writing to a file. The
handler answers with what it received, so pseudonym restore runs on every accepted reply.
``Stack.send`` drives one request as a raw ASGI exchange and returns what the client saw
and the audit lines that request left.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ApiKeyAuth, KeyStore, Policy, hash_key
from airlock.anonymize import Anonymize, Anonymizer
from airlock.audit import AuditLog
from airlock.errors import problem_codes
from airlock.parse import parse_json
from airlock.sanitize import Sanitize
from airlock.throttle import ConcurrencyLimit, RateLimit, TokenBudget
from airlock.validation import Validate

from fake_upstream import DONE, FakeUpstream, Received, chunk, completion, echo_completion
from helpers import RawExchange, http_scope

CLIENT_KEY = "ak_hardening_client_key_Zx81qPw0vLm3"
ANONYMIZE_KEY = "hardening-anonymize-key-0123456789"
AUDIT_KEY = "hardening-audit-key-0123456789abcd"

# A Cerberus schema of its own, so a non-preset route is fuzzed too.
CUSTOM_SCHEMA: dict[str, Any] = {
    "question": {"type": "string", "required": True, "empty": False, "maxlength": 2000},
    "lang": {"type": "string", "allowed": ["en", "fr", "de"]},
    "tags": {"type": "list", "maxlength": 5, "schema": {"type": "string", "regex": "[a-z]{1,16}"}},
    "meta": {
        "type": "dict",
        "keysrules": {"type": "string", "maxlength": 32},
        "valuesrules": {"type": "integer"},
    },
}

ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/ask")


def route_overrides(anonymizer: Anonymizer) -> dict[str, dict[str, Any]]:
    """Each route's validation; the custom route also names its text field for the text stages."""
    return {
        "/v1/chat/completions": {"validate": Validate(preset="openai-chat")},
        "/v1/responses": {"validate": Validate(preset="openai-responses")},
        "/v1/embeddings": {"validate": Validate(preset="openai-embeddings")},
        "/ask": {
            "validate": Validate(schema=CUSTOM_SCHEMA, text_fields=["question"]),
            "sanitize": Sanitize(fields=["question"]),
            "anonymize": Anonymize(anonymizer, fields=["question"]),
        },
    }


# Every documented problem code (computed after all modules defined their rejections).
CODES = frozenset(problem_codes())

# Keys a client chose are shown in validation paths when they look like field names
# (documented in the validation README); anything else must never be echoed.
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")

# Every string constant airlock itself could write into a problem or an audit line.
# Hypothesis mines literals from the code under test, so a generated string may equal
# one of them; such a coincidence is not an echo of the client's content.
_SOURCE = Path(__file__).resolve().parent.parent / "src" / "airlock"
AIRLOCK_TEXT = "\n".join(path.read_text(encoding="utf-8") for path in sorted(_SOURCE.rglob("*.py")))
_AIRLOCK_TEXT_LOWER = AIRLOCK_TEXT.lower()


async def _handler(request: Request) -> Response:
    ctx = request.state.airlock
    document = await request.json()
    ctx.report_usage(7, 5)
    # ensure_ascii: the document may hold a lone surrogate the app has to be able to answer with.
    return Response(json.dumps({"received": document}), media_type="application/json")


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: bytes
    audit: list[dict[str, Any]]
    received: list[bytes] = field(default_factory=list)

    def problem(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Stack:
    """The app, its audit log file, and what the handler received."""

    def __init__(self, directory: Path, *, max_body_bytes: int = 4 * 1024 * 1024) -> None:
        self.audit_path = directory / "audit.jsonl"
        self.audit = AuditLog(path=self.audit_path, identity_key=AUDIT_KEY, chain_key=AUDIT_KEY)
        self._offset = 0
        self.received: list[bytes] = []
        anonymizer = Anonymizer(key=ANONYMIZE_KEY)
        policy = Policy(
            identity=ApiKeyAuth(KeyStore({"fuzzer": hash_key(CLIENT_KEY)})),
            admit=(RateLimit("1000000/minute"), ConcurrencyLimit(64)),
            sanitize=Sanitize(),
            anonymize=Anonymize(anonymizer),
            budget=TokenBudget("1000000000/minute"),
            audit=self.audit,
            max_body_bytes=max_body_bytes,
            linger_seconds=0.01,
        )
        received = self.received

        async def handler(request: Request) -> Response:
            received.append(await request.body())
            return await _handler(request)

        self.app = Starlette(
            routes=[Route(path, handler, methods=["POST"]) for path in ROUTES],
            middleware=[Middleware(AirlockMiddleware, policy=policy, routes=route_overrides(anonymizer))],
        )

    async def send(
        self, path: str, body: bytes, *, headers: list[tuple[str, str | bytes]] | None = None
    ) -> Outcome:
        if headers is None:
            headers = [("content-type", "application/json"), ("authorization", f"Bearer {CLIENT_KEY}")]
        exchange = RawExchange([{"type": "http.request", "body": body, "more_body": False}])
        before = len(self.received)
        await self.app(http_scope(path=path, headers=headers), exchange.receive, exchange.send)
        assert exchange.status is not None, "no response was sent"
        return Outcome(
            exchange.status,
            exchange.headers,
            exchange.body,
            await self.new_audit_lines(),
            self.received[before:],
        )

    async def new_audit_lines(self) -> list[dict[str, Any]]:
        assert await anyio.to_thread.run_sync(self.audit.flush)
        with self.audit_path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        return [json.loads(line) for line in data.splitlines() if line.strip()]

    def close(self) -> None:
        self.audit.close()


def leaked(text: str, where: bytes) -> bool:
    """Whether the client's ``text`` shows in ``where`` (as UTF-8 or as a JSON escape)."""
    forms = {json.dumps(text)[1:-1].encode("ascii"), text.encode("utf-8", "surrogatepass")}
    return any(form in where for form in forms)


@functools.lru_cache(maxsize=65536)
def trackable(text: str) -> bool:
    """Long and varied enough that finding it elsewhere means it was copied there."""
    return (
        len(text) >= 8
        and len(set(text)) >= 3
        and not text.isdigit()
        and text.lower() not in _AIRLOCK_TEXT_LOWER
    )


def strings_of(document: Any) -> tuple[list[str], list[str]]:
    """``(values, keys)``: every string value and every object key in ``document``."""
    values: list[str] = []
    keys: list[str] = []
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            values.append(node)
        elif isinstance(node, dict):
            keys.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return values, keys


def check_outcome(outcome: Outcome, values: list[str], keys: list[str]) -> None:
    """The properties every request must keep, whatever it sent."""
    assert outcome.status < 500, outcome.status
    assert len(outcome.audit) == 1, f"{len(outcome.audit)} audit events for one request"
    event = outcome.audit[0]
    assert event["status"] == outcome.status
    assert event["request_id"] == outcome.headers["x-request-id"]
    line = json.dumps(event).encode("ascii")
    shown_keys = [text for text in keys if not FIELD_NAME.fullmatch(text)]
    for text in [*values, *shown_keys]:
        if trackable(text):
            assert not leaked(text, line), "submitted content is in the audit event"
    if outcome.status < 400:
        assert event["outcome"] == "allowed"
        # What the app (and the provider behind it) receives is strict JSON: UTF-8, no NaN,
        # no Infinity, no duplicate keys. parse_json raises on anything else.
        (body,) = outcome.received
        parse_json(body, max_depth=10_000)
        return
    assert outcome.received == [], "the handler ran for a refused request"
    assert outcome.headers["content-type"] == "application/problem+json"
    problem = outcome.problem()
    assert problem["code"] in CODES, problem["code"]
    assert problem["status"] == outcome.status
    assert event["code"] == problem["code"]
    for text in [*values, *shown_keys]:
        if trackable(text):
            assert not leaked(text, outcome.body), "submitted content is in the problem body"


# --- a provider that misbehaves on request -------------------------------------------------------


def last_user_text(received: Received) -> str:
    messages = received.json().get("messages", [])
    texts = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return texts[-1] if texts and isinstance(texts[-1], str) else ""


def _pieces(text: str, size: int = 7) -> list[str]:
    """Split like a model streams tokens: placeholders get cut in the middle."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def behaviour(name: str) -> Any:
    """A fake provider's answer by name: ok, stall, reset, garbage, e500 and the stream_* ones."""

    async def run(upstream: FakeUpstream, received: Received, receive: Any, send: Any) -> None:
        async def start(status: int, content_type: str) -> None:
            headers = [(b"content-type", content_type.encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})

        if name in ("ok", "echo"):
            body = json.dumps(completion("fine" if name == "ok" else last_user_text(received))).encode()
            await start(200, "application/json")
            await send({"type": "http.response.body", "body": body})
        elif name.startswith("leak_key_"):
            # A provider that quotes the key it was sent in its error (OpenAI does, partly).
            status = int(name.rsplit("_", 1)[1])
            message = f"Incorrect API key provided: {received.headers.get('authorization', '')}"
            await start(status, "application/json")
            await send(
                {"type": "http.response.body", "body": json.dumps({"error": {"message": message}}).encode()}
            )
        elif name == "stall":
            await anyio.sleep_forever()
        elif name == "reset":
            await start(200, "application/json")
            await send({"type": "http.response.body", "body": b'{"id": "chat', "more_body": True})
            raise RuntimeError("fake upstream drops the connection")
        elif name == "garbage":
            await start(200, "application/json")
            await send({"type": "http.response.body", "body": b"\x00\xff<html>not json"})
        elif name == "e500":
            await start(500, "application/json")
            await send({"type": "http.response.body", "body": b'{"error": {"message": "down"}}'})
        else:  # streams: fine, stalled after one event, garbage events, cut
            await start(200, "text/event-stream")
            events = {
                "stream_ok": [chunk("a"), chunk("b"), chunk(usage=(3, 2)), DONE],
                "stream_stall": [chunk("a")],
                "stream_garbage": [b"data: {not json\n\n", b"\xff\xfe\n\n", chunk("a"), DONE],
                "stream_cut": [chunk("a")],
                "stream_echo": [
                    *(chunk(piece) for piece in _pieces(last_user_text(received))),
                    chunk(usage=(3, 2)),
                    DONE,
                ],
            }[name]
            for event in events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if name == "stream_stall":
                await anyio.sleep_forever()
            if name == "stream_cut":
                raise RuntimeError("fake upstream drops the stream")
            await send({"type": "http.response.body", "body": b""})

    return run


async def by_user_field(upstream: FakeUpstream, received: Received, receive: Any, send: Any) -> None:
    """Answer as the request's ``user`` field says (the gateway forwards it unchanged)."""
    if received.path.endswith("/embeddings"):
        await echo_completion()(upstream, received, receive, send)
        return
    await behaviour(received.json()["user"])(upstream, received, receive, send)
