"""JSON field selection: selector syntax, matches, paths, in-place rewrites."""

from __future__ import annotations

from typing import Any

import pytest

from airlock import ConfigurationError
from airlock.fields import CHAT_TEXT_FIELDS, OPENAI_TEXT_FIELDS, Fields, parse_selector

DOC: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "sys"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "part"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None},
    ],
    "metadata": {"a": "x", "b": 1},
}


def test_parse_selector() -> None:
    assert parse_selector("messages[*].content[0].text") == (
        ("key", "messages"),
        ("any_item", None),
        ("key", "content"),
        ("index", 0),
        ("key", "text"),
    )
    assert parse_selector("metadata.*") == (("key", "metadata"), ("any_key", None))
    assert parse_selector("**") == (("deep", None),)
    assert parse_selector("[*][-1]") == (("any_item", None), ("index", -1))
    for bad in ("", ".a", "a[", "a[x]", "a..b", "a]"):
        with pytest.raises(ConfigurationError):
            parse_selector(bad)


def test_chat_text_fields_select_string_content_and_text_parts() -> None:
    fields = Fields(CHAT_TEXT_FIELDS)
    assert list(fields.strings(DOC)) == ["sys", "part"]
    paths = [path for path, _ in fields.with_paths(DOC)]
    assert paths == [
        ("messages", 0, "content"),
        ("messages", 1, "content"),
        ("messages", 1, "content", 0, "text"),
        ("messages", 2, "content"),
    ]


def test_wildcards_indexes_and_deep() -> None:
    assert [v for _, v in Fields(["metadata.*"]).with_paths(DOC)] == ["x", 1]
    assert list(Fields(["messages[-1].role", "messages[5].role"]).strings(DOC)) == ["assistant"]
    every = list(Fields(["**"]).strings(DOC))
    assert every == ["m", "system", "sys", "user", "text", "part", "image_url", "assistant", "x"]
    assert list(Fields(["messages[*].**"]).strings(DOC))[:2] == ["system", "sys"]


def test_mismatched_shapes_select_nothing() -> None:
    assert list(Fields(["model.name", "messages.content", "metadata[*]", "nope"]).matches(DOC)) == []
    assert list(Fields(OPENAI_TEXT_FIELDS).matches("just a string")) == []


def test_overlapping_selectors_yield_each_value_once() -> None:
    fields = Fields(["messages[*].content", "messages[0].content", "**"])
    contents = [v for p, v in fields.with_paths(DOC) if p == ("messages", 0, "content")]
    assert contents == ["sys"]


def test_rewrite_replaces_strings_in_place_and_counts_changes() -> None:
    document = {
        "messages": [{"content": "a"}, {"content": "B"}, {"content": [{"text": "c"}]}, {"content": 5}]
    }
    changed = Fields(CHAT_TEXT_FIELDS).rewrite(document, str.upper)
    assert changed == 2
    assert document == {
        "messages": [{"content": "A"}, {"content": "B"}, {"content": [{"text": "C"}]}, {"content": 5}]
    }


def test_rewrite_never_replaces_the_root() -> None:
    assert Fields(["**"]).rewrite("root", str.upper) == 0


def test_deep_documents_do_not_hit_the_recursion_limit() -> None:
    document: Any = "leaf"
    for _ in range(50_000):
        document = [document]
    assert list(Fields(["**"]).strings(document)) == ["leaf"]


def test_needs_a_selector() -> None:
    with pytest.raises(ConfigurationError):
        Fields([])
    assert Fields("a").selectors == ("a",)
