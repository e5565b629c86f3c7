"""Field rules shared by the OpenAI presets (plain Cerberus rules, all compiled)."""

from __future__ import annotations

from typing import Any

from airlock.errors import ConfigurationError

__all__ = [
    "DESCRIPTION_CHARS",
    "FUNCTION_NAME_REGEX",
    "IMAGE_URL_REGEX",
    "SHORT_TEXT",
    "Rules",
    "choice",
    "content",
    "flag",
    "flag_field",
    "format_type",
    "function_fields",
    "int_field",
    "json_object",
    "json_schema_fields",
    "logprob_fields",
    "metadata",
    "model",
    "number",
    "positive",
    "string",
    "tool_choice",
    "tools",
]

Rules = dict[str, Any]

# Images are accepted as https URLs or inline data URLs (no plain http, no other schemes).
IMAGE_URL_REGEX = r"(?:https://|data:image/)\S*"
FUNCTION_NAME_REGEX = r"[A-Za-z0-9_-]{1,64}"
SHORT_TEXT = 256
DESCRIPTION_CHARS = 4096


def positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"preset option {name} must be a positive integer")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"preset option {name} must be a bool")
    return value


def string(maxlength: int = SHORT_TEXT, **extra: Any) -> Rules:
    return {"type": "string", "maxlength": maxlength, **extra}


def choice(*values: str) -> Rules:
    return {"type": "string", "nullable": True, "allowed": list(values)}


def number(low: float, high: float) -> Rules:
    return {"type": "number", "nullable": True, "min": low, "max": high}


def int_field(low: int | None = None, high: int | None = None) -> Rules:
    # "int" is airlock's integer that is not a boolean (Cerberus's "integer" takes true/false).
    rules: Rules = {"type": "int", "nullable": True}
    if low is not None:
        rules["min"] = low
    if high is not None:
        rules["max"] = high
    return rules


def flag_field() -> Rules:
    return {"type": "boolean", "nullable": True}


def model() -> Rules:
    return {"type": "string", "required": True, "empty": False, "maxlength": SHORT_TEXT}


def metadata() -> Rules:
    return {
        "type": "dict",
        "nullable": True,
        "maxlength": 16,
        "keysrules": {"type": "string", "maxlength": 64},
        "valuesrules": {"type": "string", "maxlength": 512},
    }


def json_object() -> Rules:
    # A JSON Schema or similar free-form object: its inside is the provider's business.
    return {"type": "dict"}


def logprob_fields(allow: bool, *, logit_bias: bool | None) -> Rules:
    fields: Rules = {}
    if allow:
        fields["top_logprobs"] = int_field(0, 20)
    else:
        fields["top_logprobs"] = {"type": "int", "nullable": True, "allowed": [0]}
    if logit_bias is not None:
        fields["logprobs"] = (
            flag_field() if allow else {"type": "boolean", "nullable": True, "allowed": [False]}
        )
        if logit_bias:
            fields["logit_bias"] = {
                "type": "dict",
                "nullable": True,
                "maxlength": 300,
                "keysrules": {"type": "string", "regex": r"[0-9]{1,7}"},
                "valuesrules": {"type": "number", "min": -100, "max": 100},
            }
        else:
            fields["logit_bias"] = {"type": "dict", "nullable": True, "allowed": []}
    return fields


def content(max_chars: int, max_parts: int, part: Rules, *, nullable: bool) -> Rules:
    return {
        "type": ["string", "list"],
        "nullable": nullable,
        "maxchars": max_chars,
        "maxitems": max_parts,
        "schema": {"type": "dict", "schema": part},
    }


def function_fields() -> Rules:
    # A function tool's definition: nested under "function" in chat, flat in a responses tool.
    return {
        "name": {"type": "string", "required": True, "regex": FUNCTION_NAME_REGEX},
        "description": string(DESCRIPTION_CHARS),
        "parameters": json_object(),
        "strict": flag_field(),
    }


def tools(max_tools: int, tool: Rules) -> Rules:
    return {
        "type": "list",
        "nullable": True,
        "maxlength": max_tools,
        "schema": {"type": "dict", "schema": tool},
    }


def tool_choice(**fields: Rules) -> Rules:
    # A mode string, or an object naming one function or the allowed tools (laid out per API).
    return {
        "type": ["string", "dict"],
        "nullable": True,
        "regex": "(?:none|auto|required)",
        "schema": {
            "type": {"type": "string", "required": True, "allowed": ["function", "allowed_tools"]},
            **fields,
        },
    }


def format_type() -> Rules:
    # The structured-output format: response_format.type (chat), text.format.type (responses).
    return {"type": "string", "required": True, "allowed": ["text", "json_object", "json_schema"]}


def json_schema_fields(*, name_required: bool) -> Rules:
    # A "json_schema" format's schema and its name, description and strictness.
    name: Rules = (
        {"type": "string", "required": True, "regex": FUNCTION_NAME_REGEX}
        if name_required
        else {"type": "string", "regex": FUNCTION_NAME_REGEX}
    )
    return {
        "name": name,
        "description": string(DESCRIPTION_CHARS),
        "schema": json_object(),
        "strict": flag_field(),
    }
