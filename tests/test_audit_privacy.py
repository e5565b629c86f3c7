"""Nothing the client sent and no secret reaches the audit log: unique markers everywhere, then grep."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ApiKeyAuth, Context, KeyStore, Policy, generate_key, hash_key
from airlock.audit import AuditLog, RequireConsent
from airlock.errors import ValidationFailed

from helpers import RawExchange, http_scope

pytestmark = pytest.mark.anyio

MARKERS = {
    "body": "zq-body-7f3a1@example.com",
    "nested": "zq-nested-55c2",
    "header": "zq-header-9b1e",
    "agent": "zq-agent-3d4c",
    "referer": "zq-referer-8e8e",
    "query": "zq-query-1a2b",
    "path": "zq-path-c0ffee",
    "cookie": "zq-cookie-77aa",
    "forwarded": "zq-forwarded-4242",
    "reply": "zq-reply-6e6e",
    "placeholder": "zq-placeholder-ab12",
    "finding": "zq-finding-3131",
    "error": "zq-error-5151",
    "provider_key": "zq-provider-key-0000",
    "extension": "zq-extension-9999",
    "key_name": "zq-keyname",
}


class Findings:
    """Stands in for the anonymize stage: counts entities, keeps a vault, reports facts."""

    async def __call__(self, ctx: Context) -> None:
        ctx.entity_counts["EMAIL"] = 1
        ctx.vault = {"<EMAIL_1>": MARKERS["placeholder"]}
        ctx.audit["anonymize"] = {"replaced": 1, "finding": object()}
        ctx.json["messages"][0]["content"] = "<EMAIL_1>"
        ctx.mark_modified()


class RefuseFlagged:
    async def __call__(self, ctx: Context) -> None:
        if ctx.json.get("refuse"):
            raise ValidationFailed(
                extensions={
                    "errors": [{"path": "refuse", "rule": "forbidden", "value": MARKERS["extension"]}]
                }
            )


async def reply(request: Request) -> Response:
    payload = await request.json()
    if payload.get("explode"):
        raise RuntimeError(MARKERS["error"])
    ctx: Context = request.state.airlock
    ctx.report_usage(3, 4, provider="echo", model="echo-1")
    return JSONResponse({"echo": payload, "reply": MARKERS["reply"]})


def build(audit: AuditLog) -> Starlette:
    key = generate_key()
    policy = Policy(
        identity=ApiKeyAuth(KeyStore({MARKERS["key_name"]: hash_key(key)})),
        validate=RefuseFlagged(),
        anonymize=[Findings(), RequireConsent()],
        audit=audit,
    )
    app = Starlette(
        routes=[Route("/v1/items/{item}", reply, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    app.state.key = key
    return app


@pytest.mark.parametrize("sink_fails", [False, True])
async def test_no_marker_reaches_any_log_line(
    sink_fails: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", MARKERS["provider_key"])
    out, fallback = io.StringIO(), io.StringIO()
    if sink_fails:
        out.close()
    audit = AuditLog(stream=out, fallback=fallback, identity_key="k" * 32)
    app = build(audit)
    key = app.state.key
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {
        "authorization": f"Bearer {key}",
        "x-airlock-consent": "true",
        "x-note": MARKERS["header"],
        "user-agent": MARKERS["agent"],
        "referer": f"https://example.com/{MARKERS['referer']}",
        "cookie": f"session={MARKERS['cookie']}",
        "x-forwarded-for": MARKERS["forwarded"],
    }
    body = {"messages": [{"role": "user", "content": MARKERS["body"]}], "meta": {"n": [MARKERS["nested"]]}}
    statuses = []
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            url = f"/v1/items/{MARKERS['path']}?q={MARKERS['query']}"
            statuses.append((await http.post(url, json=body, headers=headers)).status_code)
            statuses.append((await http.post(url, json={**body, "refuse": 1}, headers=headers)).status_code)
            statuses.append((await http.post(url, json={**body, "explode": 1}, headers=headers)).status_code)
            no_consent = {k: v for k, v in headers.items() if k != "x-airlock-consent"}
            statuses.append((await http.post(url, json=body, headers=no_consent)).status_code)
            wrong_key = {**headers, "authorization": f"Bearer {key}x"}
            statuses.append((await http.post(url, json=body, headers=wrong_key)).status_code)
        # A client that leaves mid-body: abandoned, and still nothing of it in the log.
        exchange = RawExchange(
            [
                {"type": "http.request", "body": MARKERS["body"].encode(), "more_body": True},
                {"type": "http.disconnect"},
            ]
        )
        scope = http_scope(
            path=f"/v1/items/{MARKERS['path']}",
            headers=[*headers.items(), ("content-type", "application/json")],
            query_string=f"q={MARKERS['query']}".encode(),
        )
        scope["app"] = app
        await app(scope, exchange.receive, exchange.send)
        await audit.shutdown()

    assert statuses == [200, 422, 500, 403, 401]
    log = fallback.getvalue() if sink_fails else out.getvalue() + fallback.getvalue()
    assert len(log.splitlines()) == 6
    # airlock's own log records too (the test's HTTP client logs URLs; that is not airlock's log).
    ours = [r for r in caplog.records if r.name.split(".")[0] == "airlock"]
    everything = log + "".join(f"{r.getMessage()} {r.exc_text or ''}" for r in ours)
    for place, marker in MARKERS.items():
        assert marker not in everything, f"the {place} marker leaked into the log"
    assert key not in everything
    assert hash_key(key) not in everything
    for word in ("Bearer", "session=", "authorization", "cookie"):
        assert word.lower() not in log.lower()
    assert audit.stats()["sink_failures"] == (6 if sink_fails else 0)


async def test_repr_of_the_audit_objects_carries_no_key(caplog: Any) -> None:
    audit = AuditLog(
        stream=io.StringIO(), identity_key="identity-secret-abcdefgh", chain_key="chain-secret-abcdefgh"
    )
    text = repr(audit) + repr(audit._hasher) + repr(audit.sink) + repr(RequireConsent())
    assert "secret" not in text
    await audit.shutdown()
