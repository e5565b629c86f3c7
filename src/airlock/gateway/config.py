"""The gateway's TOML configuration, validated at start-up with errors that name the key."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airlock._toml import toml
from airlock.errors import ConfigurationError
from airlock.policy import DEFAULT_MAX_BODY_BYTES

__all__ = ["GatewayConfig", "IdentityConfig", "LimitsConfig", "ServerConfig", "is_loopback", "load_config"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000


@dataclass(frozen=True)
class IdentityConfig:
    keys_file: str | None = None
    header: str = "authorization"
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = 10.0


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    source: str | None = None


class _Section:
    """Reads one TOML table, refusing unknown keys and wrong types with the key's full name."""

    def __init__(self, document: Mapping[str, Any], name: str) -> None:
        value = document.get(name, {})
        if not isinstance(value, dict):
            raise ConfigurationError(f"[{name}] must be a table")
        self.name = name
        self.values: dict[str, Any] = dict(value)

    def take(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in self.values:
            return default
        value = self.values.pop(key)
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise ConfigurationError(f"{self.name}.{key} has the wrong type")
        if not isinstance(value, kind):
            raise ConfigurationError(f"{self.name}.{key} has the wrong type")
        return value

    def done(self) -> None:
        if self.values:
            raise ConfigurationError(f"unknown key(s) in [{self.name}]: {', '.join(sorted(self.values))}")


def parse_config(
    document: Mapping[str, Any], *, base_dir: Path | None = None, source: str | None = None
) -> GatewayConfig:
    known = {"server", "identity", "limits"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ConfigurationError(f"unknown section(s): {', '.join(unknown)}")

    server = _Section(document, "server")
    host = server.take("host", str, "127.0.0.1")
    port = server.take("port", int, 8000)
    server.done()
    if not 0 < port < 65536:
        raise ConfigurationError("server.port must be between 1 and 65535")

    identity = _Section(document, "identity")
    keys_file = identity.take("keys_file", str, None)
    header = identity.take("header", str, "authorization")
    proxies = identity.take("trusted_proxies", list, [])
    identity.done()
    if not all(isinstance(p, str) for p in proxies):
        raise ConfigurationError("identity.trusted_proxies must be a list of addresses or networks")
    if keys_file is not None and base_dir is not None and not os.path.isabs(keys_file):
        keys_file = str(base_dir / keys_file)

    limits = _Section(document, "limits")
    max_body = limits.take("max_body_bytes", int, DEFAULT_MAX_BODY_BYTES)
    body_timeout = limits.take("body_timeout", (int, float), 10.0)
    limits.done()

    return GatewayConfig(
        server=ServerConfig(host=host, port=port),
        identity=IdentityConfig(keys_file=keys_file, header=header, trusted_proxies=tuple(proxies)),
        limits=LimitsConfig(max_body_bytes=max_body, body_timeout=float(body_timeout)),
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None) -> GatewayConfig:
    """Read ``path``; ``None`` gives the safe offline default (loopback, echo, memory)."""
    if path is None:
        return GatewayConfig()
    file = Path(path)
    try:
        with file.open("rb") as handle:
            document = toml.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {str(file)!r}: {exc.strerror}") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigurationError(f"config {str(file)!r} is not valid TOML: {exc}") from None
    return parse_config(document, base_dir=file.parent, source=str(file))
