"""Bounding what stages put in ``ctx.audit``, and the W3C trace id.

Stages promise content-free facts (counts, codes, paths, rule names). The audit
log still refuses to trust that promise with its size or its types: only JSON
scalars and lists/dicts of them pass, strings are cut, containers are capped,
so one buggy stage cannot put a document, an object's ``repr`` or a megabyte
in every log line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_KEY_CHARS",
    "MAX_NODES",
    "MAX_STRING_CHARS",
    "bounded",
    "bounded_counts",
    "bounded_names",
    "trace_id",
    "validation_failures",
]

MAX_DEPTH = 4
MAX_ITEMS = 32
MAX_STRING_CHARS = 128
MAX_KEY_CHARS = 64
# Values in all per bounded() call: keeps the worst-case event to a few tens of KB.
MAX_NODES = 256

_DROP = object()


_CONTAINERS = (dict, list, tuple)


def _scalar(value: Any, kind: type) -> Any:
    # Exact type checks: a str or int subclass may carry a custom __str__ / __repr__.
    if kind is str:
        return value if len(value) <= MAX_STRING_CHARS else value[:MAX_STRING_CHARS]
    if kind is int or kind is bool or value is None:
        return value
    if kind is float:
        # NaN and infinities are not JSON; json.dumps would write them anyway.
        return value if math.isfinite(value) else None
    return _DROP


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def _member(value: Any, depth: int, budget: _Budget) -> Any:
    """One value at ``depth`` (it costs one node of ``budget``), or ``_DROP``."""
    budget.left -= 1
    kind = type(value)
    if kind is dict or kind is list or kind is tuple:
        return _DROP if depth >= MAX_DEPTH else _container(value, kind, depth, budget)
    return _scalar(value, kind)


def _container(value: Any, kind: type, depth: int, budget: _Budget) -> Any:
    # The common scalars are handled inline: this runs for every value of every event.
    child = depth + 1
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if len(out) >= MAX_ITEMS or budget.left <= 0:
                break
            if type(key) is not str:
                continue
            if len(key) > MAX_KEY_CHARS:
                key = key[:MAX_KEY_CHARS]
            item_kind = type(item)
            if item_kind is str:
                budget.left -= 1
                out[key] = item if len(item) <= MAX_STRING_CHARS else item[:MAX_STRING_CHARS]
            elif item_kind is int or item_kind is bool or item is None:
                budget.left -= 1
                out[key] = item
            else:
                cleaned = _member(item, child, budget)
                if cleaned is not _DROP:
                    out[key] = cleaned
        return out
    items: list[Any] = []
    for item in value:
        if len(items) >= MAX_ITEMS or budget.left <= 0:
            break
        item_kind = type(item)
        if item_kind is str:
            budget.left -= 1
            items.append(item if len(item) <= MAX_STRING_CHARS else item[:MAX_STRING_CHARS])
        elif item_kind is int or item_kind is bool or item is None:
            budget.left -= 1
            items.append(item)
        else:
            cleaned = _member(item, child, budget)
            if cleaned is not _DROP:
                items.append(cleaned)
    return items


def bounded(value: Any, *, max_nodes: int = MAX_NODES) -> Any:
    """``value`` reduced to bounded JSON (``None`` if nothing of it may be logged).

    At most ``MAX_DEPTH`` levels, ``MAX_ITEMS`` members per container,
    ``max_nodes`` values in all and ``MAX_STRING_CHARS`` per string.
    """
    kind = type(value)
    if kind not in _CONTAINERS:
        cleaned = _scalar(value, kind)
    else:
        cleaned = _container(value, kind, 0, _Budget(max_nodes))
    return None if cleaned is _DROP else cleaned


def bounded_counts(counts: Mapping[str, Any]) -> dict[str, int]:
    """Entity type -> count, ints only."""
    out: dict[str, int] = {}
    for key, count in counts.items():
        if len(out) >= MAX_ITEMS:
            break
        if type(key) is str and type(count) is int:
            out[key[:MAX_KEY_CHARS]] = count
    return out


def bounded_names(names: Iterable[Any]) -> list[str]:
    return [name[:MAX_KEY_CHARS] for name in list(names)[:MAX_ITEMS] if type(name) is str]


# Keys that name *where* and *which rule*, across the shapes validators use:
# Cerberus-style {"path", "rule"}, RFC 9457's {"name", "reason"}, JSON Pointer,
# pydantic's {"loc", "type"}. Anything else (values, messages) is left out.
_PATH_KEYS = ("path", "pointer", "field", "name", "loc")
_RULE_KEYS = ("rule", "code", "type", "constraint")


def validation_failures(extensions: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Paths and rule names from a validation problem's extensions, nothing else."""
    failures: list[dict[str, Any]] = []
    for value in extensions.values():
        if type(value) is not list:
            continue
        for item in value:
            if len(failures) >= MAX_ITEMS:
                return failures
            if type(item) is not dict:
                continue
            entry: dict[str, Any] = {}
            for keys, out_key in ((_PATH_KEYS, "path"), (_RULE_KEYS, "rule")):
                for key in keys:
                    found = bounded(item.get(key))
                    if found is not None:
                        entry[out_key] = found
                        break
            if entry:
                failures.append(entry)
    return failures


# traceparent = version "-" trace-id "-" parent-id "-" trace-flags, lowercase hex (W3C Trace Context).
_TRACEPARENT_RE = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = b"0" * 32
_ZERO_PARENT = b"0" * 16


def trace_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The trace id of a valid W3C ``traceparent`` header, else ``None``."""
    found: bytes | None = None
    for name, value in headers:
        if name == b"traceparent":
            if found is not None:
                return None  # two traceparents: the spec says to treat it as absent
            found = value
    if found is None:
        return None
    match = _TRACEPARENT_RE.fullmatch(found.strip())
    if match is None:
        return None
    version, trace, parent, _flags, rest = match.groups()
    if version == b"ff" or trace == _ZERO_TRACE or parent == _ZERO_PARENT:
        return None
    if version == b"00" and rest:
        return None  # version 00 has exactly four fields
    return trace.decode("ascii")
