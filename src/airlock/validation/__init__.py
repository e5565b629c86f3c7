"""Validation: structure caps, Cerberus schemas, OpenAI payload presets, token estimates.

::

    from airlock import Policy
    from airlock.validation import Validate, StructureCaps

    Policy(validate=Validate(preset="openai-chat", max_messages=50, max_prompt_tokens=8000))
    Policy(validate=Validate(schema={"question": {"type": "string", "required": True}}))
    Policy(validate=StructureCaps(max_depth=8))      # the caps alone

Custom Cerberus rules and types are registered once with :func:`register_rule`
and :func:`register_type` and work in every schema built afterwards; presets are
added with :func:`register_preset`.
"""

from airlock.validation.caps import StructureCaps
from airlock.validation.presets import Preset, get_preset, preset_names, preset_schema, register_preset
from airlock.validation.rules import register_rule, register_type
from airlock.validation.schema import Schema, load_schema
from airlock.validation.stage import Validate
from airlock.validation.tokens import heuristic_tokens

__all__ = [
    "Preset",
    "Schema",
    "StructureCaps",
    "Validate",
    "get_preset",
    "heuristic_tokens",
    "load_schema",
    "preset_names",
    "preset_schema",
    "register_preset",
    "register_rule",
    "register_type",
]
