"""Server-sent events, as OpenAI-compatible providers stream them.

The gateway forwards whole events as soon as each is complete: a client's SSE
parser needs whole events anyway, a pseudonym restore sees whole JSON
documents, and the final event's ``usage`` can be read without a second parse
of everything else. Only the incomplete tail of the stream is held, and its
size is capped.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airlock.errors import UpstreamError

__all__ = ["EventSplitter", "event_data", "event_json"]

_SEPARATOR_RE = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """Cuts a byte stream into complete events, each with its terminating blank line."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = b""
        self._limit = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        events: list[bytes] = []
        start = 0
        # Search from a little before the old tail: a separator may straddle the chunk boundary.
        for match in _SEPARATOR_RE.finditer(data, max(0, len(self._buffer) - 3)):
            events.append(data[start : match.end()])
            start = match.end()
        self._buffer = data[start:]
        if len(self._buffer) > self._limit:
            raise UpstreamError(
                "The AI provider sent a stream event larger than this gateway accepts.",
                extensions={"max_response_bytes": self._limit},
            )
        return events

    def flush(self) -> bytes:
        """Whatever is left once the stream ended (an event without its blank line)."""
        rest, self._buffer = self._buffer, b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The ``data`` of one event (several ``data:`` lines joined by newlines), or ``None``."""
    lines = [line[5:].removeprefix(b" ") for line in event.splitlines() if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event_json(event: bytes) -> Any:
    """The event's data parsed as JSON; ``None`` for ``[DONE]``, comments or anything not JSON."""
    data = event_data(event)
    if data is None or data == b"[DONE]":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None
