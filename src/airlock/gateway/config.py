"""The gateway's TOML configuration (``airlock.toml``), validated at start-up.

Each section is read by its own small function into a frozen settings object;
errors name the key at fault (``server.port must be an integer``) and never
echo a value. Sections that plug stages into the engine (validation,
anonymization, throttling, budgets, audit) register in
:data:`airlock.gateway.sections.STAGE_SECTIONS` and are read the same way, once
globally and once more for each route that overrides them.

A key written literally anywhere in the file is refused, with the place it
belongs: an environment variable (``provider.api_key_env``) or a secret file
(``provider.api_key_file``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock._toml import load_toml
from airlock.errors import ConfigurationError
from airlock.gateway.sections import STAGE_SECTIONS
from airlock.gateway.tables import Table, find_literal_secrets
from airlock.policy import DEFAULT_MAX_BODY_BYTES
from airlock.provider.settings import ProviderSettings
from airlock.provider.tls import is_loopback_host

__all__ = [
    "ROUTE_PATHS",
    "CorsConfig",
    "GatewayConfig",
    "IdentityConfig",
    "LimitsConfig",
    "RouteConfig",
    "ServerConfig",
    "is_loopback",
    "load_config",
    "parse_config",
]

# Route names used in [routes.<name>] and the paths they configure.
ROUTE_PATHS = {
    "chat": "/v1/chat/completions",
    "embeddings": "/v1/embeddings",
    "models": "/v1/models",
}
KEY_HINT = (
    'put the key in an environment variable and set provider.api_key_env = "OPENAI_API_KEY", '
    'or in a file only airlock can read and set provider.api_key_file = "/run/secrets/openai"'
)
_CORE_SECTIONS = ("server", "provider", "identity", "limits", "routes")


def is_loopback(host: str) -> bool:
    return is_loopback_host(host)


@dataclass(frozen=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ("authorization", "content-type", "x-request-id")
    max_age: int = 600

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    cors: CorsConfig = field(default_factory=CorsConfig)


@dataclass(frozen=True)
class IdentityConfig:
    keys_file: str | None = None
    header: str = "authorization"
    trusted_proxies: tuple[str, ...] = ()
    keys_reload_interval: float = 1.0


@dataclass(frozen=True)
class LimitsConfig:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = 10.0
    max_json_depth: int = 64

    def policy_fields(self) -> dict[str, Any]:
        return {
            "max_body_bytes": self.max_body_bytes,
            "body_timeout": self.body_timeout,
            "max_json_depth": self.max_json_depth,
        }


@dataclass(frozen=True)
class RouteConfig:
    """One route's overrides: limits and any stage section, merged over the global ones."""

    limits: LimitsConfig = field(default_factory=LimitsConfig)
    stages: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    provider: ProviderSettings = field(default_factory=ProviderSettings)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    # Stage section name -> its parsed settings (only the sections present in the file).
    stages: Mapping[str, Any] = field(default_factory=dict)
    routes: Mapping[str, RouteConfig] = field(default_factory=dict)
    source: str | None = None

    def route(self, name: str) -> RouteConfig:
        """``name``'s effective settings (the global ones when the file has no [routes.<name>])."""
        found = self.routes.get(name)
        return found if found is not None else RouteConfig(limits=self.limits, stages=self.stages)


def parse_server(table: Table) -> ServerConfig:
    host = table.string("host", "127.0.0.1")
    port = table.integer("port", 8000, low=1, high=65535)
    workers = table.integer("workers", 1, low=1, high=256)
    cors = table.table("cors")
    origins = cors.strings("allow_origins")
    if "*" in origins and len(origins) > 1:
        raise ConfigurationError("server.cors.allow_origins: '*' cannot be combined with other origins")
    for origin in origins:
        if origin != "*" and not origin.startswith(("https://", "http://")):
            raise ConfigurationError(
                "server.cors.allow_origins must list origins like 'https://app.example.com'"
            )
    allow_headers = cors.strings("allow_headers", CorsConfig.allow_headers)
    max_age = cors.integer("max_age", 600, low=0, high=86_400)
    cors.done()
    table.done()
    return ServerConfig(host, port, workers, CorsConfig(origins, allow_headers, max_age))


def parse_provider(table: Table) -> ProviderSettings:
    table.refuse_secrets(KEY_HINT)
    defaults = ProviderSettings()
    options: dict[str, Any] = {
        "kind": table.string("kind", "echo"),
        "base_url": table.string("base_url"),
        "api_key_env": table.strings("api_key_env"),
        "api_key_file": table.files("api_key_file"),
        "auth_header": table.string("auth_header", defaults.auth_header),
        "headers": table.mapping("headers"),
        "query": table.mapping("query"),
        "ca_bundle": table.file("ca_bundle"),
        "allow_http_loopback": table.boolean("allow_http_loopback", False),
        "models": table.strings("models"),
    }
    for name in ("connect_timeout", "read_timeout", "total_timeout", "retry_backoff", "retry_backoff_max"):
        options[name] = table.number(name, getattr(defaults, name), low=0, high=3600)
    options["key_cooldown"] = table.number("key_cooldown", defaults.key_cooldown, low=0, high=86_400)
    options["max_retries"] = table.integer("max_retries", defaults.max_retries, low=0, high=10)
    options["max_connections"] = table.integer(
        "max_connections", defaults.max_connections, low=1, high=10_000
    )
    options["max_keepalive_connections"] = table.integer(
        "max_keepalive_connections", defaults.max_keepalive_connections, low=0, high=10_000
    )
    options["max_response_bytes"] = table.integer(
        "max_response_bytes", defaults.max_response_bytes, low=1024, high=1024**3
    )
    table.done()
    return ProviderSettings(**options)


def parse_identity(table: Table) -> IdentityConfig:
    keys_file = table.file("keys_file")
    header = table.string("header", "authorization")
    proxies = table.strings("trusted_proxies")
    reload_interval = table.number("keys_reload_interval", 1.0, low=0, high=3600)
    table.done()
    return IdentityConfig(keys_file, header.lower(), proxies, reload_interval)


def parse_limits(table: Table, defaults: LimitsConfig) -> LimitsConfig:
    limits = LimitsConfig(
        max_body_bytes=table.integer("max_body_bytes", defaults.max_body_bytes, low=0, high=2**40),
        body_timeout=table.number("body_timeout", defaults.body_timeout, low=0.001, high=3600),
        max_json_depth=table.integer("max_json_depth", defaults.max_json_depth, low=1, high=10_000),
    )
    return limits


def parse_stage_sections(
    owner: Table, inherited_raw: Mapping[str, Any], inherited: Mapping[str, Any], route: str | None
) -> dict[str, Any]:
    """Each registered stage section ``owner`` has (or inherits), parsed by its own reader.

    A route's table overrides only the keys it names (over the global table of
    the same name); a route without its own table shares the global settings
    object, so the gateway builds that section's stages once for all such routes.
    """
    parsed: dict[str, Any] = {}
    for name, section in STAGE_SECTIONS.items():
        if route is not None and name in owner and not section.per_route:
            raise ConfigurationError(f"[{owner.name(name)}]: [{name}] applies to every route; set it once")
        if name not in owner:
            if name in inherited:
                parsed[name] = inherited[name]
            continue
        raw = {**inherited_raw.get(name, {}), **owner.mapping(name)}
        parsed[name] = section.parse(Table(raw, owner.name(name), base_dir=owner.base_dir), route=route)
    return parsed


def parse_routes(
    table: Table, limits: LimitsConfig, raw_sections: Mapping[str, Any], stages: Mapping[str, Any]
) -> dict[str, RouteConfig]:
    routes: dict[str, RouteConfig] = {}
    for name in sorted(table.values):
        if name not in ROUTE_PATHS:
            raise ConfigurationError(f"unknown route [routes.{name}]; routes are: {', '.join(ROUTE_PATHS)}")
        route = table.table(name)
        route_stages = parse_stage_sections(route, raw_sections, stages, name)
        route_limits = parse_limits(route, limits)
        route.done()
        routes[name] = RouteConfig(limits=route_limits, stages=route_stages)
    return routes


def parse_config(
    document: Mapping[str, Any], *, base_dir: Path | None = None, source: str | None = None
) -> GatewayConfig:
    """A :class:`GatewayConfig` from a parsed TOML document (relative paths from ``base_dir``)."""
    where = find_literal_secrets(document)
    if where is not None:
        raise ConfigurationError(f"{where} looks like a key or token written in the config file; {KEY_HINT}")
    known = set(_CORE_SECTIONS) | set(STAGE_SECTIONS)
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown section(s): {', '.join(unknown)}; sections are: {', '.join(sorted(known))}"
        )
    root = Table(document, "", base_dir=base_dir)
    server = parse_server(root.table("server"))
    provider = parse_provider(root.table("provider"))
    identity = parse_identity(root.table("identity"))
    limits_table = root.table("limits")
    limits = parse_limits(limits_table, LimitsConfig())
    limits_table.done()
    raw_sections = {name: document[name] for name in STAGE_SECTIONS if isinstance(document.get(name), dict)}
    stages = parse_stage_sections(root, {}, {}, None)
    routes = parse_routes(root.table("routes"), limits, raw_sections, stages)
    return GatewayConfig(
        server=server,
        provider=provider,
        identity=identity,
        limits=limits,
        stages=stages,
        routes=routes,
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None) -> GatewayConfig:
    """Read ``path``; ``None`` gives the safe offline default (loopback, echo, memory)."""
    if path is None:
        return GatewayConfig()
    file = Path(path)
    document = load_toml(file, "config")
    return parse_config(document, base_dir=file.parent.resolve(), source=str(file))
