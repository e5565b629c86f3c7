"""Outbound TLS: HTTPS only, TLS >= 1.2, certificates and hostnames always verified."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from pathlib import Path

import anyio
import pytest
import trustme

from airlock.errors import ConfigurationError
from airlock.gateway.config import parse_config
from airlock.provider import ProviderSettings, check_base_url, make_ssl_context

from fake_upstream import (
    FakeUpstream,
    gateway_app,
    legacy_client_context,
    legacy_tls_server,
    lifespan,
    serving,
)
from helpers import client_for

pytestmark = pytest.mark.anyio

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "over tls"}]}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_pem(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(path))
    return str(path)


def test_context_floor_is_tls_1_2_with_verification_on() -> None:
    context = make_ssl_context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_a_ca_bundle_replaces_the_system_store(ca_file: str, ca: trustme.CA) -> None:
    context = make_ssl_context(ca_file)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.verify_mode is ssl.CERT_REQUIRED
    (only,) = context.get_ca_certs()
    assert dict(item[0] for item in only["subject"])["organizationName"].startswith("trustme")


def test_bad_ca_bundles_are_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        make_ssl_context(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="no usable PEM"):
        make_ssl_context(junk)


@pytest.mark.parametrize(
    ("url", "allow", "message"),
    [
        ("http://api.example.com/v1", True, "must use https"),
        ("http://127.0.0.1:8080/v1", False, "allow_http_loopback"),
        ("ftp://api.example.com", False, "https://"),
        ("https://user:pw@api.example.com/v1", False, "must not carry credentials"),
        ("https://api.example.com/v1?key=x", False, "query"),
        ("https://", False, "name a host"),
    ],
)
def test_base_urls_that_are_refused(url: str, allow: bool, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        check_base_url(url, allow_http_loopback=allow)
    assert "pw" not in str(info.value)


def test_base_urls_that_are_accepted() -> None:
    assert check_base_url("https://api.openai.com/v1/") == "https://api.openai.com/v1"
    assert (
        check_base_url("http://127.0.0.1:11434/v1", allow_http_loopback=True) == "http://127.0.0.1:11434/v1"
    )
    assert check_base_url("http://localhost:8000", allow_http_loopback=True) == "http://localhost:8000"
    assert check_base_url("http://[::1]:8000", allow_http_loopback=True) == "http://[::1]:8000"


def test_there_is_no_option_that_turns_verification_off() -> None:
    names = {f.name for f in dataclasses.fields(ProviderSettings)}
    assert not names & {"verify", "insecure", "verify_ssl", "ssl_verify", "check_hostname", "tls_verify"}
    for option in ("verify = false", "insecure = true", "check_hostname = false"):
        with pytest.raises(ConfigurationError, match="unknown key"):
            parse_config({"provider": {"kind": "openai", **_toml_pair(option)}})


def _toml_pair(line: str) -> dict[str, object]:
    name, _, value = line.partition(" = ")
    return {name: value == "true"}


async def test_self_signed_upstream_is_refused_by_default(server_pem: str) -> None:
    upstream = FakeUpstream()
    async with serving(upstream, ssl_certfile=server_pem) as port:
        app = gateway_app(port, scheme="https", max_retries=2)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "upstream_error"
    assert body["reason"] == "tls"
    assert upstream.received == []  # nothing was sent before the handshake failed


async def test_self_signed_upstream_is_accepted_with_its_ca_configured(server_pem: str, ca_file: str) -> None:
    upstream = FakeUpstream()
    async with serving(upstream, ssl_certfile=server_pem) as port:
        app = gateway_app(port, scheme="https", ca_bundle=ca_file)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "over tls"
    assert upstream.last.headers["authorization"].startswith("Bearer sk-test-")


async def test_a_certificate_for_another_host_is_refused_even_from_a_trusted_ca(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    ca.issue_cert("api.example.com").private_key_and_cert_chain_pem.write_to_path(str(other))
    upstream = FakeUpstream()
    async with serving(upstream, ssl_certfile=str(other)) as port:
        app = gateway_app(port, scheme="https", ca_bundle=ca_file)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["reason"] == "tls"
    assert upstream.received == []


async def test_a_server_offering_only_tls_1_1_is_refused(ca: trustme.CA, ca_file: str) -> None:
    cert = ca.issue_cert("127.0.0.1")
    with legacy_tls_server(cert) as (port, outcomes):
        # Control: a permissive client completes a TLS 1.1 handshake with this server, so the
        # refusal below is our floor at work, not a server that cannot speak at all.
        def control() -> str | None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                try:
                    with legacy_client_context(ca).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        return tls.version()
                except ssl.SSLError:
                    return None

        version = await anyio.to_thread.run_sync(control)
        if version is None:
            pytest.skip(
                "this OpenSSL cannot negotiate TLS 1.1 even at security level 0; "
                "test_context_floor_is_tls_1_2_with_verification_on covers the floor"
            )
        assert version == "TLSv1.1"
        app = gateway_app(port, scheme="https", ca_bundle=ca_file, max_retries=2)
        async with lifespan(app), client_for(app) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 502
    assert response.json()["reason"] == "tls"
    # One control handshake that succeeded, one refused attempt, and no retry of a TLS failure.
    assert outcomes[0] == "TLSv1.1"
    assert len(outcomes) == 2
    assert outcomes[1] != "TLSv1.1"
