"""``airlock doctor``: check a gateway configuration the way a reviewer would, before traffic does.

Each check answers ``pass``, ``warn``, ``fail`` or ``skip`` with one line of
detail; the command exits non-zero when any check fails. Everything works
offline: a provider that cannot be reached from here is ``skip``, not ``fail``,
and the dependency check compares installed versions with the list shipped in
:mod:`airlock.gateway.advisories` instead of asking a package index.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import ssl
import stat
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio

from airlock.errors import ConfigurationError
from airlock.gateway.advisories import check_dependencies
from airlock.gateway.checks import Check
from airlock.gateway.config import GatewayConfig, load_config
from airlock.gateway.sections import STAGE_SECTIONS
from airlock.keys import KeyStore
from airlock.provider.credentials import ProviderKeys
from airlock.provider.tls import MINIMUM_TLS_VERSION, is_loopback_host, make_ssl_context

__all__ = ["Check", "format_table", "run_checks", "storage_uris"]

_PROBE_TIMEOUT = 5.0


def check_provider_key(config: GatewayConfig, environ: Mapping[str, str]) -> Check:
    settings = config.provider
    if settings.kind == "echo":
        return Check("provider key", "skip", "the echo provider needs no key")
    if not settings.api_key_env and not settings.api_key_file:
        host = urlsplit(settings.base_url or "").hostname or ""
        if is_loopback_host(host):
            return Check("provider key", "pass", "none configured (local model on loopback)")
        return Check(
            "provider key", "warn", "no provider.api_key_env or api_key_file: calls go out without a key"
        )
    try:
        keys = ProviderKeys(env=settings.api_key_env, files=settings.api_key_file, environ=environ)
    except ConfigurationError as exc:
        return Check("provider key", "fail", str(exc))
    for path in settings.api_key_file:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            return Check("provider key", "warn", f"{path} is readable by other users: chmod 600 it")
    sources = ", ".join(source.describe() for source in keys.sources)
    return Check("provider key", "pass", f"{len(keys)} key(s) from {sources}; none in the config file")


def probe_tls(host: str, port: int, context: ssl.SSLContext, timeout: float = _PROBE_TIMEOUT) -> str:
    """The TLS version negotiated with ``host:port`` using ``context`` (raises on failure)."""
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.version() or "unknown"


def check_provider_tls(config: GatewayConfig, *, online: bool) -> Check:
    settings = config.provider
    if settings.kind == "echo":
        return Check("provider TLS", "skip", "the echo provider makes no connections")
    parts = urlsplit(settings.base_url or "")
    host = parts.hostname or ""
    if parts.scheme == "http":
        return Check("provider TLS", "warn", f"plain http:// to {host} (allowed for loopback only)")
    if not online:
        return Check("provider TLS", "skip", "--offline")
    try:
        context = make_ssl_context(settings.ca_bundle)
        version = probe_tls(host, parts.port or 443, context)
    except ConfigurationError as exc:
        return Check("provider TLS", "fail", str(exc))
    except ssl.SSLCertVerificationError as exc:
        return Check("provider TLS", "fail", f"{host}: certificate not accepted ({exc.verify_message})")
    except ssl.SSLError as exc:
        return Check(
            "provider TLS", "fail", f"{host}: TLS handshake failed ({exc.reason or 'unknown reason'})"
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Check("provider TLS", "skip", f"{host} unreachable from here ({reason}); run again online")
    floor = "TLSv1.2" if MINIMUM_TLS_VERSION is ssl.TLSVersion.TLSv1_2 else str(MINIMUM_TLS_VERSION)
    return Check(
        "provider TLS", "pass", f"{host}: {version}, certificate and hostname verified (floor {floor})"
    )


def check_client_keys(config: GatewayConfig) -> Check:
    identity = config.identity
    if identity.keys_file is None:
        if is_loopback_host(config.server.host):
            return Check("client keys", "warn", "none: callers are identified by address (loopback only)")
        return Check("client keys", "fail", f"none, but server.host {config.server.host} is not loopback")
    try:
        store = KeyStore.from_file(identity.keys_file)
    except ConfigurationError as exc:
        return Check("client keys", "fail", str(exc))
    if not len(store):
        return Check("client keys", "warn", f"{identity.keys_file} holds no keys: every request gets 401")
    return Check("client keys", "pass", f"{len(store)} key(s) in {identity.keys_file} (re-read on change)")


def storage_uris(config: GatewayConfig) -> list[str]:
    """Every limit storage URI the config uses (throttle and budget, global and per route)."""
    uris: list[str] = []
    for stages in (config.stages, *(route.stages for route in config.routes.values())):
        throttle = stages.get("throttle")
        budget = stages.get("budget")
        if throttle is not None:
            uris.append(throttle.storage)
        if budget is not None:
            uris.append(budget.storage or (throttle.storage if throttle is not None else "memory://"))
    return list(dict.fromkeys(uris))


def _shown(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{re.sub(r'^[^/]*@', '', rest.split('?', 1)[0])}"  # no credentials


async def _probe_storage(uri: str) -> bool:
    from airlock.throttle import LimitStorage

    storage = LimitStorage(uri, timeout=_PROBE_TIMEOUT)
    try:
        with anyio.fail_after(_PROBE_TIMEOUT):
            return bool(await storage.storage.check())
    finally:
        await storage.shutdown()


def check_storage(uris: Iterable[str]) -> Check:
    uris = list(uris)
    if not uris:
        return Check("limit storage", "skip", "no [throttle] or [budget] section")
    failed: list[str] = []
    for uri in uris:
        if uri.startswith("memory://"):
            continue
        try:
            reachable = anyio.run(_probe_storage, uri)
        except ConfigurationError as exc:
            failed.append(f"{_shown(uri)} ({exc})")
            continue
        except Exception as exc:
            failed.append(f"{_shown(uri)} ({type(exc).__name__})")
            continue
        if not reachable:
            failed.append(f"{_shown(uri)} (no answer)")
    if failed:
        return Check("limit storage", "fail", "unreachable: " + "; ".join(failed))
    shown = [
        _shown(uri) + (" (this process only)" if uri.startswith("memory://") else " reachable")
        for uri in uris
    ]
    return Check("limit storage", "pass", ", ".join(shown))


def check_stages(config: GatewayConfig) -> Check:
    """Build every route's policy as ``airlock serve`` will (a missing extra, a bad option).

    The audit section is left out: building it opens the log file, which is the
    ``audit sink`` check's business, not a side effect a check should have.
    """
    from airlock.gateway.app import route_policies

    def without_audit(stages: Mapping[str, Any]) -> dict[str, Any]:
        return {name: value for name, value in stages.items() if name != "audit"}

    trial = dataclasses.replace(
        config,
        stages=without_audit(config.stages),
        routes={
            name: dataclasses.replace(route, stages=without_audit(route.stages))
            for name, route in config.routes.items()
        },
    )
    quiet = logging.getLogger("airlock")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the key warnings get their own row below
    try:
        route_policies(trial)
    except ConfigurationError as exc:
        return Check("stages", "fail", str(exc))
    finally:
        quiet.setLevel(level)
    names = [name for name in STAGE_SECTIONS if name in config.stages]
    return Check(
        "stages", "pass", ", ".join(names) if names else "none configured (size cap and parsing only)"
    )


def check_stage_keys(config: GatewayConfig, environ: Mapping[str, str]) -> Check:
    needed = []
    if "anonymize" in config.stages or any("anonymize" in r.stages for r in config.routes.values()):
        needed.append(("AIRLOCK_ANONYMIZE_KEY", "pseudonyms and hashes"))
    if "audit" in config.stages:
        needed.append(("AIRLOCK_AUDIT_KEY", "identity hashes in the audit log"))
    if not needed:
        return Check("stage keys", "skip", "no [anonymize] or [audit] section")
    missing = [
        f"{name} ({what} will differ between workers and restarts)"
        for name, what in needed
        if not environ.get(name)
    ]
    if missing:
        return Check("stage keys", "warn", "not set: " + "; ".join(missing))
    return Check("stage keys", "pass", ", ".join(name for name, _ in needed) + " set")


def check_audit_sink(config: GatewayConfig) -> Check:
    settings = config.stages.get("audit")
    if settings is None:
        return Check("audit sink", "skip", "no [audit] section: requests are not audited")
    path = settings.path
    if path is None:
        return Check("audit sink", "pass", "standard output")
    if os.path.exists(path):
        ok = os.path.isfile(path) and os.access(path, os.W_OK)
    else:
        folder = os.path.dirname(os.path.abspath(path))
        ok = os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)
    if not ok:
        return Check("audit sink", "fail", f"{path} is not writable by this user")
    return Check("audit sink", "pass", f"{path} is writable")


def check_workers(config: GatewayConfig, storages: Iterable[str]) -> Check:
    workers = config.server.workers
    memory = [uri for uri in storages if uri.startswith("memory://")]
    if workers > 1 and memory:
        return Check(
            "workers",
            "warn",
            f"{workers} workers with memory:// storage: each worker counts on its own, "
            "so limits are multiplied; use redis://",
        )
    return Check("workers", "pass", f"{workers} worker(s)")


def run_checks(
    path: str | os.PathLike[str] | None,
    *,
    environ: Mapping[str, str] | None = None,
    online: bool = True,
) -> list[Check]:
    """Every check for the config at ``path`` (``None``: the built-in default)."""
    environ = os.environ if environ is None else environ
    results = [check_dependencies()]
    try:
        config = load_config(path)
    except ConfigurationError as exc:
        results.insert(0, Check("config", "fail", str(exc)))
        return results
    results.insert(0, Check("config", "pass", f"{config.source or 'built-in default'} is valid"))
    results.append(check_provider_key(config, environ))
    results.append(check_provider_tls(config, online=online))
    results.append(check_client_keys(config))
    results.append(check_stages(config))
    results.append(check_stage_keys(config, environ))
    storages = storage_uris(config)
    results.append(check_storage(storages))
    results.append(check_workers(config, storages))
    results.append(check_audit_sink(config))
    return results


def format_table(checks: Iterable[Check]) -> str:
    rows = [("check", "status", "detail"), *((c.name, c.status, c.detail) for c in checks)]
    width = max(len(row[0]) for row in rows)
    return "\n".join(f"{name:<{width}}  {status:<6}  {detail}" for name, status, detail in rows)
