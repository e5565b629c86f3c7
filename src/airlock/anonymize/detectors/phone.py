"""Phone numbers in international and national formats, validated by phonenumbers.

A cheap, linear candidate pattern finds runs of digit groups (with ``+``,
``00``, parentheses, spaces, dots and dashes); phonenumbers then decides: the
number must be valid for its region, carry the national prefix where that region
requires it, and its digit groups must not be split differently from how the
region writes them (so ``2024-01-15 10`` is not taken for a Washington DC number).

Numbers written with ``+`` or ``00`` need no region. A national format is tried
only against the ``regions`` where it can be one: the digit count must be a
possible length there, it must match one of the region's number-type patterns,
and where a region writes its trunk prefix (``0`` in most of Europe) the number
must start with it. Validation is the expensive step, so these checks from
phonenumbers' metadata come first (see :mod:`.phone_rules`).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator, Sequence

import phonenumbers

from airlock.anonymize.detectors.base import DEFAULT_PHONE_REGIONS, Hit
from airlock.anonymize.detectors.phone_rules import (
    EVERYDAY_TYPES,
    MOBILE_TYPES,
    NOT_DIGITS,
    Region,
    international,
    national_number,
    region,
    verify,
)
from airlock.errors import ConfigurationError

__all__ = ["DEFAULT_PHONE_REGIONS", "PhoneDetector"]


# Digit groups joined by exactly one separator (never optional), so a run of digits
# can be split only one way: no backtracking blow-up. The lookahead (seven characters
# that can belong to a phone number) drops short numbers inside the C scanner.
_CANDIDATE = re.compile(
    r"(?=[+(\d][\d ().+-]{6})[+(\d](?:(?<=[+(])\+? ?)?\d*(?:(?:[ .-]|\) ?|\)-| ?\()\d+)*\)?", re.ASCII
)
_ISO_DATE = re.compile(r"(?:1[89]|2[01])\d\d-[01]\d-[0-3]\d(?!\d)", re.ASCII)
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}", re.ASCII)
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}", re.ASCII)


_BAD_BEFORE = frozenset("._,/\\:@#$%&*=+-")
_MAX_DIGITS = 17  # 15 (E.164) plus an international "00" prefix
_MIN_DIGITS = 7


class PhoneDetector:
    """Phone numbers; ``regions`` (ISO 3166 codes) says which national formats to accept."""

    entities: tuple[str, ...] = ("PHONE",)
    needs = "number"  # the engine skips it for text without a run of 7+ digits and separators

    def __init__(self, regions: Sequence[str] = DEFAULT_PHONE_REGIONS) -> None:
        if isinstance(regions, str):
            regions = (regions,)
        known = phonenumbers.SUPPORTED_REGIONS
        cleaned = tuple(str(r).upper() for r in regions)
        unknown = [r for r in cleaned if r not in known]
        if unknown:
            raise ConfigurationError(f"phone_regions: unknown region code(s): {', '.join(unknown)}")
        self.regions = cleaned
        self._rules = tuple(region(code) for code in cleaned)

    def __repr__(self) -> str:
        return f"PhoneDetector(regions={self.regions!r})"

    def find(self, canon: str, claimed: Sequence[tuple[int, int]] = ()) -> Iterator[Hit]:
        """Phone numbers in ``canon``; candidates overlapping a ``claimed`` span are skipped.

        The engine passes the spans other detectors already found (cards, SSNs, IPs
        all outrank phones), which saves parsing them as phone numbers.
        """
        size = len(canon)
        claimed = _merged(claimed)
        for match in _CANDIDATE.finditer(canon):
            text = match.group()
            if len(text) < _MIN_DIGITS or text[-1] == " ":
                continue  # most candidates are short numbers: years, counts, prices
            start, end = match.span()
            if text[-1] == ")" and "(" not in text:
                end -= 1
                text = text[:-1]
            count = len(text.translate(NOT_DIGITS))
            if count < _MIN_DIGITS:
                continue
            if start > 0:
                before = canon[start - 1]
                if before.isalnum() or before in _BAD_BEFORE:
                    continue
            if end < size:
                after = canon[end]
                if (
                    after.isalnum()
                    or after in "_@"
                    or (after in ".,/:-" and canon[end + 1 : end + 2].isdigit())
                ):
                    continue
            if claimed and _overlaps(claimed, start, end):
                continue
            if "." in text and _DOTTED_QUAD.fullmatch(text):
                continue
            if _SSN_SHAPE.fullmatch(text) or _ISO_DATE.match(text):
                continue  # 123-45-6789 is how SSNs are written, 2024-01-15 how dates are
            if count <= _MAX_DIGITS and self._valid(text):
                yield Hit(start, end, "PHONE", "phone")
            elif count > _MAX_DIGITS:
                # Several numbers in a row ("415 555 2671 212 555 1234"): try whole
                # space-separated pieces from the left, longest first.
                yield from self._split(text, start)

    def _valid(self, candidate: str) -> bool:
        if candidate[0] in "+(" and "+" in candidate[:2]:
            number = international(candidate)
            return number is not None and bool(phonenumbers.is_valid_number(number))
        if candidate.startswith("00"):
            number = international("+" + candidate[2:])
            return number is not None and bool(phonenumbers.is_valid_number(number))
        digits = candidate.translate(NOT_DIGITS)
        for rule in self._rules:
            prefix = rule.prefix
            if prefix and digits.startswith(prefix):
                national, types = digits[len(prefix) :], None
            elif rule.prefix_required:
                continue
            elif prefix and prefix != "1":
                # The trunk prefix is optional only for mobiles (India): without it,
                # only a mobile number counts ("1627411913" is a timestamp, not a landline).
                national, types = digits, MOBILE_TYPES
            else:
                national, types = digits, None if prefix else EVERYDAY_TYPES
            if len(national) not in rule.lengths and len(digits) not in rule.lengths:
                continue
            if not (rule.pattern.fullmatch(national) or rule.pattern.fullmatch(digits)):
                continue
            if self._check(candidate, rule, digits, national, types):
                return True
        return False

    @staticmethod
    def _check(
        candidate: str, rule: Region, digits: str, national: str, types: frozenset[int] | None
    ) -> bool:
        parse_prefix = rule.parse_prefix
        simple = parse_prefix is None or (
            parse_prefix is not False
            and (found := parse_prefix.match(digits)) is not None  # type: ignore[union-attr]
            and found.group() == rule.prefix
        )
        if simple:
            # The trunk prefix is all phonenumbers would strip: build the number directly.
            number = national_number(rule.country_code, national)
        else:
            try:
                number = phonenumbers.parse(candidate, rule.code)
            except phonenumbers.NumberParseException:
                return False
        if not verify(number, candidate):
            return False
        return types is None or phonenumbers.number_type(number) in types

    def _split(self, text: str, offset: int) -> Iterator[Hit]:
        pieces = [(m.start(), m.end()) for m in re.finditer(r"[^ ]+", text)]
        first = 0
        budget = 24  # validations per run: splitting is a fallback, not a search
        while first < len(pieces) and budget > 0:
            found = -1
            for last in range(min(len(pieces), first + 6) - 1, first, -1):
                piece = text[pieces[first][0] : pieces[last][1]]
                digits = len(piece.translate(NOT_DIGITS))
                if not _MIN_DIGITS <= digits <= _MAX_DIGITS:
                    continue
                budget -= 1
                if self._valid(piece):
                    found = last
                    break
                if budget <= 0:
                    break
            if found >= 0:
                yield Hit(offset + pieces[first][0], offset + pieces[found][1], "PHONE", "phone")
                first = found + 1
            else:
                first += 1


def _merged(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping spans covering the same characters."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    index = bisect_right(spans, (start, end))
    if index > 0 and spans[index - 1][1] > start:
        return True
    return index < len(spans) and spans[index][0] < end
