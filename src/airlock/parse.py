"""Content type and JSON parsing, strict enough that every later stage and the
upstream provider see the same document.

Refused: other media types and charsets (415), bytes that are not UTF-8, JSON
syntax errors, ``NaN``/``Infinity`` and numbers that overflow a float such as
``1e400`` (not JSON, and providers reject them), duplicate object keys (a
validator could check one value while the provider reads the other) and nesting
deeper than the policy allows (400).
"""

from __future__ import annotations

import json
from typing import Any

from airlock.errors import InvalidEncoding, InvalidJSON, JSONTooDeep, UnsupportedMediaType

__all__ = ["check_json_media_type", "dump_json", "is_json_media_type", "json_depth_exceeds", "parse_json"]


def is_json_media_type(value: bytes | None) -> bool:
    """``application/json`` or ``application/<x>+json``, in UTF-8 if a charset is named."""
    if value is None:
        return False
    if value == b"application/json":  # the common case, without parsing parameters
        return True
    try:
        text = value.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return False
    media, _, params = text.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        return False
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


def check_json_media_type(values: list[bytes]) -> None:
    """Raise ``UnsupportedMediaType`` unless exactly one JSON ``Content-Type`` was sent."""
    if len(values) != 1:
        raise UnsupportedMediaType("Exactly one Content-Type header is required.")
    if not is_json_media_type(values[0]):
        raise UnsupportedMediaType()


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def _no_constants(name: str) -> Any:
    raise ValueError("non-finite number")


def _finite_float(text: str) -> float:
    # "1e400" is valid JSON syntax but overflows to infinity, which would then be
    # re-serialised as the non-JSON token "Infinity" when a stage changes the document.
    value = float(text)
    if value in _INFINITIES:
        raise ValueError("non-finite number")
    return value


_INFINITIES = (float("inf"), float("-inf"))
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
)


def json_depth_exceeds(document: Any, limit: int) -> bool:
    """True when ``document`` nests containers more than ``limit`` deep (iterative, no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def parse_json(body: bytes, *, max_depth: int) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEncoding() from None
    if text.startswith("\ufeff"):
        # RFC 8259 section 8.1: parsers may ignore a BOM; most providers do not, so refuse it.
        raise InvalidJSON("The request body starts with a byte order mark.")
    if not text.strip():
        raise InvalidJSON("The request body is empty.")
    try:
        document = _DECODER.decode(text)
    except RecursionError:
        raise JSONTooDeep(extensions={"max_depth": max_depth}) from None
    except _DuplicateKey:
        raise InvalidJSON("The request body repeats a key within one object.") from None
    except json.JSONDecodeError as exc:
        # Position only: the message of JSONDecodeError never includes the document.
        raise InvalidJSON(
            f"The request body is not valid JSON (line {exc.lineno}, column {exc.colno})."
        ) from None
    except ValueError:
        raise InvalidJSON(
            "The request body holds a number JSON does not allow or cannot be parsed."
        ) from None
    # Counting brackets is C-speed; only bodies with more brackets than the limit need the walk.
    if body.count(b"[") + body.count(b"{") > max_depth and json_depth_exceeds(document, max_depth):
        raise JSONTooDeep(extensions={"max_depth": max_depth})
    return document


def dump_json(document: Any) -> bytes:
    """``document`` as compact UTF-8 JSON: what the app and the provider receive.

    A lone surrogate (sent as a ``"\ud800"`` escape, which :func:`parse_json` accepts
    as JSON allows it) has no UTF-8 form, so such a document stays ASCII-escaped.
    """
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")
