"""FastAPI door: the dependency hands over the checked request; OpenAPI shows the problem answers."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from airlock import ApiKeyAuth, Context, KeyStore, Policy, generate_key, hash_key
from airlock.fastapi import Airlock, install

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


class Question(BaseModel):
    q: str


def make_app(sink: RecordingSink) -> tuple[FastAPI, str]:
    key = generate_key()
    app = FastAPI()
    install(app, policy=Policy(identity=ApiKeyAuth(KeyStore({"k": hash_key(key)})), audit=sink))

    @app.post("/chat")
    async def chat(checked: Annotated[Context, Depends(Airlock(max_body_bytes=50))]) -> dict[str, object]:
        return {"json": checked.json, "caller": checked.identity.id if checked.identity else None}

    @app.post("/model")
    async def model(body: Question, checked: Annotated[Context, Depends(Airlock())]) -> dict[str, object]:
        # FastAPI's own body parsing still works: airlock replays the checked body.
        return {"q": body.q, "same": checked.json == {"q": body.q}}

    @app.get("/plain")
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    return app, key


async def test_dependency_returns_checked_context(sink: RecordingSink) -> None:
    app, key = make_app(sink)
    auth = {"Authorization": f"Bearer {key}"}
    async with client_for(app) as client:
        ok = await client.post("/chat", json={"a": 1}, headers=auth)
        too_big = await client.post("/chat", json={"a": "x" * 100}, headers=auth)
        modelled = await client.post("/model", json={"q": "hello"}, headers=auth)
        no_key = await client.post("/chat", json={"a": 1})
    assert ok.json() == {"json": {"a": 1}, "caller": "key:k"}
    assert too_big.status_code == 413
    assert modelled.json() == {"q": "hello", "same": True}
    assert no_key.status_code == 401
    assert no_key.headers["content-type"] == "application/problem+json"
    assert len(sink.events) == 4


async def test_routes_without_the_dependency_are_still_checked(sink: RecordingSink) -> None:
    app, key = make_app(sink)
    async with client_for(app) as client:
        refused = await client.get("/plain")
        ok = await client.get("/plain", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert ok.json() == {"ok": "yes"}


async def test_openapi_lists_problem_answers_per_route(sink: RecordingSink) -> None:
    app, _ = make_app(sink)
    async with client_for(app) as client:
        schema = (await client.get("/openapi.json")).json()
    chat = schema["paths"]["/chat"]["post"]["responses"]
    assert {"400", "401", "408", "413", "415"} <= set(chat)
    assert "application/problem+json" in chat["413"]["content"]
    assert "body_too_large" in chat["413"]["description"]
    assert "429" not in chat  # no rate limit configured, so none documented


async def test_dependency_without_middleware_is_a_clear_programming_error() -> None:
    app = FastAPI()

    @app.get("/x")
    async def handler(checked: Annotated[Context, Depends(Airlock())]) -> dict[str, str]:
        return {}

    async with client_for(app) as client:
        with pytest.raises(RuntimeError, match="install"):
            await client.get("/x")
