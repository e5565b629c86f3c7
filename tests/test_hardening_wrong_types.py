"""Wrong types in every field of every preset, through the whole engine (every stage on).

The fields come from the presets' schemas themselves (``preset_schema``), so a field
added to a preset is covered or this test says which one is missing from the examples.
Every node of a rich, valid example request is replaced in turn by values of every JSON
type; whenever the schema's type rule does not admit the new value, the answer must be
``422 validation_failed`` naming exactly that path with rule ``type`` (or ``nullable``).
Whatever the answer, it is a documented one (never a 500), it never quotes the value, and
exactly one audit event is written. A field the schema does not know is refused at every
level where the schema names the fields.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from airlock.validation import preset_schema
from hardening_stack import Stack, check_outcome, strings_of

pytestmark = pytest.mark.anyio

Pattern = tuple[str, ...]

CHAT: dict[str, Any] = {
    "model": "gpt-test",
    "messages": [
        {"role": "system", "content": "Answer briefly.", "name": "policy"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ],
    "max_tokens": 64,
    "max_completion_tokens": 64,
    "n": 1,
    "temperature": 0.5,
    "top_p": 0.9,
    "frequency_penalty": 0,
    "presence_penalty": 0.5,
    "seed": 7,
    "stop": ["END"],
    "stream": False,
    "stream_options": {"include_usage": True, "include_obfuscation": False},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "description": "d", "schema": {"type": "object"}, "strict": True},
    },
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "d",
                "parameters": {"type": "object"},
                "strict": False,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "lookup"}, "allowed_tools": {"mode": "auto"}},
    "parallel_tool_calls": True,
    "user": "user-1",
    "safety_identifier": "safety-1",
    "prompt_cache_key": "cache-1",
    "store": False,
    "metadata": {"ticket": "T-1"},
    "modalities": ["text"],
    "reasoning_effort": "low",
    "verbosity": "low",
    "service_tier": "auto",
    "top_logprobs": 0,
    "logprobs": False,
    "logit_bias": {},
}

RESPONSE_PARTS = [
    {"type": "output_text", "text": "ok", "annotations": []},
    {"type": "refusal", "refusal": "no"},
    {"type": "input_image", "image_url": "https://example.com/b.png", "detail": "auto", "file_id": "file_2"},
]
RESPONSES: dict[str, Any] = {
    "model": "gpt-test",
    "input": [
        {
            "type": "message",
            "role": "user",
            "id": "msg_1",
            "status": "completed",
            "content": [{"type": "input_text", "text": "hi"}, *copy.deepcopy(RESPONSE_PARTS)],
        },
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": copy.deepcopy(RESPONSE_PARTS)},
    ],
    "instructions": "Answer briefly.",
    "max_output_tokens": 64,
    "max_tool_calls": 2,
    "temperature": 0.5,
    "top_p": 0.9,
    "stream": False,
    "stream_options": {"include_obfuscation": False},
    "store": False,
    "background": False,
    "previous_response_id": "resp_1",
    "metadata": {"ticket": "T-1"},
    "parallel_tool_calls": True,
    "user": "user-1",
    "safety_identifier": "safety-1",
    "prompt_cache_key": "cache-1",
    "service_tier": "auto",
    "truncation": "auto",
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "low", "summary": "auto"},
    "text": {
        "format": {"type": "json_schema", "name": "answer", "description": "d", "schema": {}, "strict": True},
        "verbosity": "low",
    },
    "tools": [{"type": "function", "name": "lookup", "description": "d", "parameters": {}, "strict": False}],
    "tool_choice": {"type": "allowed_tools", "name": "lookup", "mode": "auto", "tools": []},
    "top_logprobs": 0,
}

EMBEDDINGS: dict[str, Any] = {
    "model": "embed-test",
    "input": ["some text", 5, [1, 2]],
    "dimensions": 8,
    "encoding_format": "float",
    "user": "user-1",
}

PRESETS = {
    "openai-chat": ("/v1/chat/completions", CHAT),
    "openai-responses": ("/v1/responses", RESPONSES),
    "openai-embeddings": ("/v1/embeddings", EMBEDDINGS),
}

WRONG_VALUES: list[Any] = [None, True, 0, -1, 2**63, 1.5, "", "x", "\ud800", [], [1], {}, {"a": 1}]

KINDS = {
    "string": {"str"},
    "int": {"int"},
    "integer": {"int", "bool"},
    "number": {"int", "float"},
    "float": {"int", "float"},
    "boolean": {"bool"},
    "dict": {"dict"},
    "list": {"list"},
}


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}[type(value)]


def schema_fields(schema: dict[str, Any], prefix: Pattern = ()) -> Iterator[tuple[Pattern, dict[str, Any]]]:
    """Every field the schema names, as a path pattern (``"*"`` for list items), with its rules."""
    for name, rules in schema.items():
        path = (*prefix, name)
        yield path, rules
        yield from _inside(rules, path)


def _inside(rules: dict[str, Any], path: Pattern) -> Iterator[tuple[Pattern, dict[str, Any]]]:
    inner = rules.get("schema")
    types = rules.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if not isinstance(inner, dict):
        return
    if "list" in types:  # ``schema`` holds the rules of each item
        yield (*path, "*"), inner
        yield from _inside(inner, (*path, "*"))
    if "dict" in types:  # ``schema`` holds the rules of each field
        yield from schema_fields(inner, path)


def nodes(document: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*path, key), value
            yield from nodes(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield (*path, index), value
            yield from nodes(value, (*path, index))


def pattern(path: tuple[Any, ...]) -> Pattern:
    return tuple("*" if isinstance(part, int) else part for part in path)


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copied = copy.deepcopy(document)
    container = copied
    for part in path[:-1]:
        container = container[part]
    container[path[-1]] = value
    return copied


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    built = Stack(tmp_path_factory.mktemp("wrong-types"))
    yield built
    built.close()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_the_examples_cover_every_field_of_the_preset(preset: str) -> None:
    _, example = PRESETS[preset]
    named = {path for path, _ in schema_fields(preset_schema(preset))}
    present = {pattern(path) for path, _ in nodes(example)}
    missing = sorted(".".join(path) for path in named - present)
    assert not missing, f"add these fields to the {preset} example: {missing}"


@pytest.mark.parametrize("preset", list(PRESETS))
async def test_the_examples_are_accepted(stack: Stack, preset: str) -> None:
    route, example = PRESETS[preset]
    outcome = await stack.send(route, json.dumps(example).encode())
    assert outcome.status == 200, outcome.body


@pytest.mark.parametrize("preset", list(PRESETS))
async def test_every_field_with_every_type(stack: Stack, preset: str) -> None:
    route, example = PRESETS[preset]
    rules_of = dict(schema_fields(preset_schema(preset)))
    checked = refused = 0
    for path, _ in list(nodes(example)):
        rules = rules_of.get(pattern(path))
        for value in WRONG_VALUES:
            document = replaced(example, path, value)
            outcome = await stack.send(route, json.dumps(document).encode())
            check_outcome(outcome, *strings_of(document))
            if rules is None or not rules.get("type"):
                continue  # inside a free-form object (tool parameters, JSON schemas)
            names = [rules["type"]] if isinstance(rules["type"], str) else rules["type"]
            admitted = set().union(*(KINDS[name] for name in names))
            if rules.get("nullable"):
                admitted.add("null")
            if kind(value) in admitted:
                continue
            checked += 1
            rendered = ".".join(str(part) for part in path)
            assert outcome.status == 422, (rendered, value, outcome.status)
            problem = outcome.problem()
            assert problem["code"] == "validation_failed"
            rules_at = {error["rule"] for error in problem["errors"] if error["path"] == rendered}
            assert rules_at & {"type", "nullable"}, (rendered, value, problem["errors"])
            refused += 1
    assert checked > 100 or preset == "openai-embeddings"
    assert refused == checked


@pytest.mark.parametrize("preset", list(PRESETS))
async def test_an_unknown_field_is_refused_wherever_fields_are_named(stack: Stack, preset: str) -> None:
    route, example = PRESETS[preset]
    rules_of = dict(schema_fields(preset_schema(preset)))
    objects = [((), example)] + [(path, value) for path, value in nodes(example) if isinstance(value, dict)]
    tried = 0
    for path, value in objects:
        rules = rules_of.get(pattern(path), {"schema": {}}) if path else {"schema": {}}
        if not isinstance(rules.get("schema"), dict):
            continue  # a free-form object: its keys are the client's
        document = (
            replaced(example, (*path, "zz_not_a_field"), 1) if path else {**example, "zz_not_a_field": 1}
        )
        outcome = await stack.send(route, json.dumps(document).encode())
        check_outcome(outcome, *strings_of(document))
        assert outcome.status == 422
        rendered = ".".join(str(part) for part in (*path, "zz_not_a_field"))
        assert {"path": rendered, "rule": "unknown"} in outcome.problem()["errors"]
        tried += 1
    assert tried >= (1 if preset == "openai-embeddings" else 3)
