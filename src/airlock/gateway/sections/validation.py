"""``[validation]``: structure caps, the route's payload preset, the prompt token cap, sanitisation.

::

    [validation]
    max_prompt_tokens = 8000          # refuse longer prompts (413 prompt_too_long)
    [validation.caps]
    max_depth = 16
    [validation.sanitize]
    normalize = "NFKC"

    [routes.chat.validation]          # the preset's own options, per route
    max_messages = 50
    allow_system = false

Each route validates against its preset (``openai-chat`` for ``chat``,
``openai-embeddings`` for ``embeddings``) or a Cerberus schema file
(``schema_file``); ``GET /v1/models`` has no body to validate.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import ConfigurationError
from airlock.gateway.tables import Table

__all__ = ["ROUTE_PRESETS", "VALIDATION", "ValidationSettings"]

ROUTE_PRESETS = {"chat": "openai-chat", "embeddings": "openai-embeddings"}
_CAPS = ("max_depth", "max_array_items", "max_total_items", "max_string_length")


@dataclass(frozen=True)
class ValidationSettings:
    preset: str | None = None
    schema_file: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    max_prompt_tokens: int | None = None
    allow_unknown: bool | None = None
    caps: dict[str, int] = field(default_factory=dict)
    sanitize: dict[str, Any] | None = field(default_factory=dict)


def _preset_options(preset: str) -> set[str]:
    from airlock.validation import get_preset

    signature = inspect.signature(get_preset(preset).schema)
    return {name for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}


def _sanitize(table: Table) -> dict[str, Any] | None:
    enabled = table.boolean("enabled", True)
    options: dict[str, Any] = {}
    normalize = table.string("normalize", "NFC")
    if normalize not in ("NFC", "NFKC", "none"):
        raise ConfigurationError(f"{table.name('normalize')} must be 'NFC', 'NFKC' or 'none'")
    options["normalize"] = None if normalize == "none" else normalize
    html = table.string("html", "keep")
    if html not in ("keep", "strip_scripts", "strip_tags"):
        raise ConfigurationError(f"{table.name('html')} must be 'keep', 'strip_scripts' or 'strip_tags'")
    options["html"] = html
    options["refuse_bidi"] = table.boolean("refuse_bidi", False)
    if "remove" in table:
        options["remove"] = table.strings("remove")
    table.done()
    return options if enabled else None


class _ValidationSection:
    per_route = True
    route_specific = True

    def parse(self, table: Table, *, route: str | None) -> ValidationSettings:
        max_tokens = table.integer("max_prompt_tokens", 0, low=0, high=10**9) or None
        allow_unknown = table.boolean("allow_unknown", False) if "allow_unknown" in table else None
        caps_table = table.table("caps")
        caps = {name: caps_table.integer(name, 1, low=1, high=10**9) for name in _CAPS if name in caps_table}
        caps_table.done()
        sanitize = _sanitize(table.table("sanitize"))
        preset = table.string("preset")
        schema_file = table.string("schema_file")
        if route is None:
            if preset is not None or schema_file is not None or table.values:
                named = (
                    "preset"
                    if preset is not None
                    else "schema_file"
                    if schema_file
                    else sorted(table.values)[0]
                )
                raise ConfigurationError(
                    f"{table.name(named)}: a route's preset, schema and preset options go under "
                    "[routes.chat.validation] or [routes.embeddings.validation]"
                )
        elif preset is not None and schema_file is not None:
            raise ConfigurationError(f"{table.path}: set preset or schema_file, not both")
        options: dict[str, Any] = {}
        if route is not None and schema_file is None:
            name = preset or ROUTE_PRESETS.get(route)
            if name is None:
                if table.values:
                    raise ConfigurationError(f"[{table.path}] has nothing to validate: {route} takes no body")
            else:
                try:
                    known = _preset_options(name)
                except ConfigurationError as exc:
                    raise ConfigurationError(f"{table.name('preset')}: {exc}") from None
                for key in sorted(table.values):
                    if key not in known:
                        takes = ", ".join(sorted(known))
                        raise ConfigurationError(
                            f"unknown key {table.name(key)}; preset {name!r} takes: {takes}"
                        )
                    options[key] = table.raw(key)
        table.done()
        return ValidationSettings(preset, schema_file, options, max_tokens, allow_unknown, caps, sanitize)

    def build(
        self, settings: ValidationSettings, *, route: str | None, shared: dict[str, Any]
    ) -> dict[str, Any]:
        from airlock.sanitize import Sanitize
        from airlock.validation import StructureCaps, Validate

        if route is None:
            return {}
        caps = StructureCaps(**settings.caps)
        common: dict[str, Any] = {"caps": caps, "max_prompt_tokens": settings.max_prompt_tokens}
        if settings.allow_unknown is not None:
            common["allow_unknown"] = settings.allow_unknown
        fields: dict[str, Any] = {}
        if settings.schema_file is not None:
            fields["validate"] = Validate.from_file(settings.schema_file, **common)
        elif (preset := settings.preset or ROUTE_PRESETS.get(route)) is not None:
            fields["validate"] = Validate(preset, **common, **settings.options)
        if settings.sanitize is not None and "validate" in fields:
            fields["sanitize"] = Sanitize(**settings.sanitize)
        return fields


VALIDATION = _ValidationSection()
