"""``[anonymize]``: personal data and secrets out of the request, pseudonyms back into the reply.

::

    [anonymize]
    entities = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "US_SSN", "SECRET"]
    operators = { "*" = "pseudonymize", CREDIT_CARD = "mask", SECRET = "redact" }
    allow = ["support@example.com"]
    restore = true

The pseudonym key comes from ``$AIRLOCK_ANONYMIZE_KEY`` (never from this file);
without it each process makes its own, so set it when you run several workers.
Needs the ``anonymize`` extra (phonenumbers, python-stdnum).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airlock.errors import ConfigurationError
from airlock.gateway.tables import Table

__all__ = ["ANONYMIZE", "AnonymizeSettings"]

_OPERATORS = ("redact", "mask", "hash", "pseudonymize")


@dataclass(frozen=True)
class AnonymizeSettings:
    entities: tuple[str, ...] | None = None
    operators: dict[str, str] = field(default_factory=dict)
    phone_regions: tuple[str, ...] | None = None
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    fields: tuple[str, ...] | None = None
    restore: bool = True
    scope_by_identity: bool = True


class _AnonymizeSection:
    per_route = True
    route_specific = False

    def parse(self, table: Table, *, route: str | None) -> AnonymizeSettings:
        table.refuse_secrets("the pseudonym key comes from the AIRLOCK_ANONYMIZE_KEY environment variable")
        entities = table.strings("entities") if "entities" in table else None
        operators = table.mapping("operators")
        for entity, operator in operators.items():
            if operator not in _OPERATORS:
                raise ConfigurationError(
                    f"{table.name('operators')}.{entity} must be one of {', '.join(_OPERATORS)}"
                )
        regions = table.strings("phone_regions") if "phone_regions" in table else None
        settings = AnonymizeSettings(
            entities=entities,
            operators=operators,
            phone_regions=regions,
            allow=table.strings("allow"),
            deny=table.strings("deny"),
            fields=table.strings("fields") if "fields" in table else None,
            restore=table.boolean("restore", True),
            scope_by_identity=table.boolean("scope_by_identity", True),
        )
        table.done()
        return settings

    def build(
        self, settings: AnonymizeSettings, *, route: str | None, shared: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            from airlock.anonymize import Anonymize, Anonymizer
        except ImportError:
            raise ConfigurationError(
                "needs the anonymize extra: pip install 'asgi-airlock[anonymize]'"
            ) from None
        options: dict[str, Any] = {"operators": settings.operators or None, "allow": settings.allow}
        if settings.entities is not None:
            options["entities"] = settings.entities
        if settings.phone_regions is not None:
            options["phone_regions"] = settings.phone_regions
        if settings.deny:
            options["deny"] = settings.deny
        stage: dict[str, Any] = {"restore": settings.restore, "scope_by_identity": settings.scope_by_identity}
        if settings.fields is not None:
            stage["fields"] = settings.fields
        return {"anonymize": Anonymize(Anonymizer(**options), **stage)}


ANONYMIZE = _AnonymizeSection()
