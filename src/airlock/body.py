"""Reading the request body once, with a byte cap and a deadline.

The cap is enforced while reading, so a chunked upload without
``Content-Length`` is stopped as soon as it crosses the cap, and a declared
``Content-Length`` over the cap is refused before a single byte is read.
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.types import Receive

from airlock.deadline import before_deadline
from airlock.errors import BodyTimeout, BodyTooLarge, ClientDisconnected, InvalidContentLength

__all__ = ["parse_content_length", "read_body"]


def parse_content_length(values: list[bytes]) -> int | None:
    """The declared ``Content-Length``; ``InvalidContentLength`` if it is malformed or conflicting."""
    if not values:
        return None
    text = values[0].strip()
    # int() would also take "+5", " 5", "5_0" and non-ASCII digits; HTTP allows only 1*DIGIT.
    if not text or not text.isdigit() or not text.isascii() or len(text) > 18:
        raise InvalidContentLength()
    # Nearly every request has one Content-Length: no generator for the comparison then.
    if len(values) > 1 and any(other.strip() != text for other in values[1:]):
        raise InvalidContentLength()
    return int(text)


async def _read(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnected()
        if kind != "http.request":
            continue
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(extensions={"max_body_bytes": limit})
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def read_body(receive: Receive, *, declared: int | None, limit: int, time_limit: float) -> bytes:
    """Read the whole body, refusing it as soon as it exceeds ``limit`` bytes.

    ``declared`` is the request's ``Content-Length`` (see :func:`parse_content_length`).
    Raises ``BodyTooLarge`` (413), ``BodyTimeout`` (408) when the body takes longer
    than ``time_limit`` seconds in all (a per-chunk timeout would let a client
    trickle one byte at a time forever), and ``ClientDisconnected`` when the client
    leaves first. The caller compares the result with ``declared``.
    """
    if declared is not None and declared > limit:
        raise BodyTooLarge(extensions={"max_body_bytes": limit})
    try:
        try:
            asyncio.get_running_loop()
            on_asyncio = True
        except RuntimeError:  # another anyio backend (trio)
            on_asyncio = False
        if on_asyncio:
            body = await before_deadline(_read(receive, limit), time_limit)
        else:
            with anyio.fail_after(time_limit):
                body = await _read(receive, limit)
    except TimeoutError:
        raise BodyTimeout(extensions={"body_timeout_seconds": time_limit}) from None
    return body
