"""RFC 9457 problem details: the one shape every airlock rejection takes on the wire."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Send

from airlock.errors import Rejection

__all__ = ["PROBLEM_CONTENT_TYPE", "problem_body", "problem_type", "send_problem"]

PROBLEM_CONTENT_TYPE = "application/problem+json"

# A URN names the problem type without promising a page that may not exist;
# RFC 9457 section 3.1.1 lets ``type`` be any URI that clients match on.
_TYPE_PREFIX = "urn:airlock:problem:"

_BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-type", PROBLEM_CONTENT_TYPE.encode("latin-1")),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


def problem_type(code: str) -> str:
    return _TYPE_PREFIX + code


def problem_body(error: Rejection, *, request_id: str | None = None) -> bytes:
    document: dict[str, Any] = {
        "type": problem_type(error.code),
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    if request_id is not None:
        document["request_id"] = request_id
    for key, value in error.extensions.items():
        document.setdefault(key, value)
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def send_problem(
    send: Send,
    error: Rejection,
    *,
    request_id: str | None = None,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
    finish: bool = True,
) -> int:
    """Send ``error`` as a response; return the number of body bytes sent.

    With ``finish=False`` the whole body is sent but the response is left open
    (``more_body``), so the caller can do something before ending it.
    """
    body = problem_body(error, request_id=request_id)
    headers = list(_BASE_HEADERS)
    headers.append((b"content-length", str(len(body)).encode("latin-1")))
    for name, value in error.headers.items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": not finish})
    return len(body)
