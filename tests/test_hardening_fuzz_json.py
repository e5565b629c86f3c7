"""Fuzzing JSON bodies through the whole engine, every stage on (tests/hardening_stack.py).

Documents start from a valid request of each route (three OpenAI presets and a custom
Cerberus schema) and get mutated: any node replaced by deep, wide, huge, oddly encoded
or wrongly typed values, keys added, the root replaced; the JSON text itself may repeat
keys, carry lone-surrogate escapes, raw surrogates, ``NaN``/``Infinity``, numbers that
overflow a float or an int. Whatever arrives: never a 500, never an exception out of the
middleware, exactly one audit event, a documented problem code for every refusal, no
submitted value in the problem body or the audit event, and what the app receives is
strict JSON.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock import hash_key
from airlock.gateway import create_app
from airlock.gateway.config import parse_config
from hardening_stack import CLIENT_KEY, CODES, FIELD_NAME, Stack, check_outcome, leaked, strings_of, trackable

from fake_upstream import lifespan
from helpers import RawExchange, http_scope

pytestmark = pytest.mark.anyio

BASES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Mail jane.roe@example.org or call +1 415 555 0100"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "card 4111 1111 1111 1111"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                ],
            },
        ],
        "temperature": 0.5,
        "max_tokens": 64,
        "stop": ["END"],
        "metadata": {"ticket": "T-1"},
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
    },
    "/v1/responses": {
        "model": "gpt-test",
        "instructions": "Answer briefly.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "my ssn is 536-90-4399"}]}],
        "max_output_tokens": 64,
    },
    "/v1/embeddings": {"model": "embed-test", "input": ["hello jane.roe@example.org", "second line"]},
    "/ask": {
        "question": "Is DE89 3704 0044 0532 0130 00 my IBAN?",
        "lang": "en",
        "tags": ["bank"],
        "meta": {"n": 1},
    },
}


class Raw(str):
    """A JSON token written as is (``1e400``, ``NaN``, a 5000-digit integer)."""


class Dup:
    """An object whose members are written in order, repeated keys included."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def dump(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Dup):
        members = (dump(k, ascii_only) + ":" + dump(v, ascii_only) for k, v in value.pairs)
        return "{" + ",".join(members) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(dump(k, ascii_only) + ":" + dump(v, ascii_only) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


ODD_CHARACTERS = st.one_of(
    st.characters(),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.sampled_from(
        [
            "\u200b", "\u202e", "\u2066", "\ufeff", "\U000e0041", "\ufe0f", "\x00", "\x7f", "\x85",
            "\u2028", "\ufffe", "\uffff", "\U0010ffff", "\u0661", "\uff14", "\u00ad", "\u180e",
            "\U0001f600", "\u0301", "@", ".", "-", " ", "4", "[", "]", "\\", '"', "<", "_",
        ]
    ),
)  # fmt: skip
TEXT = st.text(alphabet=ODD_CHARACTERS, max_size=40)
PII = st.sampled_from(
    [
        "jane.roe@example.org",
        "4111 1111 1111 1111",
        "+44 20 7946 0958",
        "DE89 3704 0044 0532 0130 00",
        "536-90-4399",
        "sk-proj-Qm9vYmFyQmF6UXV4MTIzNDU2Nzg5MA",
        "AKIAIOSFODNN7EXAMPLE",
        "ja\u200bne@exa\u200cmple.com",
        "\u0664\u0661\u0661\u0661 1111 1111 1111",
    ]
)
HUGE = st.builds(
    lambda unit, size: (unit * (size // len(unit) + 1))[:size],
    st.text(alphabet=ODD_CHARACTERS, min_size=1, max_size=6),
    st.sampled_from([5_000, 70_000, 150_000, 1_000_001]),
)
STRINGS = st.one_of(TEXT, TEXT, PII, HUGE)
RAW_NUMBERS = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1E+999",
        "-0",
        "1.0e-400",
        "1" * 5000,
        "NaN",
        "Infinity",
        "-Infinity",
        "0.1e1",
        "1e308",
    ]
).map(Raw)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    RAW_NUMBERS,
)


def nested(depth: int, as_objects: bool) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = {"a": value} if as_objects and level % 2 else [value]
    return value


DEEP = st.builds(nested, st.integers(1, 300), st.booleans())
WIDE = st.one_of(
    st.integers(0, 25_000).map(lambda n: list(range(n))),
    st.integers(0, 25_000).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.integers(0, 2_000).map(lambda n: ["x" * 40] * n),
)
LEAVES = st.one_of(st.none(), NUMBERS, STRINGS)
VALUES = st.one_of(
    st.recursive(
        LEAVES,
        lambda children: (
            st.lists(children, max_size=6)
            | st.dictionaries(
                st.one_of(TEXT, st.sampled_from(["role", "content", "type", "text"])), children, max_size=6
            )
        ),
        max_leaves=20,
    ),
    DEEP,
    WIDE,
)


def slots(document: Any) -> Iterator[tuple[Any, Any]]:
    """Every ``(container, key)`` that holds a value, the root's members included."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                yield node, key
                stack.append(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield node, index
                stack.append(value)


@st.composite
def bodies(draw: st.DrawFn, route: str, bases: dict[str, Any] = BASES) -> tuple[bytes, Any]:
    """A mutated request body for ``route`` and the document it was written from."""
    document: Any = copy.deepcopy(bases[route])
    for _ in range(draw(st.integers(0, 4))):
        places = list(slots(document)) if isinstance(document, (dict, list)) else []
        action = draw(st.sampled_from(["replace", "replace", "add", "delete", "root"]))
        if action == "root" or not places:
            document = draw(VALUES)
            continue
        container, key = places[draw(st.integers(0, len(places) - 1))]
        if action == "replace":
            container[key] = draw(VALUES)
        elif action == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[draw(TEXT)] = draw(VALUES)
        else:
            container.append(draw(VALUES))
    written: Any = document
    if isinstance(document, dict) and document and draw(st.booleans()):
        # Repeat a member: the validator could check one value while the provider reads the other.
        key = draw(st.sampled_from(sorted(document)))
        written = Dup([(key, draw(VALUES)), *document.items()])
    text = dump(written, ascii_only=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass"), document


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("fuzz"))
    yield built
    built.close()


@pytest.mark.parametrize("route", list(BASES))
async def test_the_valid_base_documents_pass(stack: Stack, route: str) -> None:
    outcome = await stack.send(route, json.dumps(BASES[route]).encode())
    assert outcome.status == 200, outcome.body
    # Every base carries personal data: the app only ever sees placeholders.
    for value in ("jane.roe@example.org", "4111 1111 1111 1111", "536-90-4399", "DE89 3704"):
        assert value.encode() not in outcome.received[0]


CASES = st.sampled_from(list(BASES)).flatmap(lambda route: bodies(route).map(lambda made: (route, *made)))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=CASES)
async def test_any_json_body_gets_a_documented_answer(stack: Stack, case: tuple[str, bytes, Any]) -> None:
    route, body, document = case
    try:
        outcome = await stack.send(route, body)
    except Exception as exc:  # pragma: no cover - the failure this test exists to find
        pytest.fail(f"the middleware raised {type(exc).__name__}")
    values, keys = strings_of(document)
    check_outcome(outcome, values, keys)


async def test_wrong_content_headers_and_credentials_are_refused_cleanly(stack: Stack) -> None:
    body = json.dumps(BASES["/v1/chat/completions"]).encode()
    cases: list[tuple[list[tuple[str, str | bytes]], int]] = [
        ([("content-type", "application/json")], 401),
        ([("content-type", "application/json"), ("authorization", "Bearer ak_not_a_key_000000000000")], 401),
        ([("content-type", "application/json"), ("authorization", b"Bearer \xff\xfe")], 401),
        (
            [
                ("content-type", "text/plain"),
                ("authorization", "Bearer ak_hardening_client_key_Zx81qPw0vLm3"),
            ],
            415,
        ),
    ]
    for headers, status in cases:
        outcome = await stack.send("/v1/chat/completions", body, headers=headers)
        assert outcome.status == status
        check_outcome(outcome, *strings_of(BASES["/v1/chat/completions"]))


# --- the ready-made gateway, every config section on, in front of the echo provider -------------


class Gateway:
    def __init__(self, app: Any, audit_path: Path) -> None:
        self.app = app
        self.audit_path = audit_path

    async def post(self, path: str, body: bytes) -> RawExchange:
        exchange = RawExchange([{"type": "http.request", "body": body, "more_body": False}])
        headers: list[tuple[str, str | bytes]] = [
            ("content-type", "application/json"),
            ("authorization", f"Bearer {CLIENT_KEY}"),
        ]
        await self.app(http_scope(path=path, headers=headers), exchange.receive, exchange.send)
        return exchange


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    folder = tmp_path_factory.mktemp("gateway")
    (folder / "keys.toml").write_text(f'[keys]\nfuzzer = "{hash_key(CLIENT_KEY)}"\n')
    config = parse_config(
        {
            "provider": {"kind": "echo"},
            "identity": {"keys_file": "keys.toml"},
            "validation": {"max_prompt_tokens": 1_000_000, "sanitize": {"html": "strip_tags"}},
            "anonymize": {},
            "throttle": {"requests": "1000000/minute", "concurrency": 64},
            "budget": {"tokens": "1000000000/minute"},
            "audit": {"path": "audit.jsonl"},
        },
        base_dir=folder,
    )
    app = create_app(config)
    async with lifespan(app):
        yield Gateway(app, folder / "audit.jsonl")


GATEWAY_BASES = {
    "/v1/chat/completions": {**BASES["/v1/chat/completions"], "model": "echo"},
    "/v1/embeddings": {**BASES["/v1/embeddings"], "model": "echo"},
}
GATEWAY_CASES = st.sampled_from(list(GATEWAY_BASES)).flatmap(
    lambda route: st.tuples(
        st.just(route), bodies(route, GATEWAY_BASES), st.sampled_from([None, True, False])
    )
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=GATEWAY_CASES)
async def test_the_gateway_answers_any_json_body(
    gateway: Gateway, case: tuple[str, tuple[bytes, Any], Any]
) -> None:
    route, (body, document), streamed = case
    if streamed is not None and body.startswith(b"{") and route.endswith("completions"):
        body = b'{"stream":' + json.dumps(streamed).encode() + b"," + body[1:]
    try:
        exchange = await gateway.post(route, body)
    except Exception as exc:  # pragma: no cover - the failure this test exists to find
        pytest.fail(f"the gateway raised {type(exc).__name__}")
    status = exchange.status
    assert status is not None
    assert status < 500, exchange.body[:300]
    if status >= 400:
        assert exchange.headers["content-type"] == "application/problem+json"
        problem = exchange.json()
        assert problem["code"] in CODES
        values, keys = strings_of(document)
        for text in [*values, *(k for k in keys if not FIELD_NAME.fullmatch(k))]:
            if trackable(text):
                assert not leaked(text, exchange.body)
    # The response was finished (no hanging stream).
    assert exchange.sent[-1]["type"] == "http.response.body"
    assert not exchange.sent[-1].get("more_body", False)
