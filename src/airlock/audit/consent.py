"""``RequireConsent``: personal data is forwarded only with the user's consent.

Place it after the anonymize stage, which counts what it found in
``ctx.entity_counts``::

    Policy(anonymize=[Anonymize(...), RequireConsent(header="x-airlock-consent", claim="pii_consent")])

When the request holds personal data and carries no consent, it is refused
with ``403 consent_required`` before the app (and the provider) sees it.
Consent is either a header set by the calling app after asking its user, or a
claim of the verified identity (``ctx.identity.claims``, e.g. from a JWT). The
header is the calling app's word; a claim is as strong as the identity that
carries it. Either way, ``ctx.audit["consent"]`` records whether consent was
required, whether it was present and where it came from, so the audit event
shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airlock.errors import ConfigurationError, ConsentRequired

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["DEFAULT_CONSENT_VALUES", "NOT_PERSONAL", "RequireConsent"]

# Header or claim values that mean "yes". Anything else (absent, "false", "0", "") is no consent.
DEFAULT_CONSENT_VALUES = ("1", "true", "yes", "granted")
# An HTTP field name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Secrets (API keys, passwords) are found and removed too, but they are not about a person.
NOT_PERSONAL = frozenset({"SECRET"})


class RequireConsent:
    """Refuse content with personal data unless the request carries consent.

    :param header: request header carrying consent (``None``: headers are not consulted).
    :param claim: claim of ``ctx.identity.claims`` carrying consent (``None``: not consulted).
    :param entities: entity types that count as personal data; default: every type the
        anonymize stage reports except ``SECRET``.
    :param values: header/claim values that mean consent (case-insensitive); a claim may
        also be ``True`` or a list holding one of them (e.g. purposes).
    """

    def __init__(
        self,
        *,
        header: str | None = "x-airlock-consent",
        claim: str | None = None,
        entities: Iterable[str] | None = None,
        values: Iterable[str] = DEFAULT_CONSENT_VALUES,
    ) -> None:
        if header is None and claim is None:
            raise ConfigurationError("RequireConsent needs a header, a claim, or both")
        if header is not None and (
            not isinstance(header, str) or not header.isascii() or not _TOKEN.fullmatch(header)
        ):
            raise ConfigurationError("RequireConsent header must be an ASCII header name")
        if claim is not None and (not isinstance(claim, str) or not claim):
            raise ConfigurationError("RequireConsent claim must be a claim name")
        self.header = header.lower().encode("latin-1") if header is not None else None
        self.claim = claim
        self.entities = frozenset(entities) if entities is not None else None
        if isinstance(values, str):
            values = (values,)
        self.values = frozenset(value.strip().lower() for value in values)
        if not self.values:
            raise ConfigurationError("RequireConsent values must not be empty")
        how = f" Send the {header.lower()} header once the user has agreed." if header is not None else ""
        self._detail = "The content holds personal data and the request carries no consent." + how

    def __repr__(self) -> str:
        header = self.header.decode("latin-1") if self.header is not None else None
        return f"<RequireConsent header={header!r} claim={self.claim!r}>"

    def _personal(self, counts: dict[str, int]) -> list[str]:
        if self.entities is not None:
            return sorted(name for name, count in counts.items() if count and name in self.entities)
        return sorted(name for name, count in counts.items() if count and name not in NOT_PERSONAL)

    def _yes(self, value: Any) -> bool:
        if value is True:
            return True
        if isinstance(value, str):
            return value.strip().lower() in self.values
        if isinstance(value, (list, tuple, set, frozenset)):
            return any(isinstance(item, str) and item.strip().lower() in self.values for item in value)
        return False

    def _source(self, ctx: Context) -> str | None:
        identity = ctx.identity
        if self.claim is not None and identity is not None and self._yes(identity.claims.get(self.claim)):
            return "claim"
        if self.header is not None:
            for name, value in ctx.scope.get("headers", ()):
                if name == self.header:
                    return "header" if self._yes(value.decode("latin-1")) else None
        return None

    async def __call__(self, ctx: Context) -> None:
        personal = self._personal(ctx.entity_counts)
        source = self._source(ctx)
        ctx.audit["consent"] = {"required": bool(personal), "present": source is not None, "source": source}
        if personal and source is None:
            raise ConsentRequired(self._detail, extensions={"entities": personal})
