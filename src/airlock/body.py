"""Reading the request body once, with a byte cap and a deadline, and replaying it.

The cap is enforced while reading, so a chunked upload without
``Content-Length`` is stopped as soon as it crosses the cap, and a declared
``Content-Length`` over the cap is refused before a single byte is read.
"""

from __future__ import annotations

import anyio
from starlette.types import Message, Receive, Scope

from airlock.errors import BodyTimeout, BodyTooLarge, ClientDisconnected, InvalidContentLength

__all__ = ["content_length", "read_body", "replay"]


def content_length(scope: Scope) -> int | None:
    """The declared ``Content-Length``; ``InvalidContentLength`` if it is malformed or repeated."""
    found: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            if found is not None and found != value:
                raise InvalidContentLength()
            found = value
    if found is None:
        return None
    text = found.strip()
    # int() would also take "+5", " 5", "5_0" and non-ASCII digits; HTTP allows only 1*DIGIT.
    if not text or not text.isdigit() or not text.isascii() or len(text) > 18:
        raise InvalidContentLength()
    return int(text)


async def read_body(scope: Scope, receive: Receive, *, limit: int, time_limit: float) -> bytes:
    """Read the whole body, refusing it as soon as it exceeds ``limit`` bytes.

    Raises ``BodyTooLarge`` (413), ``BodyTimeout`` (408) when the body takes longer
    than ``time_limit`` seconds in all, ``InvalidContentLength`` (400) when the body
    does not match its declared length, and ``ClientDisconnected`` when the client
    leaves first.
    """
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(extensions={"max_body_bytes": limit})
    chunks: list[bytes] = []
    size = 0
    try:
        with anyio.fail_after(time_limit):
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
    except TimeoutError:
        raise BodyTimeout(extensions={"body_timeout_seconds": time_limit}) from None
    if declared is not None and declared != size:
        raise InvalidContentLength()
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


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
