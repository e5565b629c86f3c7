"""One exception tree for everything airlock refuses.

Every rejection carries an HTTP status, a stable machine-readable ``code`` and a
short human title. Messages are written by airlock, never built from the
request: no exception here may carry user content, a key or a header value, so
that a traceback, a log line or an error body cannot leak what the client sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

__all__ = [
    "PROBLEM_CODES",
    "AirlockError",
    "AmbiguousCredentials",
    "BidiOverride",
    "BodyTimeout",
    "BodyTooLarge",
    "BudgetExhausted",
    "ClientDisconnected",
    "ConcurrencyLimited",
    "ConfigurationError",
    "ConsentRequired",
    "InvalidContentLength",
    "InvalidEncoding",
    "InvalidJSON",
    "JSONTooDeep",
    "JSONTooLarge",
    "PromptTooLong",
    "RateLimited",
    "Rejection",
    "StorageUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamRateLimited",
    "UpstreamTimeout",
    "ValidationFailed",
]


class AirlockError(Exception):
    """Base class of every exception airlock raises on purpose."""


class ConfigurationError(AirlockError, ValueError):
    """Invalid configuration, raised at start-up (never per request)."""


class ClientDisconnected(AirlockError):
    """The client went away before the request body was complete.

    Not a rejection: nobody is left to answer. The engine records the request as
    abandoned and never calls the handler.
    """


class Rejection(AirlockError):
    """A request airlock refuses, rendered as RFC 9457 ``application/problem+json``.

    ``detail`` is a sentence written by airlock. ``extensions`` holds extra
    members of the problem object; callers put only content-free data there
    (field paths, rule names, limits, counts).
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    default_detail: ClassVar[str] = "The request was refused."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.headers: dict[str, str] = dict(headers or {})
        self.extensions: dict[str, Any] = dict(extensions or {})
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status})"

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class BodyTooLarge(Rejection):
    status = 413
    code = "body_too_large"
    title = "Request body too large"
    default_detail = "The request body is larger than this route accepts."


class BodyTimeout(Rejection):
    status = 408
    code = "body_timeout"
    title = "Request body timeout"
    default_detail = "The request body did not arrive in time."


class InvalidContentLength(Rejection):
    status = 400
    code = "invalid_content_length"
    title = "Invalid Content-Length"
    default_detail = "The Content-Length header is not valid or does not match the body."


class UnsupportedMediaType(Rejection):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"
    default_detail = "This route accepts application/json in UTF-8 only."


class InvalidEncoding(Rejection):
    status = 400
    code = "invalid_encoding"
    title = "Invalid encoding"
    default_detail = "The request body is not valid UTF-8."


class InvalidJSON(Rejection):
    status = 400
    code = "invalid_json"
    title = "Invalid JSON"
    default_detail = "The request body is not valid JSON."


class JSONTooDeep(Rejection):
    status = 400
    code = "json_too_deep"
    title = "JSON nested too deeply"
    default_detail = "The request body is nested more deeply than this route accepts."


class Unauthorized(Rejection):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"
    default_detail = "A valid API key is required."


class AmbiguousCredentials(Rejection):
    status = 400
    code = "ambiguous_credentials"
    title = "Ambiguous credentials"
    default_detail = "More than one credential was sent; send exactly one."


class ConsentRequired(Rejection):
    status = 403
    code = "consent_required"
    title = "Consent required"
    default_detail = "The content holds personal data and the request carries no consent."


class ValidationFailed(Rejection):
    status = 422
    code = "validation_failed"
    title = "Validation failed"
    default_detail = "The request body does not match what this route accepts."


class RateLimited(Rejection):
    status = 429
    code = "rate_limited"
    title = "Too many requests"
    default_detail = "The request rate limit was reached; retry later."


class ConcurrencyLimited(Rejection):
    status = 429
    code = "too_many_concurrent_requests"
    title = "Too many concurrent requests"
    default_detail = "Too many requests of this caller are in flight; retry when one has finished."


class BudgetExhausted(Rejection):
    status = 429
    code = "budget_exhausted"
    title = "Token budget exhausted"
    default_detail = "The token budget was reached; retry later."


class StorageUnavailable(Rejection):
    status = 503
    code = "storage_unavailable"
    title = "Limit storage unavailable"
    default_detail = "The limit storage did not answer; the request was not admitted."


class UpstreamError(Rejection):
    status = 502
    code = "upstream_error"
    title = "Upstream error"
    default_detail = "The AI provider failed to answer."


class UpstreamTimeout(Rejection):
    status = 504
    code = "upstream_timeout"
    title = "Upstream timeout"
    default_detail = "The AI provider did not answer in time."


class UpstreamRateLimited(Rejection):
    """The provider kept answering 429 (the gateway's own quota there, shared by all callers)."""

    status = 503
    code = "upstream_rate_limited"
    title = "Upstream rate limited"
    default_detail = "The AI provider is rate limiting this gateway; retry later."


class JSONTooLarge(Rejection):
    """The JSON document is well-formed but bigger in shape than the route allows
    (items in one array, keys and items in all, characters in one string)."""

    status = 422
    code = "json_too_large"
    title = "JSON structure too large"
    default_detail = "The request body holds more items or longer strings than this route accepts."


class PromptTooLong(Rejection):
    """The estimated prompt tokens exceed the route's cap (refused before it costs anything)."""

    status = 413
    code = "prompt_too_long"
    title = "Prompt too long"
    default_detail = "The prompt is estimated to be longer than this route accepts."


class BidiOverride(Rejection):
    """Text holds bidirectional override or isolate controls and the route refuses them."""

    status = 422
    code = "bidi_override"
    title = "Bidirectional control characters refused"
    default_detail = "The text holds bidirectional override characters, which this route refuses."


def _collect(classes: Sequence[type[Rejection]]) -> dict[str, type[Rejection]]:
    table: dict[str, type[Rejection]] = {}
    pending = list(classes)
    while pending:
        cls = pending.pop()
        table.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return table


def problem_codes() -> dict[str, type[Rejection]]:
    """Every problem ``code`` airlock can answer with, mapped to its class.

    Computed on demand so rejections defined in later modules are included.
    """
    return _collect(Rejection.__subclasses__())


PROBLEM_CODES = problem_codes()
