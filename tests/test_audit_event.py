"""The audit event: schema, outcomes, keyed identity hashes, address policy, bounded facts."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, Context, Identity, Policy
from airlock.audit import SCHEMA, AuditLog, KeyedHasher
from airlock.errors import RateLimited, ValidationFailed
from airlock.identity import FromCallable

from helpers import RawExchange, http_scope

pytestmark = pytest.mark.anyio

IDENTITY_KEY = "identity-key-for-tests-0123456789"
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def read_events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def flushed(audit: AuditLog) -> None:
    assert await anyio.to_thread.run_sync(audit.flush, 10.0)


class Stage:
    """A test stage: runs ``action(ctx)`` (which may raise a rejection)."""

    def __init__(self, action: Any) -> None:
        self.action = action

    async def __call__(self, ctx: Context) -> None:
        self.action(ctx)


async def endpoint(request: Request) -> Response:
    ctx: Context = request.state.airlock
    ctx.report_usage(120, 30, provider="echo", model="echo-1")
    return JSONResponse({"ok": True})


async def boom(request: Request) -> Response:
    raise RuntimeError("the app failed")


def make_app(audit: AuditLog, **policy: Any) -> Starlette:
    policy.setdefault("identity", FromCallable(lambda scope: "user-42"))
    routes = [
        Route("/v1/items/{item_id}", endpoint, methods=["POST", "GET"]),
        Route("/boom", boom, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=audit, **policy))]
    )


def client(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("203.0.113.77", 5555))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
async def audit(stream: io.StringIO) -> Any:
    log = AuditLog(stream=stream, identity_key=IDENTITY_KEY)
    yield log
    await log.shutdown()


async def test_accepted_request_event_has_the_documented_fields(audit: AuditLog, stream: io.StringIO) -> None:
    async with client(make_app(audit)) as http:
        response = await http.post(
            "/v1/items/7", json={"q": "hello"}, headers={"traceparent": TRACEPARENT, "x-request-id": "req-1"}
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-1"
    await flushed(audit)
    [event] = read_events(stream)

    assert RFC3339_UTC.fullmatch(event["timestamp"])
    assert event["level"] == "INFO"
    assert event["message"] == "POST /v1/items/{item_id} 200 allowed"
    assert event["schema"] == SCHEMA == "airlock.audit/1"
    assert event["request_id"] == "req-1"
    assert event["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert event["method"] == "POST"
    assert event["route"] == "/v1/items/{item_id}"
    assert event["outcome"] == "allowed"
    assert event["status"] == 200
    assert "stage" not in event
    assert "code" not in event
    assert event["bytes_in"] == len(b'{"q":"hello"}')
    assert event["bytes_out"] == len(response.content)
    assert event["duration_us"] >= sum(event["timings_us"].values())
    assert set(event["timings_us"]) == {"identify", "read_body", "parse"}
    assert all(type(value) is int for value in event["timings_us"].values())
    assert event["provider"] == "echo"
    assert event["model"] == "echo-1"
    assert event["usage"] == {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    assert event["client"] == "203.0.113.0/24"
    assert event["identity"]["kind"] == "user"
    assert set(event["chain"]) == {"id", "seq", "prev", "alg", "hash"}


async def test_identity_hash_is_the_documented_hmac_and_never_the_raw_id(
    audit: AuditLog, stream: io.StringIO
) -> None:
    async with client(make_app(audit)) as http:
        await http.post("/v1/items/1", json={})
    await flushed(audit)
    [event] = read_events(stream)
    expected = hmac.new(IDENTITY_KEY.encode(), b"identity\x00user:user-42", hashlib.sha256).hexdigest()[:32]
    assert event["identity"]["hash"] == expected
    assert event["identity"]["kid"] == KeyedHasher(IDENTITY_KEY).key_id
    assert "user-42" not in stream.getvalue()


async def test_same_identity_same_hash_across_logs_with_one_key_and_not_with_another() -> None:
    same = [KeyedHasher(IDENTITY_KEY).identity("key:alice") for _ in range(2)]
    other = KeyedHasher("another-key-for-tests-0123456789").identity("key:alice")
    assert same[0] == same[1]
    assert other != same[0]
    assert KeyedHasher(IDENTITY_KEY).identity("key:bob") != same[0]


async def test_without_a_key_hashes_use_a_random_key_and_warn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRLOCK_AUDIT_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="airlock.audit"):
        first, second = KeyedHasher(), KeyedHasher()
    assert first.ephemeral
    assert second.ephemeral
    assert first.identity("user:1") != second.identity("user:1")
    assert "AIRLOCK_AUDIT_KEY" in caplog.text


async def test_identity_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRLOCK_AUDIT_KEY", IDENTITY_KEY)
    assert not KeyedHasher().ephemeral
    assert KeyedHasher().identity("user:1") == KeyedHasher(IDENTITY_KEY).identity("user:1")


@pytest.mark.parametrize(
    ("policy", "address", "expected"),
    [
        ("truncate", "198.51.100.23", "198.51.100.0/24"),
        ("truncate", "2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("truncate", "::ffff:198.51.100.23", "198.51.100.0/24"),
        ("truncate", "not-an-ip", None),
        ("none", "198.51.100.23", None),
    ],
)
async def test_client_address_policy(policy: Any, address: str, expected: str | None) -> None:
    assert KeyedHasher(IDENTITY_KEY, client=policy).client(address) == expected


async def test_client_address_hash_policy_is_keyed_and_raw_address_absent(stream: io.StringIO) -> None:
    audit = AuditLog(stream=stream, identity_key=IDENTITY_KEY, client="hash")
    async with client(make_app(audit)) as http:
        await http.post("/v1/items/1", json={})
    await audit.shutdown()
    [event] = read_events(stream)
    expected = hmac.new(IDENTITY_KEY.encode(), b"client\x00203.0.113.77", hashlib.sha256).hexdigest()[:32]
    assert event["client"] == expected
    assert "203.0.113" not in stream.getvalue()


async def test_rejected_request_names_stage_code_and_validation_paths_only(
    audit: AuditLog, stream: io.StringIO
) -> None:
    def refuse(ctx: Context) -> None:
        raise ValidationFailed(
            extensions={
                "errors": [
                    {"path": "messages.0.role", "rule": "allowed", "value": "VALUE-MARKER-1"},
                    {"path": "temperature", "rule": "max", "message": "got VALUE-MARKER-2"},
                ]
            }
        )

    async with client(make_app(audit, validate=Stage(refuse))) as http:
        response = await http.post("/v1/items/1", json={"messages": []})
    assert response.status_code == 422
    await flushed(audit)
    [event] = read_events(stream)
    assert event["outcome"] == "rejected"
    assert event["stage"] == "validate"
    assert event["code"] == "validation_failed"
    assert event["status"] == 422
    assert event["message"] == "POST /v1/items/{item_id} 422 validation_failed"
    assert event["validation"] == [
        {"path": "messages.0.role", "rule": "allowed"},
        {"path": "temperature", "rule": "max"},
    ]
    assert "VALUE-MARKER" not in stream.getvalue()


async def test_throttle_and_budget_facts_and_problem_extensions(audit: AuditLog, stream: io.StringIO) -> None:
    def budget_state(ctx: Context) -> None:
        ctx.audit["budget"] = {"remaining": 900, "reserved": 100, "settled": None}

    def limited(ctx: Context) -> None:
        ctx.audit["throttle"] = {"limit": "10/minute", "remaining": 0, "reset": 12.5}
        raise RateLimited(headers={"Retry-After": "13"}, extensions={"retry_after": 13})

    app = make_app(audit, admit=Stage(budget_state))
    async with client(app) as http:
        await http.post("/v1/items/1", json={})
    app2 = make_app(audit, admit=[Stage(budget_state), Stage(limited)])
    async with client(app2) as http:
        response = await http.post("/v1/items/1", json={})
    assert response.status_code == 429
    await flushed(audit)
    allowed, limited_event = read_events(stream)
    assert allowed["facts"] == {"budget": {"remaining": 900, "reserved": 100, "settled": None}}
    assert limited_event["facts"]["throttle"] == {"limit": "10/minute", "remaining": 0, "reset": 12.5}
    assert limited_event["code"] == "rate_limited"
    assert limited_event["stage"] == "admit"
    assert limited_event["problem"] == {"retry_after": 13}


async def test_entity_counts_token_estimate_and_failed_open_is_critical(
    audit: AuditLog, stream: io.StringIO
) -> None:
    def findings(ctx: Context) -> None:
        ctx.entity_counts.update({"EMAIL": 2, "PHONE": 1})
        ctx.token_estimate = 321
        ctx.failed_open.append("throttle")
        ctx.audit["anonymize"] = {"replaced": 3}

    async with client(make_app(audit, anonymize=Stage(findings))) as http:
        await http.post("/v1/items/1", json={"text": "x"})
    await flushed(audit)
    [event] = read_events(stream)
    assert event["level"] == "CRITICAL"
    assert event["failed_open"] == ["throttle"]
    assert event["entities"] == {"EMAIL": 2, "PHONE": 1}
    assert event["token_estimate"] == 321
    assert event["facts"]["anonymize"] == {"replaced": 3}


async def test_app_error_is_an_error_event(audit: AuditLog, stream: io.StringIO) -> None:
    async with client(make_app(audit)) as http:
        response = await http.post("/boom", json={})
    assert response.status_code == 500
    await flushed(audit)
    [event] = read_events(stream)
    assert event["outcome"] == "error"
    assert event["status"] == 500
    assert event["level"] == "ERROR"
    assert "the app failed" not in stream.getvalue()


async def test_abandoned_request_is_recorded_once(audit: AuditLog, stream: io.StringIO) -> None:
    app = make_app(audit)
    exchange = RawExchange(
        [
            {"type": "http.request", "body": b'{"q": ', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    scope = http_scope(path="/v1/items/1", headers=[("content-type", "application/json")])
    scope["app"] = app
    await app(scope, exchange.receive, exchange.send)
    assert exchange.status is None
    await flushed(audit)
    [event] = read_events(stream)
    assert event["outcome"] == "abandoned"
    assert event["stage"] == "read_body"
    assert event["status"] is None
    assert event["disconnected"] is True


@pytest.mark.parametrize(
    "value",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # v00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",  # short
        "garbage",
    ],
)
async def test_invalid_traceparent_gives_no_trace_id(
    audit: AuditLog, stream: io.StringIO, value: str
) -> None:
    async with client(make_app(audit)) as http:
        await http.post("/v1/items/1", json={}, headers={"traceparent": value})
    await flushed(audit)
    [event] = read_events(stream)
    assert "trace_id" not in event


async def test_future_traceparent_version_with_extra_fields_is_accepted(
    audit: AuditLog, stream: io.StringIO
) -> None:
    value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
    async with client(make_app(audit)) as http:
        await http.post("/v1/items/1", json={}, headers={"traceparent": value})
    await flushed(audit)
    assert read_events(stream)[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


class Opaque:
    def __repr__(self) -> str:
        return "OPAQUE-REPR-MARKER"


class SneakyStr(str):
    pass


async def test_stage_facts_are_bounded_to_json_scalars(audit: AuditLog, stream: io.StringIO) -> None:
    def messy(ctx: Context) -> None:
        ctx.audit["sanitize"] = {
            "removed": 4,
            "object": Opaque(),
            "subclass": SneakyStr("SUBCLASS-MARKER"),
            "bytes": b"BYTES-MARKER",
            "nan": float("nan"),
            "long": "L" * 10_000,
            "many": list(range(1000)),
            "deep": {"a": {"b": {"c": {"d": {"e": 1}}}}},
        }

    async with client(make_app(audit, sanitize=Stage(messy))) as http:
        await http.post("/v1/items/1", json={})
    await flushed(audit)
    text = stream.getvalue()
    facts = read_events(stream)[0]["facts"]["sanitize"]
    assert facts["removed"] == 4
    assert facts["nan"] is None
    assert len(facts["long"]) == 128
    assert facts["many"] == list(range(32))
    assert facts["deep"] == {"a": {}}
    assert {"object", "subclass", "bytes"}.isdisjoint(facts)
    for marker in ("OPAQUE-REPR-MARKER", "SUBCLASS-MARKER", "BYTES-MARKER"):
        assert marker not in text
    assert len(text) < 8000


async def test_unregistered_method_is_logged_as_other(audit: AuditLog, stream: io.StringIO) -> None:
    app = make_app(audit, json=False)
    exchange = RawExchange([{"type": "http.request", "body": b"", "more_body": False}])
    await app(http_scope(method="JANE-DOE-METHOD", path="/nowhere"), exchange.receive, exchange.send)
    await flushed(audit)
    [event] = read_events(stream)
    assert event["method"] == "OTHER"
    assert event["route"] is None
    assert "JANE-DOE" not in stream.getvalue()


async def test_rename_fields_for_cloud_logging(stream: io.StringIO) -> None:
    audit = AuditLog(stream=stream, identity_key=IDENTITY_KEY, rename_fields={"level": "severity"})
    async with client(make_app(audit)) as http:
        await http.post("/v1/items/1", json={})
    await audit.shutdown()
    [event] = read_events(stream)
    assert event["severity"] == "INFO"
    assert "level" not in event


async def test_identity_claims_and_name_are_never_logged(stream: io.StringIO) -> None:
    def who(scope: Any) -> Identity:
        return Identity(
            kind="user", id="user:CLAIM-ID-MARKER", name="NAME-MARKER", claims={"email": "CLAIM-MARKER"}
        )

    audit = AuditLog(stream=stream, identity_key=IDENTITY_KEY)
    async with client(make_app(audit, identity=FromCallable(who))) as http:
        await http.post("/v1/items/1", json={})
    await audit.shutdown()
    text = stream.getvalue()
    assert "MARKER" not in text
    assert read_events(stream)[0]["identity"]["kind"] == "user"


async def test_an_event_that_cannot_be_built_still_leaves_a_minimal_one(
    audit: AuditLog, stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    def corrupt(ctx: Context) -> None:
        ctx.timings["custom"] = Opaque()  # type: ignore[assignment]

    with caplog.at_level(logging.ERROR, logger="airlock.audit"):
        async with client(make_app(audit, admit=Stage(corrupt))) as http:
            response = await http.post("/v1/items/1", json={}, headers={"x-request-id": "req-broken"})
        await flushed(audit)
    assert response.status_code == 200
    [event] = read_events(stream)
    assert event["audit_error"] == "event_build_failed"
    assert event["request_id"] == "req-broken"
    assert event["level"] == "ERROR"
    assert "OPAQUE-REPR-MARKER" not in stream.getvalue() + caplog.text
    assert "building the event failed (TypeError)" in caplog.text
