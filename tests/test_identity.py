"""Identity: hashed API keys with rotation, callables and authenticated users, trusted proxies."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import (
    AirlockMiddleware,
    ApiKeyAuth,
    ClientAddress,
    ConfigurationError,
    FromCallable,
    Identity,
    KeyStore,
    Policy,
    from_user,
    generate_key,
    hash_key,
)

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def whoami(request: Request) -> JSONResponse:
    identity = request.state.airlock.identity
    return JSONResponse({"kind": identity.kind, "id": identity.id})


def app_with(
    identity: Any, sink: RecordingSink | None = None, middleware: list[Middleware] | None = None
) -> Starlette:
    return Starlette(
        routes=[Route("/whoami", whoami, methods=["GET", "POST"])],
        middleware=[
            *(middleware or []),
            Middleware(AirlockMiddleware, policy=Policy(identity=identity, audit=sink)),
        ],
    )


async def test_bearer_key_identifies_by_key_name(sink: RecordingSink) -> None:
    key = generate_key()
    app = app_with(ApiKeyAuth(KeyStore({"alice": hash_key(key)})), sink)
    async with client_for(app) as client:
        response = await client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
    assert response.json() == {"kind": "key", "id": "key:alice"}
    assert key not in repr(sink.events[0])


async def test_missing_key_gets_401_with_challenge(sink: RecordingSink) -> None:
    app = app_with(ApiKeyAuth(KeyStore({"alice": hash_key(generate_key())})), sink)
    async with client_for(app) as client:
        response = await client.get("/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="airlock"'
    assert response.json()["code"] == "unauthorized"
    assert sink.events[0].stage == "identify"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ak_wrongwrongwrongwrongwrong",
        "Bearer short",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer " + "x" * 5000,
    ],
)
async def test_unknown_or_malformed_key_gets_401_and_is_not_echoed(header: str) -> None:
    app = app_with(ApiKeyAuth(KeyStore({"alice": hash_key(generate_key())})))
    async with client_for(app) as client:
        response = await client.get("/whoami", headers={"Authorization": header})
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    secret = header.partition(" ")[2]
    if secret:
        assert secret not in response.text


async def test_two_authorization_headers_are_refused() -> None:
    key = generate_key()
    app = app_with(ApiKeyAuth(KeyStore({"alice": hash_key(key)})))
    async with client_for(app) as client:
        response = await client.get(
            "/whoami",
            headers=[("Authorization", f"Bearer {key}"), ("Authorization", "Bearer ak_other_other_other")],
        )
    assert response.status_code == 400
    assert response.json()["code"] == "ambiguous_credentials"


async def test_custom_header_key() -> None:
    key = generate_key()
    app = app_with(ApiKeyAuth(KeyStore({"svc": hash_key(key)}), header="X-API-Key"))
    async with client_for(app) as client:
        ok = await client.get("/whoami", headers={"X-API-Key": key})
        missing = await client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
    assert ok.json()["id"] == "key:svc"
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("ApiKey")


async def test_rotation_two_live_keys_then_file_reload(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(f'[keys]\nold = "{hash_key(old)}"\nnew = "{hash_key(new)}"\n')
    store = KeyStore.from_file(keys_file, reload_interval=0.0)
    app = app_with(ApiKeyAuth(store))
    async with client_for(app) as client:
        for key, name in ((old, "old"), (new, "new")):
            response = await client.get("/whoami", headers={"Authorization": f"Bearer {key}"})
            assert response.json()["id"] == f"key:{name}"

        keys_file.write_text(f'[keys]\nnew = "{hash_key(new)}"\n')
        later = time.time() + 5
        os.utime(keys_file, (later, later))  # make the change visible even on coarse mtime clocks
        retired = await client.get("/whoami", headers={"Authorization": f"Bearer {old}"})
        current = await client.get("/whoami", headers={"Authorization": f"Bearer {new}"})
    assert retired.status_code == 401
    assert current.status_code == 200


async def test_broken_keys_file_keeps_the_last_good_keys(tmp_path: Path) -> None:
    key = generate_key()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(f'[keys]\nalice = "{hash_key(key)}"\n')
    store = KeyStore.from_file(keys_file, reload_interval=0.0)
    keys_file.write_text("[keys\nthis is not toml")
    later = time.time() + 5
    os.utime(keys_file, (later, later))
    await store.refresh()
    assert store.lookup(key) == "alice"


def test_plain_keys_in_a_keys_file_are_refused_without_echo(tmp_path: Path) -> None:
    key = generate_key()
    keys_file = tmp_path / "keys.toml"
    keys_file.write_text(f'[keys]\nalice = "{key}"\n')
    with pytest.raises(ConfigurationError) as info:
        KeyStore.from_file(keys_file)
    assert key not in str(info.value)
    assert "airlock keys new" in str(info.value)


def test_key_store_repr_has_names_only() -> None:
    key = generate_key()
    store = KeyStore({"alice": hash_key(key)})
    assert "alice" in repr(store)
    assert hash_key(key)[7:] not in repr(store)


async def test_from_callable_sync_and_async() -> None:
    def sync_ident(scope: Any) -> str | None:
        return dict(scope["headers"]).get(b"x-user", b"").decode() or None

    async def async_ident(scope: Any) -> Identity:
        return Identity(kind="user", id="user:fixed", claims={"plan": "pro"})

    async with client_for(app_with(FromCallable(sync_ident))) as client:
        ok = await client.get("/whoami", headers={"x-user": "42"})
        anonymous = await client.get("/whoami")
    assert ok.json() == {"kind": "user", "id": "user:42"}
    assert anonymous.status_code == 401

    async with client_for(app_with(FromCallable(async_ident))) as client:
        assert (await client.get("/whoami")).json()["id"] == "user:fixed"


class HeaderBackend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = conn.headers.get("x-session-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(user)) if user else None


async def test_from_user_follows_authentication_middleware() -> None:
    app = app_with(from_user(), middleware=[Middleware(AuthenticationMiddleware, backend=HeaderBackend())])
    async with client_for(app) as client:
        ok = await client.get("/whoami", headers={"x-session-user": "jane"})
        anonymous = await client.get("/whoami")
    assert ok.json() == {"kind": "user", "id": "user:jane"}
    assert anonymous.status_code == 401


async def test_client_address_ignores_forwarded_for_from_untrusted_peer() -> None:
    app = app_with(ClientAddress())
    async with client_for(app) as client:
        response = await client.get("/whoami", headers={"X-Forwarded-For": "6.6.6.6"})
    assert response.json()["id"] == "addr:127.0.0.1"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("203.0.113.9", "addr:203.0.113.9"),
        # A client-supplied left-most value is ignored: the right-most untrusted hop is the client.
        ("6.6.6.6, 203.0.113.9", "addr:203.0.113.9"),
        ("6.6.6.6, 203.0.113.9, 10.0.0.7", "addr:203.0.113.9"),
        ("garbage, 10.0.0.7", "addr:10.0.0.7"),
        ("", "addr:127.0.0.1"),
    ],
)
async def test_client_address_walks_trusted_proxies_from_the_right(forwarded: str, expected: str) -> None:
    app = app_with(ClientAddress(trusted_proxies=["127.0.0.1", "10.0.0.0/8"]))
    async with client_for(app) as client:
        response = await client.get("/whoami", headers={"X-Forwarded-For": forwarded})
    assert response.json()["id"] == expected


def test_bad_proxy_configuration_fails_at_start_up() -> None:
    with pytest.raises(ConfigurationError):
        ClientAddress(trusted_proxies=["not-an-ip"])
