"""The compiled fast path and plain Cerberus accept and refuse the same documents,
with the same (path, rule) errors: for every preset, a schema using every compiled
rule, and randomly generated schemas.

Documents are generated from the schema itself (values at and around every limit,
allowed and unallowed choices, missing required fields, unknown keys, wrong
types, nulls) mixed with arbitrary JSON, so both valid and invalid documents of
every shape are common.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from airlock.validation import Schema, preset_names, preset_schema, register_rule, register_type

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)

SAMPLE_STRINGS = [
    "",
    "a",
    "https://example.com/a.png",
    "data:image/png;base64,AAAA",
    "http://example.com/a.png",
    "ftp://x",
    "get_weather",
    "bad name!",
    "auto",
    "none",
    "required",
    "nonesuch",
    "123",
    "12345678",
]


def _types(rules: dict[str, Any]) -> list[str]:
    kind = rules.get("type")
    if not kind:
        return ["string", "int", "dict", "list", "boolean", "number"]
    return [kind] if isinstance(kind, str) else list(kind)


def _sizes(rules: dict[str, Any]) -> list[int]:
    sizes = {0, 1, 2}
    for rule in ("minlength", "maxlength", "maxitems", "maxchars"):
        limit = rules.get(rule)
        if isinstance(limit, int) and limit <= 300:
            sizes.update({max(limit - 1, 0), limit, limit + 1})
    return sorted(sizes)


def _numbers(rules: dict[str, Any]) -> st.SearchStrategy[Any]:
    points: list[Any] = [0, 1, -1, 2**31]
    for rule in ("min", "max"):
        bound = rules.get(rule)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool):
            points += [bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5]
    for value in rules.get("allowed", []):
        if isinstance(value, (int, float)):
            points.append(value)
    return st.one_of(st.sampled_from(points), st.integers(-5, 5), st.floats(-3, 3))


def _strings(rules: dict[str, Any]) -> st.SearchStrategy[str]:
    options: list[st.SearchStrategy[str]] = [st.sampled_from(SAMPLE_STRINGS), st.text(max_size=6)]
    allowed = [value for value in rules.get("allowed", []) if isinstance(value, str)]
    if allowed:
        options.append(st.sampled_from(allowed))
    if "regex" in rules:
        options.append(st.from_regex(re.compile(rules["regex"]), fullmatch=True).map(lambda s: s[:80]))
    options.append(st.sampled_from(_sizes(rules)).map(lambda n: "x" * n))
    return st.one_of(*options)


def values_for(rules: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value for a field with ``rules``: mostly plausible, sometimes wrong."""
    options: list[st.SearchStrategy[Any]] = [json_scalars, st.none()]
    if depth > 5:
        return st.one_of(*options)
    for kind in _types(rules):
        if kind == "string":
            options.append(_strings(rules))
        elif kind in ("int", "integer", "number", "float"):
            options.append(_numbers(rules))
        elif kind == "boolean":
            options.append(st.booleans())
        elif kind == "dict":
            options.append(_dicts(rules, depth))
        elif kind == "list":
            inner = rules.get("schema")
            item = values_for(inner, depth + 1) if isinstance(inner, dict) else json_values
            allowed = rules.get("allowed")
            if allowed:
                item = st.one_of(item, st.sampled_from(allowed))
            options.append(
                st.sampled_from(_sizes(rules)).flatmap(
                    lambda n, item=item: st.lists(item, min_size=n, max_size=n)
                )
            )
    return st.one_of(*options)


def _dicts(rules: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    fields = rules.get("schema")
    options: list[st.SearchStrategy[Any]] = [st.dictionaries(st.text(max_size=4), json_values, max_size=3)]
    if isinstance(fields, dict):
        options.append(documents_for(fields, depth + 1))
    keys = rules.get("keysrules")
    values = rules.get("valuesrules")
    if keys or values:
        key_strategy = _strings(keys or {})
        value_strategy = values_for(values or {}, depth + 1)
        sizes = _sizes(rules)
        options.append(
            st.sampled_from(sizes).flatmap(
                lambda n: st.dictionaries(key_strategy, value_strategy, min_size=min(n, 2), max_size=n)
            )
        )
    return st.one_of(*options)


def valid_for(rules: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """A value meant to pass ``rules`` (best effort: the first type, within every limit)."""
    kind = _types(rules)[0]
    allowed = rules.get("allowed")
    if allowed and kind != "list":
        return st.sampled_from(allowed)
    low = max(rules.get("minlength", 0), 0 if rules.get("empty", True) else 1)
    high = min(rules.get("maxlength", 3), rules.get("maxitems", 3), rules.get("maxchars", 3), 3)
    if kind == "string":
        if isinstance(rules.get("regex"), str):
            return st.from_regex(re.compile(rules["regex"]), fullmatch=True).map(lambda s: s[:60])
        return st.text(alphabet="abc", min_size=min(low, high), max_size=max(high, 0))
    if kind in ("int", "integer", "number", "float"):
        low_bound, high_bound = rules.get("min", -3), rules.get("max", 3)
        low_value = math.ceil(low_bound) if isinstance(low_bound, (int, float)) else -3
        high_value = math.floor(high_bound) if isinstance(high_bound, (int, float)) else 3
        return st.integers(low_value, max(low_value, high_value))
    if kind == "boolean":
        return st.booleans()
    if kind in ("dict", "container"):
        fields = rules.get("schema")
        return valid_documents(fields, depth + 1) if isinstance(fields, dict) and depth < 6 else st.just({})
    inner = rules.get("schema")
    item = valid_for(inner, depth + 1) if isinstance(inner, dict) and depth < 6 else st.just(0)
    if allowed:
        item = st.sampled_from(allowed)
    return st.lists(item, min_size=min(low, high), max_size=max(high, 0))


def valid_documents(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    required = {name: valid_for(rules, depth) for name, rules in schema.items() if rules.get("required")}
    optional = {name: valid_for(rules, depth) for name, rules in schema.items() if not rules.get("required")}
    return st.fixed_dictionaries(required, optional=optional)


def documents_for(schema: dict[str, Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Documents for ``schema``: valid ones, valid ones with one field spoilt, and wild ones
    (each field present or not, any value, the odd unknown key)."""
    fields = {name: values_for(rules, depth) for name, rules in schema.items()}
    wild = st.fixed_dictionaries({}, optional=fields)
    unknown = st.dictionaries(st.sampled_from(["extra", "zz_unknown", "a@b.c"]), json_values, max_size=1)
    wild = st.tuples(wild, unknown, st.booleans()).map(lambda t: {**t[0], **t[1]} if t[2] else t[0])
    valid = valid_documents(schema, depth)
    names = sorted(schema)
    spoilt = st.tuples(valid, st.sampled_from(names)).flatmap(
        lambda t: values_for(schema[t[1]], depth).map(lambda v, t=t: {**t[0], t[1]: v})
    )
    return st.one_of(valid, spoilt, wild)


def assert_same(schema: Schema, document: dict[str, Any]) -> None:
    fast = schema.validate(document).errors
    reference = schema.validate_with_cerberus(document).errors
    assert Counter(fast) == Counter(reference), (fast, reference)


PRESET_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("openai-chat", {}),
    (
        "openai-chat",
        {
            "max_messages": 3,
            "max_message_chars": 12,
            "max_parts": 2,
            "max_tools": 2,
            "max_n": 2,
            "max_output_tokens": 50,
        },
    ),
    (
        "openai-chat",
        {"allow_system": False, "allow_images": False, "allow_logprobs": True, "allow_logit_bias": True},
    ),
    ("openai-responses", {}),
    ("openai-responses", {"max_items": 3, "max_message_chars": 12, "max_parts": 2, "allow_system": False}),
    ("openai-responses", {"allow_images": False, "allow_logprobs": True, "max_tools": 2}),
    ("openai-embeddings", {}),
    ("openai-embeddings", {"max_inputs": 3, "max_input_chars": 5, "max_dimensions": 8}),
]


def test_every_preset_is_covered_and_compiled() -> None:
    assert {"openai-chat", "openai-responses", "openai-embeddings"} <= set(preset_names())
    assert {name for name, _ in PRESET_OPTIONS} == {"openai-chat", "openai-responses", "openai-embeddings"}
    for name, options in PRESET_OPTIONS:
        assert Schema(preset_schema(name, **options)).compiled


@pytest.mark.parametrize(
    ("name", "options"), PRESET_OPTIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PRESET_OPTIONS)]
)
def test_preset_fast_path_matches_cerberus(name: str, options: dict[str, Any]) -> None:
    definition = preset_schema(name, **options)
    schema = Schema(definition)

    @SETTINGS
    @given(documents_for(definition))
    def check(document: dict[str, Any]) -> None:
        assert_same(schema, document)

    check()


register_type("even_box", (int,), (bool,))
register_rule("even", lambda on, value: not on or not isinstance(value, int) or value % 2 == 0)
# Cerberus runs custom rules on None values too (nullable does not drop them).
register_rule("filled", lambda on, value: not on or value not in (None, ""))

EVERY_RULE = {
    "name": {
        "type": "string",
        "required": True,
        "empty": False,
        "minlength": 2,
        "maxlength": 5,
        "regex": "[a-z]+",
    },
    "kind": {"type": "string", "allowed": ["a", "b"], "forbidden": ["c"], "nullable": True},
    "count": {"type": "integer", "min": 1, "max": 3, "even": True},
    "box": {"type": "even_box", "nullable": True},
    "score": {"type": ["number", "string"], "min": 0, "max": 1.5},
    "tags": {"type": "list", "maxlength": 3, "allowed": ["x", "y", 1], "empty": True},
    "maybe": {},
    "items": {
        "type": "list",
        "schema": {
            "type": "dict",
            "require_all": True,
            "schema": {"a": {"type": "int"}, "b": {"nullable": True}},
        },
    },
    "open": {"type": "dict", "allow_unknown": True, "schema": {"k": {"type": "string", "required": True}}},
    "labels": {
        "type": "dict",
        "keysrules": {"type": "string", "regex": "[a-z]{1,3}"},
        "valuesrules": {"type": "list", "maxitems": 2, "schema": {"type": "integer"}},
    },
    "content": {
        "type": ["string", "list"],
        "maxchars": 4,
        "schema": {"type": "dict", "schema": {"text": {}}},
    },
    "anything": {"empty": False, "minlength": 1},
    "note": {"type": "string", "nullable": True, "filled": True},
}


def test_every_rule_schema_is_compiled() -> None:
    assert Schema(EVERY_RULE).compiled


@SETTINGS
@given(documents_for(EVERY_RULE))
def test_every_rule_fast_path_matches_cerberus(document: dict[str, Any]) -> None:
    assert_same(Schema(EVERY_RULE), document)


# ---- random schemas ------------------------------------------------------------------


TYPE_NAMES = ["string", "integer", "int", "number", "float", "boolean", "dict", "list", "container"]


@st.composite
def rules_sets(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    kinds = draw(st.lists(st.sampled_from(TYPE_NAMES), min_size=1, max_size=2, unique=True))
    rules["type"] = kinds[0] if len(kinds) == 1 else kinds
    if draw(st.booleans()):
        rules["nullable"] = draw(st.booleans())
    if draw(st.booleans()):
        rules["empty"] = draw(st.booleans())
    if draw(st.booleans()):
        rules["required"] = draw(st.booleans())
    for rule in ("minlength", "maxlength", "maxitems", "maxchars"):
        if draw(st.integers(0, 4)) == 0:
            rules[rule] = draw(st.integers(0, 3))
    for rule in ("min", "max"):
        if draw(st.integers(0, 3)) == 0:
            rules[rule] = draw(st.one_of(st.integers(-2, 2), st.sampled_from([0.5, "b", "m"])))
    if draw(st.integers(0, 3)) == 0:
        rules["allowed"] = draw(st.lists(st.sampled_from(["a", "b", 0, 1, True]), max_size=3))
    if draw(st.integers(0, 4)) == 0:
        rules["forbidden"] = draw(st.lists(st.sampled_from(["a", "x", 2]), max_size=2))
    if draw(st.integers(0, 4)) == 0:
        rules[draw(st.sampled_from(["even", "filled"]))] = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        rules["regex"] = draw(st.sampled_from(["[a-z]*", "a|b", "x.", "(?:none|auto)"]))
    nested = depth < 2
    has_list = any(k in ("list", "container") for k in kinds)
    has_dict = any(k in ("dict", "container") for k in kinds)
    if nested and has_list != has_dict and draw(st.booleans()):
        if has_list:
            rules["schema"] = draw(rules_sets(depth + 1))
        else:
            rules["schema"] = draw(schemas(depth + 1))
            if draw(st.booleans()):
                rules["allow_unknown"] = draw(st.booleans())
            if draw(st.booleans()):
                rules["require_all"] = draw(st.booleans())
    if nested and "dict" in kinds and draw(st.integers(0, 3)) == 0:
        rules["keysrules"] = {"type": "string", "regex": "[a-c]+"}
    if nested and "dict" in kinds and draw(st.integers(0, 3)) == 0:
        rules["valuesrules"] = draw(rules_sets(depth + 1))
    return rules


@st.composite
def schemas(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    names = draw(
        st.lists(st.sampled_from(list(string.ascii_lowercase[:6])), min_size=1, max_size=4, unique=True)
    )
    return {name: draw(rules_sets(depth)) for name in names}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.data(), schemas(), st.booleans(), st.booleans())
def test_random_schemas_fast_path_matches_cerberus(
    data: st.DataObject, definition: dict[str, Any], allow_unknown: bool, require_all: bool
) -> None:
    try:
        schema = Schema(definition, allow_unknown=allow_unknown, require_all=require_all)
    except Exception:
        assume(False)  # a combination Cerberus itself refuses as a schema
        raise
    assert schema.compiled, schema.not_compiled_reason
    for _ in range(5):
        document = data.draw(
            st.one_of(documents_for(definition), st.dictionaries(st.text(max_size=3), json_values))
        )
        try:
            reference = schema.validate_with_cerberus(document).errors
        except Exception as exc:
            # Cerberus crashes on some inputs (e.g. "forbidden" on a list of lists); the
            # fast path must then crash the same way (the stage turns both into a 422).
            with pytest.raises(type(exc)):
                schema.validate(document)
            continue
        assert Counter(schema.validate(document).errors) == Counter(reference), (document, reference)
