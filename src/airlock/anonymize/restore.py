"""Putting originals back into the response: JSON, server-sent events and plain text.

:class:`RestoreFilter` is the engine's ``ctx.body_filter`` for a request whose
content was pseudonymized. It rewrites the response body chunk by chunk:

* ``application/json`` (and ``+json``): placeholders are found in the raw bytes
  (they are plain ASCII, never escaped) and replaced by the original, JSON-string-
  escaped, so quotes or backslashes in a value cannot break the document.
* ``text/event-stream``: each ``data:`` line holding JSON is parsed, its strings
  restored and the event re-serialised. Models stream a placeholder token by
  token (``"[EMAIL"``, ``"_1a2b"``, ``"3c4d]"``), so a string that ends with the
  start of a placeholder keeps that tail back and prepends it to the same field of
  the next event; only that tail is ever held, never the stream.
* ``text/plain``: like JSON, without escaping.

Any other media type, or a compressed body, is left alone (``begin`` returns False).
"""

from __future__ import annotations

import json
import re
from typing import Any

from airlock.anonymize.vault import Vault

__all__ = ["ChainedFilter", "RestoreFilter"]

_PLACEHOLDER_BYTES = re.compile(rb"\[([A-Za-z][A-Za-z0-9_]{0,39})_([0-9A-Fa-f]{8,32})\]")
# A placeholder's start inside a JSON event ("[" then a letter, or "[" ending a string);
# arrays ("[{", "[1") do not count, so most events skip parsing.
_MAYBE_PLACEHOLDER = re.compile(rb'\[[A-Za-z"]')
_MAX_LINE = 4 * 1024 * 1024  # an SSE line longer than this is restored without parsing
Path = tuple[Any, ...]


def _media_type(headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    media = encoding = ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-type":
            media = value.split(b";", 1)[0].strip().lower().decode("latin-1")
        elif lowered == b"content-encoding":
            encoding = value.strip().lower().decode("latin-1")
    return media, encoding


class RestoreFilter:
    """A body filter that restores the pseudonyms of ``vault`` in one response."""

    __slots__ = ("_carry", "_line", "_mode", "_pending", "_replacements", "_templates", "vault")

    def __init__(self, vault: Vault) -> None:
        self.vault = vault
        self._mode = ""
        self._pending = b""
        self._line = b""
        # SSE: held-back tails per JSON path, and the last event that had each path.
        self._carry: dict[Path, str] = {}
        self._templates: dict[Path, Any] = {}
        self._replacements: dict[bytes, bytes] = {}

    def __repr__(self) -> str:
        return f"<RestoreFilter mode={self._mode or 'unset'} placeholders={len(self.vault)}>"

    def begin(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        if not self.vault:
            return False
        media, encoding = _media_type(headers)
        if encoding not in ("", "identity"):
            return False
        if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
            self._mode = "json"
        elif media == "text/event-stream":
            self._mode = "sse"
        elif media == "text/plain":
            self._mode = "text"
        else:
            return False
        return True

    # -- raw bytes (JSON and plain text) ---------------------------------------------

    def _replacement(self, match: re.Match[bytes]) -> bytes:
        token = match.group()
        known = self._replacements.get(token)
        if known is not None:
            return known
        original = self.vault.get(token.decode("ascii"))
        if original is None:
            return token
        if self._mode == "text":
            out = original.encode("utf-8", "surrogatepass")
        else:
            out = json.dumps(original, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")
        self._replacements[token] = out
        return out

    def _restore_bytes(self, data: bytes, final: bool) -> bytes:
        if not final:
            cut = self._hold_from(data)
            data, self._pending = data[:cut], data[cut:]
        if b"[" not in data:
            return data
        return _PLACEHOLDER_BYTES.sub(self._replacement, data)

    def _hold_from(self, data: bytes) -> int:
        start = data.rfind(b"[")
        if start < 0 or len(data) - start >= 75:
            return len(data)
        tail = data[start:].decode("latin-1")
        return start + self.vault.pending_start(tail)

    # -- server-sent events ----------------------------------------------------------

    def _restore_string(self, path: Path, value: str, event: Any) -> str:
        carried = self._carry.pop(path, "")
        text = carried + value
        cut = self.vault.pending_start(text)
        if cut < len(text):
            self._carry[path] = text[cut:]
            self._templates[path] = event
            text = text[:cut]
        return self.vault.restore(text)

    def _walk(self, node: Any, path: Path, event: Any) -> Any:
        if isinstance(node, str):
            if "[" in node or path in self._carry:
                return self._restore_string(path, node, event)
            return node
        if isinstance(node, dict):
            return {key: self._walk(value, (*path, key), event) for key, value in node.items()}
        if isinstance(node, list):
            return [
                self._walk(value, (*path, _item_key(index, value)), event) for index, value in enumerate(node)
            ]
        return node

    def _release(self) -> bytes:
        """Held tails that never became placeholders, as one extra event per field."""
        out = b""
        for path, tail in list(self._carry.items()):
            event = self._templates.pop(path, None)
            restored = self.vault.restore(tail)
            out += b"data: " + _dumps(_with_only(event, path, restored, self._carry)) + b"\n\n"
        self._carry.clear()
        return out

    def _sse_line(self, line: bytes) -> bytes:
        body = line.rstrip(b"\r\n")
        ending = line[len(body) :]
        if not body.startswith(b"data:"):
            return line
        payload = body[5:]
        if payload.startswith(b" "):
            payload = payload[1:]
        if payload.strip() == b"[DONE]":
            return self._release() + line
        if not self._carry and not _MAYBE_PLACEHOLDER.search(payload):
            return line
        try:
            event = json.loads(payload)
        except ValueError:
            return _PLACEHOLDER_BYTES.sub(self._replacement_text, line)
        restored = self._walk(event, (), None)
        if restored == event and not self._carry:
            return line  # nothing to restore: the event stays byte-identical
        # Remember the restored event as the template for any tail it holds back.
        for path in self._templates:
            if self._templates[path] is None:
                self._templates[path] = restored
        return b"data: " + _dumps(restored) + ending

    def _replacement_text(self, match: re.Match[bytes]) -> bytes:
        original = self.vault.get(match.group().decode("ascii"))
        return match.group() if original is None else original.encode("utf-8", "surrogatepass")

    def _restore_sse(self, chunk: bytes, final: bool) -> bytes:
        data = self._line + chunk
        out: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            out.append(self._sse_line(data[start : end + 1]))
            start = end + 1
        rest = data[start:]
        if final or len(rest) > _MAX_LINE:
            if rest:
                out.append(_PLACEHOLDER_BYTES.sub(self._replacement_text, rest))
            if final and self._carry:
                out.append(self._release())
            rest = b""
        self._line = rest
        return b"".join(out)

    # -- BodyFilter ------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        if self._mode == "sse":
            return self._restore_sse(chunk, False)
        return self._restore_bytes(self._pending + chunk, False)

    def flush(self) -> bytes:
        if self._mode == "sse":
            return self._restore_sse(b"", True)
        data, self._pending = self._pending, b""
        return self._restore_bytes(data, True)


def _item_key(position: int, item: Any) -> Any:
    """Where a list item belongs across events: streamed choices carry their own ``index``
    (each event holds one choice at position 0, whichever choice it is)."""
    if isinstance(item, dict):
        index = item.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            return ("index", index)
    return position


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _with_only(event: Any, keep: Path, text: str, carried: dict[Path, str]) -> Any:
    """A copy of ``event`` whose ``keep`` string is ``text`` and whose other held fields are empty."""

    def copy(node: Any, path: Path) -> Any:
        if path == keep:
            return text
        if isinstance(node, str):
            return "" if path in carried else node
        if isinstance(node, dict):
            return {key: copy(value, (*path, key)) for key, value in node.items()}
        if isinstance(node, list):
            return [copy(value, (*path, _item_key(index, value))) for index, value in enumerate(node)]
        return node

    if event is None:
        return text
    return copy(event, ())


class ChainedFilter:
    """Two body filters in a row (``first`` sees the app's bytes, ``second`` what ``first`` made)."""

    __slots__ = ("_active", "first", "second")

    def __init__(self, first: Any, second: Any) -> None:
        self.first = first
        self.second = second
        self._active: list[Any] = []

    def __repr__(self) -> str:
        return f"<ChainedFilter {self.first!r} -> {self.second!r}>"

    def begin(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        self._active = [f for f in (self.first, self.second) if f.begin(status, headers)]
        return bool(self._active)

    def feed(self, chunk: bytes) -> bytes:
        for body_filter in self._active:
            chunk = body_filter.feed(chunk)
        return chunk

    def flush(self) -> bytes:
        out = b""
        for body_filter in self._active:
            out = body_filter.feed(out) + body_filter.flush() if out else body_filter.flush()
        return out
