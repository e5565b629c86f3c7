"""Token budgets: reservation before the call, settlement after it, exact for concurrent first requests."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Context, FromCallable, Identity, Policy
from airlock.throttle import Alert, Alerts, LimitStorage, TokenBudget

from helpers import RawExchange, RecordingSink, client_for, http_scope, user_from_header

pytestmark = pytest.mark.anyio


USER = FromCallable(user_from_header)


class Estimate:
    """Stands in for the validation stage: sets the prompt token estimate."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    async def __call__(self, ctx: Context) -> None:
        ctx.token_estimate = self.tokens


class Upstream:
    """The handler: records what it received and reports the usage the test tells it to."""

    def __init__(self, prompt: int | None, completion: int = 0) -> None:
        self.prompt = prompt
        self.completion = completion
        self.bodies: list[dict[str, Any]] = []

    async def handle(self, request: Request) -> Response:
        self.bodies.append(json.loads(await request.body()))
        if self.prompt is not None:
            request.state.airlock.report_usage(self.prompt, self.completion, provider="test", model="m")
        return JSONResponse({"ok": True})


def make_app(
    budget: TokenBudget, upstream: Upstream, *, estimate: int | None = 40, sink: Any = None
) -> Starlette:
    policy = Policy(
        identity=USER, validate=Estimate(estimate) if estimate is not None else (), budget=budget, audit=sink
    )
    return Starlette(
        routes=[Route("/chat", upstream.handle, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )


def chat(client: httpx.AsyncClient, user: str = "alice", **body: Any) -> Any:
    body.setdefault("max_tokens", 60)
    return client.post("/chat", json={"messages": [], **body}, headers={"x-user": user})


async def test_concurrent_first_requests_never_overspend(storage: LimitStorage, sink: RecordingSink) -> None:
    # Each request reserves 40 (prompt estimate) + 60 (max_tokens) = 100 tokens and uses all of it.
    upstream = Upstream(40, 60)
    app = make_app(TokenBudget("5000/minute", storage=storage), upstream, sink=sink)
    async with client_for(app) as client:
        responses = await asyncio.gather(*(chat(client) for _ in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 50
    assert codes.count(429) == 150
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == "budget_exhausted"
    assert refused.json()["violated-policies"] == ["tokens-minute"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "5000"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    settled = [e.audit["budget"]["tokens"].get("settled") or 0 for e in sink.events]
    assert sum(settled) == 5000
    assert len(upstream.bodies) == 50


async def test_over_reservation_is_given_back(storage: LimitStorage, sink: RecordingSink) -> None:
    upstream = Upstream(10, 5)  # reserves 100, uses 15
    app = make_app(TokenBudget("1000/minute", storage=storage), upstream, sink=sink)
    async with client_for(app) as client:
        first = await chat(client)
        second = await chat(client)
        rest = [await chat(client) for _ in range(68)]
    assert first.headers["x-ratelimit-remaining-tokens"] == "900"
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 15 - 100)
    record = sink.events[0].audit["budget"]["tokens"]
    assert record["reserved"] == 100
    assert record["settled"] == 15
    assert record["refunded"] == 85
    assert record["outcome"] == "settled"
    # Request k+1 fits while 15*k + 100 <= 1000: exactly 61 in a row, then refused.
    codes = [r.status_code for r in [first, second, *rest]]
    assert codes == [200] * 61 + [429] * 9


async def test_usage_beyond_the_reservation_is_charged(sink: RecordingSink) -> None:
    upstream = Upstream(480, 20)  # reserves 40 + 60 = 100, uses 500
    app = make_app(TokenBudget("1000/minute"), upstream, sink=sink)
    async with client_for(app) as client:
        await chat(client)
        second = await chat(client)
        third = await chat(client)
    assert sink.events[0].audit["budget"]["tokens"]["charged_extra"] == 400
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 500 - 100)
    # 1000 used after two requests: the third reservation cannot fit.
    assert third.status_code == 429


async def test_unreported_usage_keeps_the_reservation(sink: RecordingSink) -> None:
    app = make_app(TokenBudget("1000/minute"), Upstream(None), sink=sink)
    async with client_for(app) as client:
        await chat(client)
        second = await chat(client)
    assert second.headers["x-ratelimit-remaining-tokens"] == "800"
    record = sink.events[0].audit["budget"]["tokens"]
    assert record["settled"] is None
    assert record["outcome"] == "unreported"


async def test_streamed_reply_settles_after_its_last_chunk(sink: RecordingSink) -> None:
    release = anyio.Event()

    async def stream(request: Request) -> StreamingResponse:
        ctx: Context = request.state.airlock

        async def chunks() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            await release.wait()
            yield b"data: [DONE]\n\n"
            ctx.report_usage(30, 20)

        return StreamingResponse(chunks(), media_type="text/event-stream")

    budget = TokenBudget("1000/minute")
    policy = Policy(identity=USER, validate=Estimate(40), budget=budget, audit=sink)
    app = Starlette(
        routes=[Route("/chat", stream, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )

    def exchange() -> tuple[dict[str, Any], RawExchange]:
        body = json.dumps({"stream": True, "max_tokens": 60}).encode()
        scope = http_scope(
            path="/chat", headers=[("content-type", "application/json"), ("x-user", "s")], app=app
        )
        return scope, RawExchange([{"type": "http.request", "body": body, "more_body": False}])

    first_scope, first = exchange()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(app, first_scope, first.receive, first.send)
            while not any(m.get("body") for m in first.sent):
                await anyio.sleep(0.005)
            # Mid-stream the whole reservation is still held.
            mid_scope, mid = exchange()
            group.start_soon(app, mid_scope, mid.receive, mid.send)
            while mid.status is None:
                await anyio.sleep(0.005)
            release.set()
    assert first.headers["x-ratelimit-remaining-tokens"] == "900"
    assert mid.headers["x-ratelimit-remaining-tokens"] == "800"
    starts = [m for m in first.sent if m["type"] == "http.response.start"]
    assert len(starts) == 1
    assert first.body == b"data: first\n\ndata: [DONE]\n\n"
    record = sink.events[0].audit["budget"]["tokens"]
    assert (record["reserved"], record["settled"], record["refunded"]) == (100, 50, 50)
    after_scope, after = exchange()
    await app(after_scope, after.receive, after.send)
    # Both streams ended and settled at 50 tokens each.
    assert after.headers["x-ratelimit-remaining-tokens"] == str(1000 - 50 - 50 - 100)


async def test_missing_max_tokens_reserves_and_sets_the_default() -> None:
    upstream = Upstream(10, 10)
    app = make_app(TokenBudget("1000/minute", default_max_tokens=256), upstream)
    async with client_for(app) as client:
        response = await client.post("/chat", json={"messages": []}, headers={"x-user": "u"})
        named = await client.post(
            "/chat", json={"messages": [], "max_completion_tokens": 100}, headers={"x-user": "u2"}
        )
    assert response.headers["x-ratelimit-remaining-tokens"] == str(1000 - 40 - 256)
    assert upstream.bodies[0] == {"messages": [], "max_tokens": 256}
    assert named.headers["x-ratelimit-remaining-tokens"] == str(1000 - 40 - 100)
    assert upstream.bodies[1] == {"messages": [], "max_completion_tokens": 100}

    untouched = Upstream(1, 1)
    app = make_app(TokenBudget("1000/minute", default_max_tokens=256, set_max_tokens=None), untouched)
    async with client_for(app) as client:
        await client.post("/chat", json={"messages": []}, headers={"x-user": "u"})
    assert untouched.bodies[0] == {"messages": []}


async def test_without_an_estimate_the_body_size_is_used(sink: RecordingSink) -> None:
    app = make_app(TokenBudget("100000/minute"), Upstream(1, 1), estimate=None, sink=sink)
    body = {"messages": [{"role": "user", "content": "x" * 900}], "max_tokens": 10}
    async with client_for(app) as client:
        await client.post("/chat", json=body, headers={"x-user": "v"})
    record = sink.events[0].audit["budget"]["tokens"]
    size = len(sink.events[0].body)
    assert record["estimate_source"] == "body_bytes"
    assert record["prompt_estimate"] == math.ceil(size / 3)
    assert record["reserved"] == math.ceil(size / 3) + 10


async def test_a_reservation_larger_than_the_budget_is_refused_without_retry_after() -> None:
    app = make_app(TokenBudget("1000/minute;5000/day"), Upstream(1, 1))
    async with client_for(app) as client:
        response = await chat(client, max_tokens=4000)
    assert response.status_code == 429
    problem = response.json()
    assert problem["code"] == "budget_exhausted"
    assert problem["violated-policies"] == ["tokens-minute"]
    assert problem["reservation"] == 4040
    assert "retry-after" not in response.headers


async def test_refusal_headers_and_retry_after_point_to_the_window_end() -> None:
    app = make_app(TokenBudget("150/minute;10000/day"), Upstream(40, 60))
    async with client_for(app) as client:
        ok = await chat(client)
        before = time.time()
        refused = await chat(client)
    assert ok.headers["x-ratelimit-limit-tokens"] == "150"
    assert ok.headers["x-ratelimit-remaining-tokens"] == "50"
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-remaining-tokens"] == "50"
    minute_end = (int(before // 60) + 1) * 60
    assert refused.headers["x-ratelimit-reset-tokens"] == str(minute_end)
    assert abs(int(refused.headers["retry-after"]) - max(1, math.ceil(minute_end - before))) <= 1
    assert refused.json()["violated-policies"] == ["tokens-minute"]


async def test_budget_share_alert_fires_once(sink: RecordingSink) -> None:
    received: list[Alert] = []

    def hook(alert: Alert) -> None:
        received.append(alert)

    alerts = Alerts(hook, budget_share=0.5)
    app = make_app(TokenBudget("1000/minute", alerts=alerts), Upstream(40, 60), sink=sink)
    async with client_for(app) as client:
        for _ in range(8):
            await chat(client, user="w")
    await alerts.shutdown()
    assert len(received) == 1
    assert received[0].kind == "budget_share"
    assert received[0].identity == "user:w"
    assert received[0].facts == {"window": "tokens-minute", "level": 500, "limit": 1000}
    flags = [e.audit["budget"]["tokens"].get("alert") for e in sink.events]
    assert flags == [None] * 4 + ["budget_share"] + [None] * 3


async def test_budgets_per_plan() -> None:
    async def plan(identity: Identity | None) -> str | None:
        return {"user:free": "200/minute", "user:pro": "1000/minute"}.get(identity.id if identity else "")

    app = make_app(TokenBudget(plan), Upstream(40, 60))
    async with client_for(app) as client:
        free = [await chat(client, user="free") for _ in range(3)]
        pro = [await chat(client, user="pro") for _ in range(11)]
        nobody = [await chat(client, user="someone") for _ in range(20)]
    assert [r.status_code for r in free] == [200, 200, 429]
    assert [r.status_code for r in pro] == [200] * 10 + [429]
    assert all(r.status_code == 200 for r in nobody)


async def test_budget_audit_is_content_free(sink: RecordingSink) -> None:
    marker = "PROMPT-MARKER-91c2"
    app = make_app(TokenBudget("1000/minute"), Upstream(5, 5), sink=sink)
    async with client_for(app) as client:
        await client.post(
            "/chat",
            json={"messages": [{"role": "user", "content": marker}], "max_tokens": 60},
            headers={"x-user": marker},
        )
    record = sink.events[0].audit["budget"]["tokens"]
    assert marker not in json.dumps(record)
    assert set(record) == {
        "limits",
        "prompt_estimate",
        "estimate_source",
        "max_tokens",
        "max_tokens_source",
        "reserved",
        "remaining",
        "outcome",
        "settled",
        "refunded",
    }


def test_budget_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        TokenBudget("lots")
    with pytest.raises(ConfigurationError):
        TokenBudget("1000/minute", default_max_tokens=0)
    with pytest.raises(ConfigurationError):
        TokenBudget("1000/minute", set_max_tokens="max_output")
    with pytest.raises(ConfigurationError):
        Alerts(budget_share=1.5)
    with pytest.raises(ConfigurationError):
        Alerts(throttled="1/second;2/minute")


async def test_a_refused_request_gives_its_reservation_back_and_bodyless_requests_reserve_nothing(
    sink: RecordingSink,
) -> None:
    async def refuse(request: Request) -> Response:
        await request.body()
        return JSONResponse({"error": "bad model"}, status_code=400)

    async def models(request: Request) -> Response:
        return JSONResponse({"data": []})

    budget = TokenBudget("1000/minute")
    app = Starlette(
        routes=[
            Route("/refuse", refuse, methods=["POST"]),
            Route("/models", models, methods=["GET"]),
            Route("/chat", Upstream(None).handle, methods=["POST"]),
        ],
        middleware=[
            Middleware(
                AirlockMiddleware,
                policy=Policy(identity=USER, validate=Estimate(40), budget=budget, audit=sink),
            )
        ],
    )
    async with client_for(app) as client:
        refused = await client.post("/refuse", json={"max_tokens": 60}, headers={"x-user": "r"})
        listing = await client.get("/models", headers={"x-user": "r"})
        after = await chat(client, user="r")
    assert refused.status_code == 400
    assert sink.events[0].audit["budget"]["tokens"]["refunded"] == 100
    assert listing.status_code == 200
    assert "x-ratelimit-remaining-tokens" not in listing.headers
    assert "budget" not in sink.events[1].audit
    assert after.headers["x-ratelimit-remaining-tokens"] == "900"
