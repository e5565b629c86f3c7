"""``[audit]``: one JSON event per request, hash-chained, to standard output or a file.

::

    [audit]
    path = "/var/log/airlock/audit.jsonl"     # default: standard output
    max_bytes = 50000000                      # rotate at this size (0: never)
    backup_count = 10
    [audit.consent]                           # refuse personal data without consent (403)
    header = "x-airlock-consent"

Keys for identity hashes and the chain come from ``$AIRLOCK_AUDIT_KEY`` and
``$AIRLOCK_AUDIT_CHAIN_KEY``, never from this file. One audit log serves every
route (one chain), so routes cannot override this section.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airlock.errors import ConfigurationError
from airlock.gateway.tables import Table

__all__ = ["AUDIT", "AuditSettings"]


@dataclass(frozen=True)
class AuditSettings:
    path: str | None = None
    max_bytes: int = 0
    backup_count: int = 5
    client: str = "truncate"
    chain: bool = True
    consent: dict[str, Any] | None = None


def _consent(table: Table) -> dict[str, Any]:
    options: dict[str, Any] = {"header": table.string("header", "x-airlock-consent")}
    if "claim" in table:
        options["claim"] = table.string("claim")
    if "entities" in table:
        options["entities"] = table.strings("entities")
    if "values" in table:
        options["values"] = table.strings("values")
    table.done()
    return options


class _AuditSection:
    per_route = False
    route_specific = False

    def parse(self, table: Table, *, route: str | None) -> AuditSettings:
        table.refuse_secrets("audit keys come from AIRLOCK_AUDIT_KEY and AIRLOCK_AUDIT_CHAIN_KEY")
        client = table.string("client", "truncate")
        if client not in ("truncate", "hash", "none"):
            raise ConfigurationError(f"{table.name('client')} must be 'truncate', 'hash' or 'none'")
        settings = AuditSettings(
            path=table.file("path"),
            max_bytes=table.integer("max_bytes", 0, low=0, high=2**50),
            backup_count=table.integer("backup_count", 5, low=0, high=1000),
            client=client,
            chain=table.boolean("chain", True),
            consent=_consent(table.table("consent")) if "consent" in table else None,
        )
        table.done()
        if settings.max_bytes and settings.path is None:
            raise ConfigurationError(f"{table.name('max_bytes')} needs {table.name('path')}")
        return settings

    def build(self, settings: AuditSettings, *, route: str | None, shared: dict[str, Any]) -> dict[str, Any]:
        from airlock.audit import AuditLog, RequireConsent

        log = AuditLog(
            path=settings.path,
            max_bytes=settings.max_bytes,
            backup_count=settings.backup_count,
            client=settings.client,  # type: ignore[arg-type]  # checked in parse
            chain=settings.chain,
        )
        fields: dict[str, Any] = {"audit": log}
        if settings.consent is not None:
            # After the anonymize stage, which counts the personal data consent is about.
            fields["anonymize"] = RequireConsent(**settings.consent)
        return fields


AUDIT = _AuditSection()
