"""``Validate``: the validate stage (structure caps, schema, token estimate and cap).

::

    Policy(validate=Validate(preset="openai-chat", max_messages=50, allow_system=False,
                             max_prompt_tokens=8000))
    Policy(validate=Validate(schema={"question": {"type": "string", "required": True}}))
    Policy(validate=Validate.from_file("schemas/ask.yaml"))

Per request, in order: the structure caps (``400 json_too_deep`` / ``422
json_too_large``), the schema (``422 validation_failed`` with an ``errors`` list of
paths and rule names, never values), then the prompt token estimate, stored in
``ctx.token_estimate`` for the budget stage and checked against
``max_prompt_tokens`` (``413 prompt_too_long``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from airlock.errors import ConfigurationError, JSONTooDeep, JSONTooLarge, PromptTooLong, ValidationFailed
from airlock.fields import Fields
from airlock.validation.caps import StructureCaps
from airlock.validation.compiler import Errors
from airlock.validation.presets import get_preset, preset_schema
from airlock.validation.schema import Schema, load_schema, render_errors
from airlock.validation.tokens import Estimator, fields_estimator, heuristic_tokens, make_counter

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["Validate"]

logger = logging.getLogger("airlock.validation")

_DEFAULT_CAPS = StructureCaps()
# Bodies larger than this run plain Cerberus or a user's tokenizer in a worker
# thread, so one big request does not stall every other request on the loop.
_OFFLOAD_BYTES = 64 * 1024


class Validate:
    """The validate stage.

    :param preset: a preset name (``openai-chat``, ``openai-responses``,
        ``openai-embeddings`` or one you registered); its options go in ``**options``.
    :param schema: a Cerberus schema instead of a preset.
    :param caps: structure caps checked before the schema; ``None`` turns them off.
    :param allow_unknown: accept fields the schema does not name (default: ``422 unknown``).
    :param require_all: every field the schema names is required.
    :param max_prompt_tokens: refuse prompts estimated above this (``413 prompt_too_long``).
    :param token_counter: ``(text) -> int`` or a tiktoken ``Encoding``; default: the
        heuristic of :mod:`airlock.validation.tokens`.
    :param text_fields: selectors of the prompt text, for custom schemas (default:
        the preset's; every string for a custom schema).
    :param max_errors: how many errors a ``422`` lists (all are counted in ``error_count``).
    :param compiled: use the compiled fast path when the schema allows it.
    """

    def __init__(
        self,
        preset: str | None = None,
        *,
        schema: Mapping[str, Any] | None = None,
        caps: StructureCaps | None = _DEFAULT_CAPS,
        allow_unknown: bool | None = None,
        require_all: bool = False,
        max_prompt_tokens: int | None = None,
        token_counter: Any = None,
        text_fields: Sequence[str] | None = None,
        max_errors: int = 20,
        compiled: bool = True,
        **options: Any,
    ) -> None:
        if preset is not None and schema is not None:
            raise ConfigurationError("Validate takes a preset or a schema, not both")
        if options and preset is None:
            raise ConfigurationError(f"unknown Validate option(s): {', '.join(sorted(options))}")
        if caps is not None and not isinstance(caps, StructureCaps):
            raise ConfigurationError("Validate(caps=...) takes a StructureCaps or None")
        if max_prompt_tokens is not None and (
            isinstance(max_prompt_tokens, bool)
            or not isinstance(max_prompt_tokens, int)
            or max_prompt_tokens < 1
        ):
            raise ConfigurationError("max_prompt_tokens must be a positive integer or None")
        if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
            raise ConfigurationError("max_errors must be a positive integer")
        self.caps = caps
        self.max_prompt_tokens = max_prompt_tokens
        self.max_errors = max_errors
        self._count = make_counter(token_counter)
        self._custom_counter = token_counter is not None
        estimate: Estimator | None = None
        if preset is not None:
            found = get_preset(preset)
            self.name = found.name
            definition: Mapping[str, Any] | None = preset_schema(preset, **options)
            unknown = found.allow_unknown if allow_unknown is None else allow_unknown
            fields = tuple(text_fields) if text_fields is not None else found.text_fields
            estimate = found.estimate if text_fields is None else None
        else:
            self.name = "custom" if schema is not None else "none"
            definition = schema
            unknown = bool(allow_unknown)
            fields = tuple(text_fields) if text_fields is not None else ("**",)
        self.schema = (
            Schema(definition, allow_unknown=unknown, require_all=require_all, compiled=compiled)
            if definition is not None
            else None
        )
        self._estimate: Estimator = (
            estimate if estimate is not None else fields_estimator(Fields(fields or ("**",)))
        )

    @classmethod
    def from_file(cls, path: str | FilePath, **kwargs: Any) -> Validate:
        """A stage for the Cerberus schema in a ``.json`` or ``.yaml`` file (read once, now)."""
        return cls(schema=load_schema(path), **kwargs)

    def __repr__(self) -> str:
        return f"<airlock.Validate {self.name} compiled={self.schema.compiled if self.schema else None}>"

    async def __call__(self, ctx: Context) -> None:
        document = ctx.json
        facts: dict[str, Any] = ctx.audit.setdefault("validation", {})
        facts["schema"] = self.name
        if self.caps is not None:
            try:
                self.caps.check(document, None if ctx.modified else ctx.body)
            except (JSONTooDeep, JSONTooLarge) as exc:
                facts["cap"] = exc.extensions.get("cap", "max_depth")
                raise
        if self.schema is not None:
            document = await self._validate(ctx, self.schema, document, facts)
        tokens = await self._tokens(ctx, document)
        ctx.token_estimate = tokens
        facts["token_estimate"] = tokens
        if self.max_prompt_tokens is not None and tokens > self.max_prompt_tokens:
            raise PromptTooLong(
                f"The prompt is estimated at {tokens} tokens; this route accepts {self.max_prompt_tokens}.",
                extensions={"max_prompt_tokens": self.max_prompt_tokens, "token_estimate": tokens},
            )

    async def _validate(self, ctx: Context, schema: Schema, document: Any, facts: dict[str, Any]) -> Any:
        facts["compiled"] = schema.compiled
        errors: Errors
        if not isinstance(document, dict):
            errors = [((), "type")]
        else:
            try:
                if not schema.compiled and ctx.bytes_in > _OFFLOAD_BYTES:
                    outcome = await anyio.to_thread.run_sync(schema.validate, document)
                else:
                    outcome = schema.validate(document)
            except Exception as exc:
                # Cerberus itself can fail on odd input (e.g. "forbidden" on a list of
                # objects). That is still the client's document: refuse it, never a 500.
                logger.warning("airlock: schema check raised %s; request refused", type(exc).__name__)
                errors = [((), "invalid")]
            else:
                errors = outcome.errors
                if not errors and outcome.document is not document:
                    # The schema normalises (coerce, default, rename...): forward its result.
                    if outcome.document != document:
                        ctx.json = outcome.document
                        ctx.mark_modified()
                    document = outcome.document
        if errors:
            facts["errors"] = len(errors)
            facts["rules"] = sorted({rule for _, rule in errors})
            raise ValidationFailed(
                extensions={"errors": render_errors(errors, self.max_errors), "error_count": len(errors)}
            )
        facts["errors"] = 0
        return document

    async def _tokens(self, ctx: Context, document: Any) -> int:
        if self._custom_counter and ctx.bytes_in > _OFFLOAD_BYTES:
            return await anyio.to_thread.run_sync(self._count_tokens, ctx, document)
        return self._count_tokens(ctx, document)

    def _count_tokens(self, ctx: Context, document: Any) -> int:
        try:
            return max(0, int(self._estimate(document, self._count)))
        except Exception as exc:
            if not self._custom_counter:
                raise
            # A user's tokenizer failing on odd text must not turn the request into a 500:
            # fall back to the heuristic and say so in the audit event.
            logger.warning("airlock: token_counter raised %s; used the heuristic", type(exc).__name__)
            ctx.failed_open.append("token_counter")
            return max(0, int(self._estimate(document, heuristic_tokens)))
