"""What one provider is: kind, address, where its key lives, timeouts, retries, pool size.

Checked once, at construction, with errors that name the ``provider.<option>``
at fault. There is no field for the key itself (only where to read it) and no
field that turns certificate verification off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import ConfigurationError
from airlock.provider.credentials import ENV_NAME_RE
from airlock.provider.tls import check_base_url

__all__ = ["DEFAULT_BASE_URLS", "ProviderSettings"]

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1"}
_HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
# Headers and query parameters that carry credentials: the key has its own, guarded path.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "api-key", "x-api-key", "x-goog-api-key"}
)
_SECRET_PARAMS = frozenset(
    {"key", "api_key", "apikey", "api-key", "token", "access_token", "secret", "password"}
)


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigurationError(f"provider.{name} must be a number between {low:g} and {high:g}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"provider.{name} must be an integer between {low} and {high}")
    return value


def _strings(name: str, value: Any) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) and v for v in items):
        raise ConfigurationError(f"provider.{name} must be a string or a list of strings")
    return tuple(items)


def _header_map(name: str, value: Mapping[str, Any], forbidden: frozenset[str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"provider.{name} must be a table of strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _HEADER_RE.fullmatch(key) or not isinstance(item, str):
            raise ConfigurationError(f"provider.{name} must be a table of names to strings")
        if key.lower() in forbidden:
            raise ConfigurationError(
                f"provider.{name}.{key}: credentials must not be written in the config; put the key in an "
                "environment variable (provider.api_key_env) or a secret file (provider.api_key_file) "
                "and name the header with provider.auth_header"
            )
        if not item.isprintable() or "\n" in item or "\r" in item:
            raise ConfigurationError(f"provider.{name}.{key} must be a printable single-line string")
        result[key] = item
    return result


@dataclass(frozen=True)
class ProviderSettings:
    """One provider. See the README's configuration reference for every option.

    :param kind: ``"echo"`` (offline) or ``"openai"`` (any OpenAI-compatible API).
    :param base_url: e.g. ``https://api.openai.com/v1``; https only (see ``allow_http_loopback``).
    :param api_key_env: environment variable name(s) holding the key; several for rotation.
    :param api_key_file: secret file path(s) holding the key; several for rotation.
    :param auth_header: ``authorization`` sends ``Bearer <key>``; any other name sends the bare
        key in that header (``api-key`` for Azure OpenAI).
    :param headers: extra, non-secret request headers (e.g. ``OpenAI-Organization``).
    :param query: extra query parameters (e.g. Azure's ``api-version``).
    :param ca_bundle: PEM file of the CA(s) to trust instead of the system store.
    :param allow_http_loopback: allow ``http://`` to a loopback address (tests, local models).
    :param connect_timeout: seconds to connect (TCP and TLS).
    :param read_timeout: seconds to wait for each read; in a stream, the longest gap between chunks.
    :param total_timeout: seconds for a whole non-streamed call, retries included; for a
        streamed call, until the provider starts answering.
    :param max_retries: retries after the first attempt.
    :param retry_backoff: base of the exponential backoff, seconds.
    :param retry_backoff_max: the longest single wait, seconds; a longer Retry-After is not waited for.
    :param max_connections: connections in the pool.
    :param max_keepalive_connections: idle connections kept open.
    :param max_response_bytes: the largest non-streamed reply (and the largest single streamed event).
    :param models: the models ``GET /v1/models`` lists; when not empty, only these may be requested.
    :param key_cooldown: seconds a key the provider refused (401) is set aside before it is tried again.
    """

    kind: str = "echo"
    base_url: str | None = None
    api_key_env: tuple[str, ...] = ()
    api_key_file: tuple[str, ...] = ()
    auth_header: str = "authorization"
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None
    allow_http_loopback: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    total_timeout: float = 120.0
    max_retries: int = 2
    retry_backoff: float = 0.5
    retry_backoff_max: float = 8.0
    max_connections: int = 100
    max_keepalive_connections: int = 20
    max_response_bytes: int = 8 * 1024 * 1024
    models: tuple[str, ...] = ()
    key_cooldown: float = 60.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.kind not in ("echo", "openai"):
            raise ConfigurationError("provider.kind must be 'echo' or 'openai'")
        set_(self, "api_key_env", _strings("api_key_env", self.api_key_env))
        if not all(ENV_NAME_RE.fullmatch(name) for name in self.api_key_env):
            raise ConfigurationError(
                "provider.api_key_env takes the NAME of an environment variable (letters, digits, '_'), "
                "not the key itself"
            )
        set_(self, "api_key_file", _strings("api_key_file", self.api_key_file))
        set_(self, "models", _strings("models", self.models))
        if not isinstance(self.allow_http_loopback, bool):
            raise ConfigurationError("provider.allow_http_loopback must be true or false")
        if self.kind == "echo":
            if self.base_url is not None or self.api_key_env or self.api_key_file:
                raise ConfigurationError(
                    "provider.kind = 'echo' is offline: it takes no base_url and no key "
                    "(set provider.kind = 'openai' to call a provider)"
                )
        else:
            url = self.base_url if self.base_url is not None else DEFAULT_BASE_URLS[self.kind]
            set_(self, "base_url", check_base_url(url, allow_http_loopback=self.allow_http_loopback))
        if not isinstance(self.auth_header, str) or not _HEADER_RE.fullmatch(self.auth_header):
            raise ConfigurationError("provider.auth_header must be a header name")
        set_(self, "auth_header", self.auth_header.lower())
        set_(self, "headers", _header_map("headers", self.headers, _SECRET_HEADERS | {self.auth_header}))
        set_(self, "query", _header_map("query", self.query, _SECRET_PARAMS))
        if self.ca_bundle is not None and (not isinstance(self.ca_bundle, str) or not self.ca_bundle):
            raise ConfigurationError("provider.ca_bundle must be the path of a PEM file")
        set_(self, "connect_timeout", _number("connect_timeout", self.connect_timeout, 0.01, 600))
        set_(self, "read_timeout", _number("read_timeout", self.read_timeout, 0.01, 3600))
        set_(self, "total_timeout", _number("total_timeout", self.total_timeout, 0.01, 3600))
        _integer("max_retries", self.max_retries, 0, 10)
        set_(self, "retry_backoff", _number("retry_backoff", self.retry_backoff, 0, 60))
        set_(self, "retry_backoff_max", _number("retry_backoff_max", self.retry_backoff_max, 0, 600))
        _integer("max_connections", self.max_connections, 1, 10_000)
        _integer("max_keepalive_connections", self.max_keepalive_connections, 0, 10_000)
        _integer("max_response_bytes", self.max_response_bytes, 1024, 1024**3)
        set_(self, "key_cooldown", _number("key_cooldown", self.key_cooldown, 0, 86_400))

    def __repr__(self) -> str:
        # Sources only; settings never hold a key, and this stays short in tracebacks.
        return f"<ProviderSettings kind={self.kind!r} base_url={self.base_url!r}>"
