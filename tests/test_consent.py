"""RequireConsent: personal data goes on only with consent (a header or an identity claim)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Context, Identity, Policy
from airlock.audit import AuditLog, RequireConsent
from airlock.identity import FromCallable

from helpers import client_for

pytestmark = pytest.mark.anyio


class Found:
    """Stands in for the anonymize stage: reports the entity counts named in the body."""

    async def __call__(self, ctx: Context) -> None:
        ctx.entity_counts.update(ctx.json.get("found", {}))


class Handler:
    def __init__(self) -> None:
        self.calls = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        return JSONResponse({"ok": True})


def build(
    consent: RequireConsent, *, claims: dict[str, Any] | None = None
) -> tuple[Any, Handler, io.StringIO]:
    handler = Handler()
    out = io.StringIO()
    identity = FromCallable(lambda scope: Identity(kind="user", id="user:1", claims=claims or {}))
    policy = Policy(
        identity=identity, anonymize=[Found(), consent], audit=AuditLog(stream=out, identity_key="k" * 32)
    )
    app = Starlette(
        routes=[Route("/chat", handler.endpoint, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )
    return app, handler, out


async def post(app: Any, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    async with client_for(app) as http:
        return await http.post("/chat", json=body, headers=headers or {})


async def events(app: Any, out: io.StringIO) -> list[dict[str, Any]]:
    policy = app.user_middleware[0].kwargs["policy"]
    await policy.audit.shutdown()
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_personal_data_without_consent_is_refused_with_403() -> None:
    app, handler, out = build(RequireConsent())
    response = await post(app, {"found": {"EMAIL": 2, "PHONE": 1}})
    assert response.status_code == 403
    problem = response.json()
    assert problem["code"] == "consent_required"
    assert problem["entities"] == ["EMAIL", "PHONE"]
    assert "x-airlock-consent" in problem["detail"]
    assert handler.calls == 0
    [event] = await events(app, out)
    assert event["code"] == "consent_required"
    assert event["stage"] == "anonymize"
    assert event["facts"]["consent"] == {"required": True, "present": False, "source": None}


@pytest.mark.parametrize("value", ["true", "1", "YES", " granted "])
async def test_consent_header_lets_it_through_and_is_recorded(value: str) -> None:
    app, handler, out = build(RequireConsent())
    response = await post(app, {"found": {"EMAIL": 1}}, {"x-airlock-consent": value})
    assert response.status_code == 200
    assert handler.calls == 1
    [event] = await events(app, out)
    assert event["facts"]["consent"] == {"required": True, "present": True, "source": "header"}


@pytest.mark.parametrize("value", ["false", "0", "", "no", "maybe"])
async def test_a_header_that_does_not_say_yes_is_no_consent(value: str) -> None:
    app, handler, _ = build(RequireConsent())
    response = await post(app, {"found": {"EMAIL": 1}}, {"x-airlock-consent": value})
    assert response.status_code == 403
    assert handler.calls == 0


@pytest.mark.parametrize("claim", [True, "true", ["analytics", "granted"]])
async def test_identity_claim_gives_consent(claim: Any) -> None:
    app, _, out = build(RequireConsent(header=None, claim="pii_consent"), claims={"pii_consent": claim})
    response = await post(app, {"found": {"EMAIL": 1}})
    assert response.status_code == 200
    [event] = await events(app, out)
    assert event["facts"]["consent"]["source"] == "claim"


@pytest.mark.parametrize("claim", [False, "false", 1, ["analytics"], None])
async def test_a_claim_that_does_not_say_yes_is_no_consent(claim: Any) -> None:
    app, _, _ = build(RequireConsent(header=None, claim="pii_consent"), claims={"pii_consent": claim})
    assert (await post(app, {"found": {"EMAIL": 1}})).status_code == 403


async def test_claim_only_policy_ignores_the_header() -> None:
    app, _, _ = build(RequireConsent(header=None, claim="pii_consent"))
    response = await post(app, {"found": {"EMAIL": 1}}, {"x-airlock-consent": "true"})
    assert response.status_code == 403


async def test_content_without_personal_data_needs_no_consent() -> None:
    app, handler, out = build(RequireConsent())
    assert (await post(app, {"found": {}})).status_code == 200
    assert (await post(app, {"found": {"EMAIL": 0}})).status_code == 200
    assert handler.calls == 2
    first, _ = await events(app, out)
    assert first["facts"]["consent"] == {"required": False, "present": False, "source": None}


async def test_secrets_alone_are_not_personal_data_by_default() -> None:
    app, _, _ = build(RequireConsent())
    assert (await post(app, {"found": {"SECRET": 3}})).status_code == 200


async def test_entities_option_narrows_what_needs_consent() -> None:
    app, _, _ = build(RequireConsent(entities=["US_SSN", "CREDIT_CARD"]))
    assert (await post(app, {"found": {"EMAIL": 1}})).status_code == 200
    response = await post(app, {"found": {"EMAIL": 1, "US_SSN": 1}})
    assert response.status_code == 403
    assert response.json()["entities"] == ["US_SSN"]


@pytest.mark.parametrize("values", [["opt-in"], "opt-in"])
async def test_custom_header_and_values(values: Any) -> None:
    app, _, _ = build(RequireConsent(header="X-User-Consent", values=values))
    assert (await post(app, {"found": {"EMAIL": 1}}, {"x-user-consent": "Opt-In"})).status_code == 200
    assert (await post(app, {"found": {"EMAIL": 1}}, {"x-user-consent": "true"})).status_code == 403


@pytest.mark.parametrize(
    "options",
    [
        {"header": None},
        {"header": ""},
        {"header": "bad\u00e9"},
        {"header": "x-consent: yes"},
        {"claim": ""},
        {"values": []},
    ],
)
async def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RequireConsent(**options)
