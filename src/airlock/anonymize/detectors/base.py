"""What every detector returns, and the detector users write themselves.

A detector looks at the canonical view of a text and yields :class:`Hit` tuples
with canonical offsets; the :class:`~airlock.anonymize.Anonymizer` maps them back
to the original text, drops values on the allow list and resolves overlaps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol, runtime_checkable

from airlock.errors import ConfigurationError

__all__ = ["DEFAULT_PHONE_REGIONS", "ENTITY_NAME", "Detector", "Hit", "PatternDetector", "check_entity"]

# Regions whose national phone formats are accepted by default (numbers written with
# +<country code> or 00<country code> are accepted from everywhere).
DEFAULT_PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "AU")
ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


class Hit(NamedTuple):
    """One detected value: canonical ``[start, end)``, its entity type and a content-free kind."""

    start: int
    end: int
    entity: str
    kind: str


@runtime_checkable
class Detector(Protocol):
    """Finds values of one or more entity types in a canonical text.

    ``entities`` names what it can report (upper-case, e.g. ``"EMPLOYEE_ID"``);
    ``find`` must run in time linear in the text.
    """

    entities: tuple[str, ...]

    def find(self, canon: str) -> Iterator[Hit]: ...


def check_entity(name: object) -> str:
    if not isinstance(name, str) or not ENTITY_NAME.fullmatch(name):
        raise ConfigurationError(
            "entity names are upper-case letters, digits and '_' (at most 40), e.g. 'EMPLOYEE_ID'"
        )
    return name


class PatternDetector:
    """A user-defined detector: a regular expression plus an optional validator.

    :param entity: the entity type it reports, e.g. ``"EMPLOYEE_ID"``.
    :param pattern: a regular expression (string or compiled) matched on the
        canonical view (digits are ASCII, dashes ``-``, spaces `` ``, no zero-width
        characters). Keep it free of nested quantifiers: airlock cannot make an
        arbitrary user pattern linear.
    :param validator: called with the matched (canonical) text; the match counts
        only when it returns true (e.g. a checksum from python-stdnum).
    :param group: the pattern group that holds the value (default: the whole match).
    :param flags: ``re`` flags when ``pattern`` is a string.

    Example::

        PatternDetector("EMPLOYEE_ID", r"\\bEMP-\\d{6}\\b")
    """

    def __init__(
        self,
        entity: str,
        pattern: str | re.Pattern[str],
        *,
        validator: Callable[[str], bool] | None = None,
        group: int | str = 0,
        flags: int = 0,
    ) -> None:
        self.entity = check_entity(entity)
        self.entities = (self.entity,)
        try:
            self.pattern = re.compile(pattern, flags) if isinstance(pattern, str) else pattern
        except re.error as exc:
            raise ConfigurationError(f"PatternDetector({entity}): invalid pattern: {exc}") from None
        if not isinstance(self.pattern, re.Pattern):
            raise ConfigurationError(f"PatternDetector({entity}): pattern must be a string or re.Pattern")
        if validator is not None and not callable(validator):
            raise ConfigurationError(f"PatternDetector({entity}): validator must be callable")
        self.validator = validator
        self.group = group
        self._kind = entity.lower()

    def __repr__(self) -> str:
        return f"PatternDetector({self.entity!r})"

    def find(self, canon: str) -> Iterator[Hit]:
        validator = self.validator
        group = self.group
        for match in self.pattern.finditer(canon):
            start, end = match.span(group)
            if start < 0 or end <= start:
                continue
            if validator is not None and not validator(canon[start:end]):
                continue
            yield Hit(start, end, self.entity, self._kind)
