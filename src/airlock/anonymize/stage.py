"""The ``anonymize`` stage: the request's text fields, anonymized before the app sees them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anyio.to_thread

from airlock.anonymize.engine import Anonymizer
from airlock.anonymize.restore import ChainedFilter, RestoreFilter
from airlock.anonymize.vault import Vault
from airlock.context import Context
from airlock.errors import ConfigurationError
from airlock.fields import OPENAI_TEXT_FIELDS, Fields

__all__ = ["DEFAULT_FIELDS", "Anonymize"]

DEFAULT_FIELDS = OPENAI_TEXT_FIELDS
"""Where OpenAI-style requests carry user text: chat ``messages[*].content`` (string or
text parts), Responses ``input``/``instructions``, embeddings ``input``, ``prompt``."""


class Anonymize:
    """Anonymizes the configured JSON fields of each request; restores pseudonyms in the response.

    :param anonymizer: the :class:`Anonymizer` to use (default: ``Anonymizer()``).
    :param fields: field selectors (see :mod:`airlock.fields`); other fields are untouched.
    :param restore: put originals back into the response (JSON, SSE, plain text)
        for every pseudonymized value.
    :param scope_by_identity: mix the caller's identity into pseudonyms, so a value gets
        the same placeholder in every turn of a caller's conversations (and in every
        worker) but different callers never share placeholders.
    :param offload_chars: selected text longer than this is anonymized in a worker
        thread, so one large request does not stall the event loop.

    Sets ``ctx.entity_counts`` (entity -> count), ``ctx.audit["anonymize"]``
    (counts only), ``ctx.vault`` (this request's placeholders) and, when a
    pseudonym was issued and ``restore`` is on, ``ctx.body_filter``.
    """

    def __init__(
        self,
        anonymizer: Anonymizer | None = None,
        *,
        fields: Iterable[str] = DEFAULT_FIELDS,
        restore: bool = True,
        scope_by_identity: bool = True,
        offload_chars: int = 64 * 1024,
    ) -> None:
        if anonymizer is not None and not isinstance(anonymizer, Anonymizer):
            raise ConfigurationError("Anonymize(anonymizer=...) takes an airlock.anonymize.Anonymizer")
        if not isinstance(restore, bool) or not isinstance(scope_by_identity, bool):
            raise ConfigurationError("Anonymize(restore=..., scope_by_identity=...) take booleans")
        if isinstance(offload_chars, bool) or not isinstance(offload_chars, int) or offload_chars < 0:
            raise ConfigurationError("Anonymize(offload_chars=...) must be an integer >= 0")
        self.anonymizer = anonymizer if anonymizer is not None else Anonymizer()
        self.fields = Fields(fields)
        self.restore = restore
        self.scope_by_identity = scope_by_identity
        self.offload_chars = offload_chars

    def __repr__(self) -> str:
        return f"Anonymize(fields={list(self.fields.selectors)!r}, restore={self.restore})"

    def _run(self, document: Any, vault: Vault, scope: str) -> tuple[int, dict[str, int]]:
        counts: dict[str, int] = {}
        anonymize = self.anonymizer.anonymize

        def rewrite(text: str) -> str:
            result = anonymize(text, vault=vault, scope=scope)
            for finding in result.findings:
                counts[finding.entity] = counts.get(finding.entity, 0) + 1
            return result.text

        changed = self.fields.rewrite(document, rewrite)
        return changed, counts

    async def __call__(self, ctx: Context) -> None:
        document = ctx.json
        if not isinstance(document, (dict, list)):
            return
        vault = ctx.vault if isinstance(ctx.vault, Vault) else Vault()
        scope = ctx.identity.id if self.scope_by_identity and ctx.identity is not None else ""
        size = sum(len(text) for text in self.fields.strings(document))
        if size > self.offload_chars:
            changed, counts = await anyio.to_thread.run_sync(self._run, document, vault, scope)
        else:
            changed, counts = self._run(document, vault, scope)
        ctx.vault = vault
        for entity, count in counts.items():
            ctx.entity_counts[entity] = ctx.entity_counts.get(entity, 0) + count
        previous = ctx.audit.get("anonymize")
        fields_changed = changed + (previous.get("fields_changed", 0) if isinstance(previous, dict) else 0)
        ctx.audit["anonymize"] = {
            "entities": dict(ctx.entity_counts),
            "findings": sum(ctx.entity_counts.values()),
            "fields_changed": fields_changed,
            "pseudonyms": len(vault),
        }
        if changed:
            ctx.mark_modified()
        if self.restore and vault:
            current = ctx.body_filter
            if current is None:
                ctx.body_filter = RestoreFilter(vault)
            elif not _restores(current, vault):
                # Another stage rewrites the body too: restore what it hands on.
                ctx.body_filter = ChainedFilter(current, RestoreFilter(vault))


def _restores(body_filter: object, vault: Vault) -> bool:
    """Whether ``body_filter`` already restores this vault (a second Anonymize stage shares it)."""
    if isinstance(body_filter, RestoreFilter):
        return body_filter.vault is vault
    if isinstance(body_filter, ChainedFilter):
        return _restores(body_filter.first, vault) or _restores(body_filter.second, vault)
    return False
