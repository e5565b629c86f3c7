"""Selecting values in a JSON document by path, to read them or rewrite them in place.

Stages that work on text (sanitisation, anonymization, token estimates) need the
same answer to "which strings are the user's text?". A selector names them::

    messages[*].content            every message's content
    messages[*].content[*].text    the text of every content part
    metadata.*                     every value of the metadata object
    input[0]                       the first item of ``input``
    **                             every value in the document (the root included)

Segments are separated by ``.``; ``name`` takes a key of an object, ``*`` every
value of an object, ``[*]`` every item of an array, ``[n]`` one item (negative
counts from the end), ``**`` a value and everything below it. A selector that does
not fit the document (missing key, a string where an array was expected) selects
nothing. Keys containing ``.``, ``[`` or ``]`` cannot be named.

:class:`Fields` compiles selectors once (sharing common prefixes) and then walks
only the parts of a document they name::

    fields = Fields(["messages[*].content", "messages[*].content[*].text"])
    for parent, key, value in fields.matches(document): ...
    changed = fields.rewrite(document, str.strip)   # strings only, in place

Each value comes at most once, even when selectors overlap. Order: document order
within a selector's branch; branches that share no prefix in the order given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from airlock.errors import ConfigurationError

__all__ = [
    "CHAT_TEXT_FIELDS",
    "EMBEDDINGS_TEXT_FIELDS",
    "OPENAI_TEXT_FIELDS",
    "RESPONSES_TEXT_FIELDS",
    "Fields",
    "parse_selector",
]

CHAT_TEXT_FIELDS = ("messages[*].content", "messages[*].content[*].text")
RESPONSES_TEXT_FIELDS = (
    "instructions",
    "input",
    "input[*].content",
    "input[*].content[*].text",
    "input[*].output",
    "input[*].output[*].text",
)
EMBEDDINGS_TEXT_FIELDS = ("input", "input[*]")
# Every place an OpenAI-style request carries the user's text (chat, responses,
# embeddings, legacy completions). Only strings are ever selected for text work.
OPENAI_TEXT_FIELDS = tuple(
    dict.fromkeys((*CHAT_TEXT_FIELDS, *RESPONSES_TEXT_FIELDS, *EMBEDDINGS_TEXT_FIELDS, "prompt", "prompt[*]"))
)

Step = tuple[
    str, Any
]  # ("key", name) | ("index", n) | ("any_key", None) | ("any_item", None) | ("deep", None)

_TOKEN_RE = re.compile(r"\.?(\*\*|\*|[^.\[\]]+)|\[(\*|-?\d+)\]")


def parse_selector(selector: str) -> tuple[Step, ...]:
    """``"messages[*].content"`` -> ``(("key", "messages"), ("any_item", None), ("key", "content"))``."""
    if not isinstance(selector, str) or not selector:
        raise ConfigurationError("a field selector is a non-empty string such as 'messages[*].content'")
    steps: list[Step] = []
    position = 0
    while position < len(selector):
        match = _TOKEN_RE.match(selector, position)
        if match is None or (position == 0 and selector.startswith(".")):
            raise ConfigurationError(f"invalid field selector {selector!r} at position {position}")
        name, index = match.group(1), match.group(2)
        if name == "**":
            steps.append(("deep", None))
        elif name == "*":
            steps.append(("any_key", None))
        elif name is not None:
            steps.append(("key", name))
        elif index == "*":
            steps.append(("any_item", None))
        else:
            steps.append(("index", int(index)))
        position = match.end()
    return tuple(steps)


class _Node:
    __slots__ = ("children", "terminal")

    def __init__(self) -> None:
        self.children: list[tuple[Step, _Node]] = []
        self.terminal = False

    def child(self, step: Step) -> _Node:
        for existing, node in self.children:
            if existing == step:
                return node
        node = _Node()
        self.children.append((step, node))
        return node


_Found = tuple[Any, Any, Any, "tuple[Any, ...] | None"]


def _descendants(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None) -> list[_Found]:
    """``value`` and everything below it, in document order (iterative: no recursion limit)."""
    found: list[_Found] = []
    stack = [(parent, key, value, path)]
    while stack:
        item = stack.pop()
        found.append(item)
        _, _, node, here = item
        if isinstance(node, dict):
            items: list[tuple[Any, Any]] = list(node.items())
        elif isinstance(node, list):
            items = list(enumerate(node))
        else:
            continue
        for k, v in reversed(items):
            stack.append((node, k, v, None if here is None else (*here, k)))
    return found


Collector = Callable[[Any, Any, Any, "tuple[Any, ...] | None", list[_Found]], None]


def _may_repeat(node: _Node) -> bool:
    """Whether two branches can reach the same value (a wildcard or ``**`` beside other steps)."""
    kinds = [kind for (kind, _), _ in node.children]
    if "deep" in kinds or (len(kinds) > 1 and ({"any_key", "any_item"} & set(kinds))):
        return True
    return any(_may_repeat(child) for _, child in node.children)


def _compile(node: _Node, *, with_paths: bool) -> Collector:
    steps = [
        (_compile_step(kind, arg, _compile(child, with_paths=with_paths)))
        for (kind, arg), child in node.children
    ]
    terminal = node.terminal

    def collect(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
        if terminal:
            out.append((parent, key, value, path))
        for step in steps:
            step(parent, key, value, path, out)

    return collect


def _compile_step(kind: str, arg: Any, child: Collector) -> Collector:
    # One small closure per selector step, so the walk never compares step kinds at run time.
    if kind == "key":

        def step(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
            if isinstance(value, dict) and arg in value:
                child(value, arg, value[arg], None if path is None else (*path, arg), out)

    elif kind == "any_item":

        def step(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    child(value, index, item, None if path is None else (*path, index), out)

    elif kind == "any_key":

        def step(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
            if isinstance(value, dict):
                for name, item in value.items():
                    child(value, name, item, None if path is None else (*path, name), out)

    elif kind == "index":

        def step(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
            if isinstance(value, list) and -len(value) <= arg < len(value):
                index = arg % len(value)
                child(value, index, value[index], None if path is None else (*path, index), out)

    else:  # deep: iterative, so a deep document cannot exhaust the stack

        def step(parent: Any, key: Any, value: Any, path: tuple[Any, ...] | None, out: list[_Found]) -> None:
            for found in _descendants(parent, key, value, path):
                child(*found, out)

    return step


class Fields:
    """A compiled set of field selectors (see the module documentation)."""

    __slots__ = ("_collect", "_collect_paths", "_may_repeat", "_root", "selectors")

    def __init__(self, selectors: Iterable[str]) -> None:
        if isinstance(selectors, str):
            selectors = (selectors,)
        self.selectors: tuple[str, ...] = tuple(dict.fromkeys(selectors))
        if not self.selectors:
            raise ConfigurationError("Fields needs at least one selector")
        self._root = _Node()
        for selector in self.selectors:
            node = self._root
            for step in parse_selector(selector):
                node = node.child(step)
            node.terminal = True
        # Compiled once into nested closures: a request then walks only the named branches
        # without interpreting the selector again (about 3x faster than a generic walk).
        self._collect = _compile(self._root, with_paths=False)
        self._collect_paths = _compile(self._root, with_paths=True)
        self._may_repeat = _may_repeat(self._root)

    def __repr__(self) -> str:
        return f"Fields({list(self.selectors)!r})"

    def _walk(self, document: Any, with_paths: bool) -> list[_Found]:
        collect = self._collect_paths if with_paths else self._collect
        found: list[_Found] = []
        collect(None, None, document, () if with_paths else None, found)
        if not self._may_repeat:
            return found
        seen: set[tuple[int, Any]] = set()
        unique: list[_Found] = []
        for item in found:
            marker = (id(item[0]), item[1])
            if marker not in seen:
                seen.add(marker)
                unique.append(item)
        return unique

    def matches(self, document: Any) -> Iterator[tuple[Any, Any, Any]]:
        """``(parent, key, value)`` for every selected value; ``parent`` is ``None`` for the root."""
        for parent, key, value, _ in self._walk(document, False):
            yield parent, key, value

    def with_paths(self, document: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
        """``(path, value)`` for every selected value, e.g. ``(("messages", 2, "content"), "...")``."""
        for _, _, value, path in self._walk(document, True):
            yield path or (), value

    def strings(self, document: Any) -> Iterator[str]:
        """Every selected value that is a string."""
        for _, _, value, _ in self._walk(document, False):
            if isinstance(value, str):
                yield value

    def rewrite(self, document: Any, function: Callable[[str], str]) -> int:
        """Replace every selected string ``s`` by ``function(s)`` in place; return how many changed.

        The root itself is never replaced (it has no parent to hold the new value).
        """
        changed = 0
        # Collect first: replacing while walking would feed new values to later selectors.
        targets = [
            (parent, key, value) for parent, key, value in self.matches(document) if isinstance(value, str)
        ]
        for parent, key, value in targets:
            if parent is None:
                continue
            new = function(value)
            if new != value:
                parent[key] = new
                changed += 1
        return changed
