"""Atheris harness: strict JSON parsing, the field walker and the structure caps.

From raw bytes: ``airlock.parse.parse_json`` either refuses with a documented rejection or
returns a document; for a document, ``airlock.fields.Fields`` (with fuzzed selectors too)
must select only values that are really at the paths it reports, each at most once, and
``rewrite`` must change exactly the selected strings; ``StructureCaps.check`` must refuse
exactly the documents a plain recursive measurement says exceed a cap, and its byte-count
shortcut (``within_bounds``) must never skip a document that exceeds one.

Run through ``tests/fuzz/run.py`` (``make fuzz``), or directly::

    python tests/fuzz/fuzz_json_walker.py CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports(include=["airlock"]):
    from airlock.errors import ConfigurationError, Rejection, problem_codes
    from airlock.fields import OPENAI_TEXT_FIELDS, Fields
    from airlock.parse import json_depth_exceeds, parse_json
    from airlock.validation.caps import StructureCaps

CODES = frozenset(problem_codes())
SELECTORS = [*OPENAI_TEXT_FIELDS, "**", "*", "a.*", "a[*].b", "[0]", "a[-1]", "*.*[*]", "a.**"]
sys.setrecursionlimit(10_000)  # the reference measurement below recurses; parse_json caps depth


def measure(node: Any, depth: int = 1) -> tuple[int, int, int, int]:
    """(depth, largest array, keys and items in all, longest string incl. keys), recursively."""
    if isinstance(node, str):
        return 0, 0, 0, len(node)
    if isinstance(node, dict):
        children = list(node.values())
        longest = max((len(key) for key in node), default=0)
        largest = 0
    elif isinstance(node, list):
        children = node
        longest = 0
        largest = len(node)
    else:
        return 0, 0, 0, 0
    deepest, total = depth, len(children)
    for child in children:
        d, a, t, s = measure(child, depth + 1)
        deepest, largest, total, longest = max(deepest, d), max(largest, a), total + t, max(longest, s)
    return deepest, largest, total, longest


def resolve(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def check_fields(document: Any, selectors: list[str]) -> None:
    try:
        fields = Fields(selectors)
    except ConfigurationError:
        return
    seen = set()
    for path, value in fields.with_paths(document):
        assert resolve(document, path) is value, path
        seen.add(path)
    matched = list(fields.matches(document))
    assert len({(id(parent), key) for parent, key, _ in matched}) == len(matched), "a value selected twice"
    expected = sum(
        1 for parent, _, value in matched if parent is not None and isinstance(value, str) and value
    )
    changed = fields.rewrite(document, lambda text: text + "!" if text else text)
    assert changed == expected, (changed, expected)


def check_caps(document: Any, body: bytes, caps: StructureCaps) -> None:
    depth, largest, total, longest = measure(document)
    if isinstance(document, str):
        longest = len(document)
    over = {
        "max_depth": depth > caps.max_depth,
        "max_array_items": largest > caps.max_array_items,
        "max_total_items": total > caps.max_total_items,
        "max_string_length": longest > caps.max_string_length,
    }
    try:
        caps.check(document)
    except Rejection as refusal:
        cap = refusal.extensions.get("cap", "max_depth")
        assert over[cap], f"refused for {cap} but the document is within it"
    else:
        assert not any(over.values()), f"not refused though over {over}"
    if caps.within_bounds(body):
        assert not any(over.values()), "the byte-count shortcut skipped a document over a cap"
    assert json_depth_exceeds(document, caps.max_depth) == (depth > caps.max_depth)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    caps = StructureCaps(
        max_depth=provider.ConsumeIntInRange(1, 12),
        max_array_items=provider.ConsumeIntInRange(1, 40),
        max_total_items=provider.ConsumeIntInRange(1, 80),
        max_string_length=provider.ConsumeIntInRange(1, 60),
    )
    chosen = [SELECTORS[i % len(SELECTORS)] for i in provider.ConsumeIntList(2, 1)]
    fuzzed_selector = provider.ConsumeUnicode(provider.ConsumeIntInRange(0, 24))
    body = provider.ConsumeBytes(provider.remaining_bytes())
    refusal: Rejection | None = None
    try:
        document = parse_json(body, max_depth=64)
    except Rejection as exc:
        refusal = exc
    if refusal is not None:
        assert refusal.code in CODES
        assert refusal.status in (400, 422)
        return
    check_caps(document, body, caps)
    check_fields(document, chosen)
    check_fields(document, [*chosen, fuzzed_selector])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
