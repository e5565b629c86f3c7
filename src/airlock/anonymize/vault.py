"""The per-request vault: placeholder -> original value, and restoring placeholders in text.

A vault lives for one request (``ctx.vault``) and is never logged: its repr
shows only how many values it holds. Placeholders look like ``[EMAIL_1a2b3c4d]``:
ASCII letters, digits, ``_`` and brackets, so JSON never escapes them and they
survive a round trip through a model. Restoring is case-insensitive (models
sometimes change case) and only ever replaces placeholders this vault issued.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = ["PLACEHOLDER", "Vault", "placeholder_key"]

# Entity names are at most 40 characters, digests 8-32 hex digits; every piece is
# bounded and the only repetition is unambiguous, so matching stays linear.
PLACEHOLDER = re.compile(r"\[([A-Za-z][A-Za-z0-9_]{0,39})_([0-9A-Fa-f]{8,32})\]")


def placeholder_key(entity: str, digest: str) -> str:
    """The normalised spelling of a placeholder, used for lookups."""
    return f"[{entity.upper()}_{digest.lower()}]"


class Vault:
    """Placeholders issued for one request and the originals they stand for."""

    __slots__ = ("_originals", "_prefixes")

    def __init__(self) -> None:
        self._originals: dict[str, str] = {}
        self._prefixes: set[str] | None = None

    def __repr__(self) -> str:
        return f"<Vault placeholders={len(self._originals)}>"

    def __len__(self) -> int:
        return len(self._originals)

    def __bool__(self) -> bool:
        return bool(self._originals)

    def __contains__(self, placeholder: object) -> bool:
        return isinstance(placeholder, str) and self._normal(placeholder) in self._originals

    def __iter__(self) -> Iterator[str]:
        return iter(self._originals)

    @staticmethod
    def _normal(placeholder: str) -> str:
        match = PLACEHOLDER.fullmatch(placeholder)
        return placeholder_key(match.group(1), match.group(2)) if match else placeholder

    def get(self, placeholder: str) -> str | None:
        """The original behind ``placeholder`` (any letter case), or ``None``."""
        return self._originals.get(self._normal(placeholder))

    def put(self, placeholder: str, original: str) -> bool:
        """Record ``placeholder`` -> ``original``; ``False`` if it already stands for another value."""
        key = self._normal(placeholder)
        known = self._originals.get(key)
        if known is None:
            self._originals[key] = original
            self._prefixes = None
            return True
        return known == original

    def update(self, other: Vault) -> None:
        """Take over every entry of ``other`` (e.g. the vaults of several fields of one request)."""
        for key, original in other._originals.items():
            self._originals.setdefault(key, original)
        self._prefixes = None

    def restore(self, text: str) -> str:
        """``text`` with every placeholder of this vault replaced by its original."""
        if not self._originals or "[" not in text:
            return text
        originals = self._originals

        def replace(match: re.Match[str]) -> str:
            found = originals.get(placeholder_key(match.group(1), match.group(2)))
            return match.group() if found is None else found

        return PLACEHOLDER.sub(replace, text)

    def pending_start(self, text: str) -> int:
        """Where a placeholder of this vault may begin at the end of ``text`` (``len(text)`` if nowhere).

        Streaming uses it to hold back only the shortest tail that could still
        become a placeholder once the next chunk arrives.
        """
        start = text.rfind("[")
        if start < 0 or not self._originals:
            return len(text)
        tail = text[start:]
        if len(tail) >= 75 or "]" in tail:
            return len(text)
        prefixes = self._prefixes
        if prefixes is None:
            prefixes = {key.upper()[:i] for key in self._originals for i in range(1, len(key))}
            self._prefixes = prefixes
        return start if tail.upper() in prefixes else len(text)
