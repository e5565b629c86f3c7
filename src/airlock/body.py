"""Reading the request body once, with a byte cap and a deadline, and replaying it.

The cap is enforced while reading, so a chunked upload without
``Content-Length`` is stopped as soon as it crosses the cap, and a declared
``Content-Length`` over the cap is refused before a single byte is read.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import anyio
from starlette.types import Message, Receive

from airlock.errors import BodyTimeout, BodyTooLarge, ClientDisconnected, InvalidContentLength

__all__ = ["parse_content_length", "read_body", "replay"]

if sys.version_info >= (3, 11):

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return task.cancelling()

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return task.uncancel()

else:  # pragma: no cover - Python 3.10 has no cancellation counting: nothing to undo

    def _cancelling(task: asyncio.Task[Any]) -> int:
        return 0

    def _uncancel(task: asyncio.Task[Any]) -> int:
        return 0


def parse_content_length(values: list[bytes]) -> int | None:
    """The declared ``Content-Length``; ``InvalidContentLength`` if it is malformed or conflicting."""
    if not values:
        return None
    text = values[0].strip()
    # int() would also take "+5", " 5", "5_0" and non-ASCII digits; HTTP allows only 1*DIGIT.
    if not text or not text.isdigit() or not text.isascii() or len(text) > 18:
        raise InvalidContentLength()
    if any(other.strip() != text for other in values[1:]):
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


def _expire(task: asyncio.Task[Any], fired: list[bool]) -> None:
    fired[0] = True
    task.cancel()


async def _read_before_deadline_asyncio(receive: Receive, limit: int, time_limit: float) -> bytes:
    # The pattern of asyncio.timeout(), reduced to one timer handle: it costs about half of
    # asyncio.timeout() and a quarter of anyio.fail_after(), on every request.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    cancelling = _cancelling(task)
    fired = [False]
    handle = loop.call_at(loop.time() + time_limit, _expire, task, fired)
    try:
        return await _read(receive, limit)
    except asyncio.CancelledError:
        if fired[0] and _uncancel(task) <= cancelling:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()


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
            body = await _read_before_deadline_asyncio(receive, limit, time_limit)
        else:
            with anyio.fail_after(time_limit):
                body = await _read(receive, limit)
    except TimeoutError:
        raise BodyTimeout(extensions={"body_timeout_seconds": time_limit}) from None
    return body


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` once, then defers to the server.

    Later calls reach the real ``receive`` so the app still learns of
    ``http.disconnect`` (Starlette's ``Request.is_disconnected`` and streaming
    responses rely on it).
    """
    sent = False

    async def receive_replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_replayed
