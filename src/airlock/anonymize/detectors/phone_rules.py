"""What phonenumbers' metadata says about a region, and building numbers without a full parse.

``phonenumbers.parse`` is general (letters, extensions, carrier codes) and costs
more than validating the number itself. For the candidates the detector finds
(digits and separators, an optional ``+`` country code or trunk prefix) the
number can be built directly, exactly as ``parse`` would; regions whose parsing
rewrites digits still go through ``parse``.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import phonenumbers

from airlock.errors import ConfigurationError

__all__ = [
    "EVERYDAY_TYPES",
    "MOBILE_TYPES",
    "NOT_DIGITS",
    "Region",
    "grouping_ok",
    "international",
    "national_number",
    "region",
    "verify",
]


class Region(NamedTuple):
    code: str
    country_code: int
    prefix: str  # the trunk prefix ("" when the region has none)
    prefix_required: bool
    lengths: frozenset[int]
    pattern: re.Pattern[str]
    # How phonenumbers strips a prefix when parsing (carrier codes such as GB's 180020);
    # None when that is just the trunk prefix, False when parsing rewrites digits.
    parse_prefix: re.Pattern[str] | bool | None


def region(code: str) -> Region:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(code)
    if metadata is None:
        raise ConfigurationError(f"phone_regions: no phone metadata for region {code}")
    prefix = metadata.national_prefix or ""
    formats = metadata.number_format or ()
    optional = any(f.national_prefix_optional_when_formatting for f in formats)
    # North America writes no trunk prefix ("1" is optional); elsewhere a national
    # number is written with it (0...) unless the region says it is optional.
    required = bool(prefix) and prefix != "1" and not optional
    desc = metadata.general_desc
    lengths = frozenset(desc.possible_length or ()) if desc is not None else frozenset(range(4, 18))
    # A number is valid only if it matches one of the region's number types, so the
    # union of their patterns rejects most non-numbers before the costly parse.
    types = (
        metadata.fixed_line,
        metadata.mobile,
        metadata.toll_free,
        metadata.premium_rate,
        metadata.shared_cost,
        metadata.personal_number,
        metadata.voip,
        metadata.pager,
        metadata.uan,
        metadata.voicemail,
    )
    patterns = [t.national_number_pattern for t in types if t is not None and t.national_number_pattern]
    pattern = "|".join(f"(?:{p})" for p in patterns) or r"\d+"
    parsing = metadata.national_prefix_for_parsing
    parse_prefix: re.Pattern[str] | bool | None = None
    if metadata.national_prefix_transform_rule:
        parse_prefix = False
    elif parsing and parsing != prefix:
        parse_prefix = re.compile(parsing)
    return Region(
        code, metadata.country_code or 0, prefix, required, lengths, re.compile(pattern), parse_prefix
    )


def national_number(country_code: int, national: str) -> Any:
    """The PhoneNumber phonenumbers.parse would build for these national digits."""
    number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    if len(national) > 1 and national[0] == "0":
        # Italian-style numbers keep their leading zeros (as parse records them).
        number.italian_leading_zero = True
        zeros = len(national) - len(national.lstrip("0"))
        if zeros == len(national):
            zeros -= 1
        if zeros > 1:
            number.number_of_leading_zeros = zeros
    return number


def international(candidate: str) -> Any:
    """``+CC ...`` as a PhoneNumber without a full parse: E.164 country codes are prefix-free."""
    digits = candidate.replace("(0)", "").translate(NOT_DIGITS)
    for size in (1, 2, 3):
        country_code = int(digits[:size] or 0)
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            break
    else:
        return None
    if not national:
        return None
    number = national_number(country_code, national)
    if national[0] == "0" and not phonenumbers.is_valid_number(number):
        # "+44 020 ..." writes the trunk prefix after the country code; parse drops it.
        stripped = national.lstrip("0")
        if stripped:
            return phonenumbers.PhoneNumber(country_code=country_code, national_number=int(stripped))
    return number


_TYPE = phonenumbers.PhoneNumberType
MOBILE_TYPES = frozenset({_TYPE.MOBILE, _TYPE.FIXED_LINE_OR_MOBILE})
# Regions without a trunk prefix (Spain, Italy): bare digits count as a phone number
# only for everyday types, not personal/UAN/premium ranges that swallow timestamps.
EVERYDAY_TYPES = frozenset({_TYPE.FIXED_LINE, _TYPE.MOBILE, _TYPE.FIXED_LINE_OR_MOBILE, _TYPE.TOLL_FREE})
NOT_DIGITS = str.maketrans("", "", "+() .-")  # everything a candidate holds besides digits


_DIGIT_GROUPS = re.compile(r"\d+", re.ASCII)


def grouping_ok(number: Any, candidate: str) -> bool:
    """The candidate splits its digits only where the region's own format does.

    libphonenumber's "strict grouping" idea, cheaper: compare where digit groups
    end, counted from the right (the start may differ by a country code or trunk
    prefix). ``2024-01-15 10`` is a valid US number by digits alone, but
    ``(202) 401-1510`` never splits after "10" or "0115": not a phone number.
    """
    groups = _DIGIT_GROUPS.findall(candidate)
    if len(groups) < 2:
        return True
    style = (
        phonenumbers.PhoneNumberFormat.INTERNATIONAL
        if candidate.lstrip("(").startswith(("+", "00"))
        else phonenumbers.PhoneNumberFormat.NATIONAL
    )
    formatted = _DIGIT_GROUPS.findall(phonenumbers.format_number(number, style))
    allowed: set[int] = set()
    distance = 0
    for group in reversed(formatted):
        distance += len(group)
        allowed.add(distance)
    span = distance
    distance = 0
    for group in reversed(groups[1:]):
        distance += len(group)
        if distance < span and distance not in allowed:
            return False
    return True


def verify(number: Any, candidate: str) -> bool:
    if not phonenumbers.is_valid_number(number):
        return False
    # With a country code the writer clearly meant a phone number; groupings such as
    # "+49 (0)30 1234 5678" vary too much to hold them to the formatter's.
    return candidate.lstrip("(").startswith(("+", "00")) or grouping_ok(number, candidate)
