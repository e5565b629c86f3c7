"""Numbers with checksums and rules: credit cards (Luhn) and US SSNs (area/group/serial).

Card numbers and SSNs are found in *digit blocks*: maximal runs of digit groups
joined by one space or dash (``4111 1111 1111 1111``, ``4-1-1-1 ...``,
``123-45-6789``). The block keeps its group boundaries, so a number is matched on
whole groups only and two numbers written next to each other are not glued into
one run that matches neither. Validation comes from python-stdnum.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate
from typing import NamedTuple

from stdnum.us import ssn as stdnum_ssn

from airlock.anonymize.detectors.base import Hit

__all__ = ["CardDetector", "DigitBlock", "SsnDetector", "digit_blocks"]

# The lookahead skips short numbers (years, counts, prices) inside the C scanner: a
# block needs nine characters of digits and separators to hold even an SSN.
_BLOCK = re.compile(r"(?=[\d -]{9})\d+(?:[ -]\d+)*", re.ASCII)
# A block glued to a word, a decimal point or a path is part of something else
# (a UUID, a version, a float, a date): not a number on its own.
_BAD_BEFORE = frozenset("._,/\\:@#$%&*+=")
_BAD_AFTER_ALWAYS = frozenset("_@")
_BAD_AFTER_IF_DIGIT = frozenset(".,/:")


class DigitBlock(NamedTuple):
    digits: str
    # Canonical start and end of every group, and the digit offset each group starts at.
    starts: list[int]
    ends: list[int]
    offsets: list[int]


# The last text's blocks: cards and SSNs both read them, so split the text once.
# A (text, blocks) tuple is replaced atomically, so worker threads cannot mix texts up.
_last: tuple[str, list[DigitBlock]] = ("", [])


def digit_blocks(canon: str, min_digits: int) -> list[DigitBlock]:
    """Every free-standing digit block of ``canon`` with at least ``min_digits`` digits."""
    global _last
    cached = _last
    if cached[0] is not canon:
        cached = (canon, list(_blocks(canon)))
        _last = cached
    return [block for block in cached[1] if len(block.digits) >= min_digits]


def _blocks(canon: str) -> Iterator[DigitBlock]:
    min_digits = 9  # the shortest number read from blocks (an SSN)
    size = len(canon)
    for match in _BLOCK.finditer(canon):
        start, end = match.span()
        text = match.group()
        if end - start < min_digits:
            continue
        if start > 0:
            before = canon[start - 1]
            if before.isalnum() or before in _BAD_BEFORE:
                continue
            if before == "-" and start > 1 and canon[start - 2].isalnum():
                continue
        if end < size:
            after = canon[end]
            if after.isalnum() or after in _BAD_AFTER_ALWAYS:
                continue
            if after in _BAD_AFTER_IF_DIGIT and end + 1 < size and canon[end + 1].isdigit():
                continue
            if after == "-" and end + 1 < size and canon[end + 1].isalnum():
                continue
        starts: list[int] = []
        ends: list[int] = []
        offsets: list[int] = []
        digits: list[str] = []
        count = 0
        position = start
        for group in re.split(r"[ -]", text):
            starts.append(position)
            ends.append(position + len(group))
            offsets.append(count)
            digits.append(group)
            count += len(group)
            position += len(group) + 1
        if count >= min_digits:
            yield DigitBlock("".join(digits), starts, ends, offsets)


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
_CARD_FIRST = frozenset("123456")
# Issuer prefixes of the card networks (Visa, Mastercard incl. 2-series, Amex,
# Diners, Discover, JCB incl. the old 15-digit 1800/2131, UnionPay, Maestro).
_CARD_IIN = re.compile(
    r"4|5[0-8]|2(?:2[2-9]|[3-6]|7[01]|720)|3[0-9]|6(?:011|2|4[4-9]|5|0|3|7)|1800|2131", re.ASCII
)
# Groupings people write a card number in, besides one run of digits.
_CARD_SHAPES = frozenset({(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 1), (4, 4, 4, 4, 2)})


def _card_like(digits: str, shape: tuple[int, ...], whole_block: bool) -> bool:
    """A plausible issuer prefix and, for part of a longer run, a card-like grouping."""
    if not _CARD_IIN.match(digits):
        return False
    return whole_block or len(shape) == 1 or shape in _CARD_SHAPES or set(shape) == {1}


class CardDetector:
    """Payment card numbers: 12-19 digits, Luhn-valid, with a card-network first digit (2-6)."""

    entities: tuple[str, ...] = ("CREDIT_CARD",)
    needs = "number"  # the engine skips it for text without a run of 7+ digits and separators

    def __repr__(self) -> str:
        return "CardDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        for block in digit_blocks(canon, 12):
            yield from self._block(block)

    @staticmethod
    def _block(block: DigitBlock) -> Iterator[Hit]:
        digits = block.digits
        even_end: list[int] = []
        odd_end: list[int] = []
        if len(digits) > 19:
            # Luhn sums of any window in O(1): the rightmost digit is never doubled, so
            # which digits double depends only on the parity of the window's end. (A
            # block of at most 19 digits is one window's worth: _luhn checks it directly.)
            values = [ord(c) - 48 for c in digits]
            even_end = list(
                accumulate((v if i % 2 == 0 else _DOUBLED[v] for i, v in enumerate(values)), initial=0)
            )
            odd_end = list(
                accumulate((_DOUBLED[v] if i % 2 == 0 else v for i, v in enumerate(values)), initial=0)
            )
        bounds = [*block.offsets, len(digits)]
        groups = len(bounds) - 1
        first = 0
        while first < groups:
            begin = bounds[first]
            found = -1
            if digits[begin] in _CARD_FIRST:
                # Longest window of whole groups first (at most 19 digits).
                after = bisect_right(bounds, begin + 19) - 1
                while after > first:
                    stop = bounds[after]
                    if stop - begin < 12:
                        break
                    if even_end:
                        sums = even_end if (stop - 1) % 2 == 0 else odd_end
                        valid = (sums[stop] - sums[begin]) % 10 == 0
                    else:
                        valid = _luhn(digits[begin:stop])
                    if valid:
                        shape = tuple(block.ends[i] - block.starts[i] for i in range(first, after))
                        if _card_like(digits[begin:stop], shape, first == 0 and after == groups):
                            found = after - 1
                            break
                    after -= 1
            if found >= 0:
                yield Hit(block.starts[first], block.ends[found], "CREDIT_CARD", "card")
                first = found + 1
            else:
                first += 1


_DOUBLE_DIGIT = str.maketrans("0123456789", "0246813579")


def _luhn(number: str) -> bool:
    """The Luhn checksum (as python-stdnum's ``luhn.is_valid``, without its parsing overhead)."""
    doubled = number[-2::-2].translate(_DOUBLE_DIGIT)
    return (sum(map(int, number[-1::-2])) + sum(map(int, doubled))) % 10 == 0


_SSN_CONTEXT = re.compile(r"(?i)(?:\bssns?\b|social[ -]?security|\bsoc\.? ?sec|\bss ?#|\bss no)")


class SsnDetector:
    """US Social Security numbers, validated by python-stdnum (area, group, serial, known fakes).

    Written ``123-45-6789`` or ``123 45 6789`` it is always checked; any other
    grouping (``123456789``, ``1 2 3 4 5 6 7 8 9``) only right after words like
    "SSN" or "social security", since nine bare digits are usually something else.
    """

    entities: tuple[str, ...] = ("US_SSN",)
    needs = "number"  # the engine skips it for text without a run of 7+ digits and separators
    context_chars = 48

    def __repr__(self) -> str:
        return "SsnDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        for block in digit_blocks(canon, 9):
            bounds = [*block.offsets, len(block.digits)]
            first_start = block.starts[0]
            context = (
                _SSN_CONTEXT.search(canon, max(0, first_start - self.context_chars), first_start) is not None
            )
            for first in range(len(bounds) - 1):
                # The window of whole groups holding exactly nine digits, if there is one.
                after = bisect_left(bounds, bounds[first] + 9)
                if after >= len(bounds) or bounds[after] != bounds[first] + 9:
                    continue
                start = block.starts[first]
                last = after - 1
                shape = [block.ends[i] - block.starts[i] for i in range(first, after)]
                # Nine digits grouped any other way count only right after a context word
                # (further into a long block, the 48 characters before are digits, not words).
                if shape != [3, 2, 4] and not (context and start - self.context_chars < first_start):
                    continue
                begin = bounds[first]
                if stdnum_ssn.is_valid(block.digits[begin : begin + 9]):
                    yield Hit(start, block.ends[last], "US_SSN", "ssn")
