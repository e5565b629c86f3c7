"""Allow and deny lists: values that are never reported, and terms that always are."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from airlock.anonymize.canonical import canonicalize
from airlock.anonymize.detectors.base import Hit, check_entity
from airlock.errors import ConfigurationError

__all__ = ["DENY_ENTITY", "DenyList", "allow_set", "canonical_key"]

DENY_ENTITY = "DENY_LIST"


def canonical_key(value: str) -> str:
    """How list entries and found values are compared: canonical view, case-folded."""
    return canonicalize(value).canon.casefold().strip()


def allow_set(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        raise ConfigurationError("allow takes a list of values, not a single string")
    keys = set()
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError("allow entries must be non-empty strings")
        keys.add(canonical_key(value))
    return frozenset(keys)


class DenyList:
    """Terms always reported (case-insensitive, whole words), e.g. code names or customer names.

    ``terms`` is a list (reported as ``DENY_LIST``) or a mapping entity -> list.
    """

    def __init__(self, terms: Mapping[str, Iterable[str]] | Iterable[str]) -> None:
        if isinstance(terms, str):
            raise ConfigurationError("deny takes a list of terms or a mapping entity -> terms")
        groups: dict[str, list[str]] = {}
        if isinstance(terms, Mapping):
            for entity, values in terms.items():
                if isinstance(values, str):
                    raise ConfigurationError(f"deny[{entity!r}] must be a list of terms")
                groups[check_entity(entity)] = list(values)
        else:
            groups[DENY_ENTITY] = list(terms)
        self.entities = tuple(groups)
        self._entity_of: dict[str, str] = {}
        alternatives: list[str] = []
        for entity, values in groups.items():
            for value in values:
                if not isinstance(value, str) or not value.strip():
                    raise ConfigurationError("deny terms must be non-empty strings")
                key = canonical_key(value)
                self._entity_of.setdefault(key, entity)
                alternatives.append(key)
        # Longest first, so "Blue Harbor Ltd" wins over "Blue Harbor".
        ordered = sorted(set(alternatives), key=len, reverse=True)
        body = "|".join(re.escape(term) for term in ordered)
        self._pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE) if ordered else None

    def __repr__(self) -> str:
        return f"DenyList(entities={self.entities!r}, terms={len(self._entity_of)})"

    def __bool__(self) -> bool:
        return self._pattern is not None

    def find(self, canon: str) -> Iterator[Hit]:
        if self._pattern is None:
            return
        for match in self._pattern.finditer(canon):
            entity = self._entity_of.get(match.group().casefold(), self.entities[0])
            yield Hit(match.start(), match.end(), entity, "deny_list")
