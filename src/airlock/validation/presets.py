"""Named presets: a schema builder, the fields holding the prompt, and a token estimator.

``Validate(preset="openai-chat", max_messages=50)`` looks the name up here and
passes the options to the preset's schema builder. Three presets ship with
airlock; add your own with :func:`register_preset`::

    def my_schema(*, max_chars: int = 2000) -> dict:
        return {"question": {"type": "string", "required": True, "maxlength": max_chars}}

    register_preset(Preset("ask", my_schema, text_fields=("question",)))
    Validate(preset="ask", max_chars=500)

To adjust a shipped preset, take its schema, change it and pass it as a schema:
``Validate(schema=preset_schema("openai-chat") | {"my_field": {...}}, text_fields=...)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airlock.errors import ConfigurationError
from airlock.fields import CHAT_TEXT_FIELDS, EMBEDDINGS_TEXT_FIELDS, RESPONSES_TEXT_FIELDS
from airlock.validation import openai
from airlock.validation.tokens import Estimator, chat_tokens, embeddings_tokens, responses_tokens

__all__ = ["Preset", "get_preset", "preset_names", "preset_schema", "register_preset"]


@dataclass(frozen=True)
class Preset:
    """A named payload shape.

    :param name: what ``Validate(preset=...)`` calls it.
    :param schema: ``schema(**options) -> dict``: a fresh Cerberus schema for the options.
    :param text_fields: selectors (:mod:`airlock.fields`) of the prompt text.
    :param estimate: ``estimate(document, count) -> int`` prompt tokens; by default the
        tokens of the strings at ``text_fields``.
    :param allow_unknown: whether fields outside the schema are accepted.
    """

    name: str
    schema: Callable[..., dict[str, Any]]
    text_fields: tuple[str, ...] = ()
    estimate: Estimator | None = None
    allow_unknown: bool = False
    description: str = field(default="", compare=False)


_lock = threading.Lock()
_presets: dict[str, Preset] = {}


def register_preset(preset: Preset, *, replace: bool = False) -> None:
    """Make ``preset`` available by name; ``replace=True`` to redefine an existing name."""
    if not isinstance(preset, Preset):
        raise ConfigurationError("register_preset takes an airlock.validation.Preset")
    if not isinstance(preset.name, str) or not preset.name:
        raise ConfigurationError("a preset needs a name")
    if not callable(preset.schema):
        raise ConfigurationError(f"preset {preset.name!r}: schema must be a callable returning a schema")
    with _lock:
        if preset.name in _presets and not replace and _presets[preset.name] != preset:
            raise ConfigurationError(f"preset {preset.name!r} is already registered (pass replace=True)")
        _presets[preset.name] = preset


def get_preset(name: str) -> Preset:
    with _lock:
        preset = _presets.get(name)
        known = sorted(_presets)
    if preset is None:
        raise ConfigurationError(f"unknown validation preset {name!r}; known: {', '.join(known)}")
    return preset


def preset_names() -> list[str]:
    with _lock:
        return sorted(_presets)


def preset_schema(name: str, **options: Any) -> dict[str, Any]:
    """The Cerberus schema preset ``name`` builds for ``options`` (a fresh dict to adjust)."""
    preset = get_preset(name)
    try:
        return preset.schema(**options)
    except TypeError as exc:
        # Unknown keyword: name it, and list what the preset takes.
        raise ConfigurationError(f"preset {name!r}: {exc}") from None


register_preset(
    Preset(
        "openai-chat",
        openai.chat_schema,
        text_fields=CHAT_TEXT_FIELDS,
        estimate=chat_tokens,
        description="POST /v1/chat/completions",
    )
)
register_preset(
    Preset(
        "openai-responses",
        openai.responses_schema,
        text_fields=RESPONSES_TEXT_FIELDS,
        estimate=responses_tokens,
        description="POST /v1/responses",
    )
)
register_preset(
    Preset(
        "openai-embeddings",
        openai.embeddings_schema,
        text_fields=EMBEDDINGS_TEXT_FIELDS,
        estimate=embeddings_tokens,
        description="POST /v1/embeddings",
    )
)
