"""IBANs, compact or grouped, any letter case, validated against python-stdnum's IBAN registry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, NamedTuple

from stdnum import numdb
from stdnum.util import get_cc_module

from airlock.anonymize.detectors.base import Hit

__all__ = ["IbanDetector"]

_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){10,30}", re.ASCII)
_IBAN_DB = numdb.get("iban")
_BBAN_PART = re.compile(r"(\d+)!([nac])")
_BBAN_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Z0-9]"}


class _IbanCountry(NamedTuple):
    length: int
    bban: re.Pattern[str]
    module: Any  # python-stdnum's country module with extra checks (e.g. Spain, Belgium), or None
    take: re.Pattern[str]  # exactly `length` characters, separators allowed between them


@lru_cache(maxsize=256)
def _iban_country(country: str) -> _IbanCountry | None:
    """Length, BBAN format and extra checks of a country, from python-stdnum's IBAN registry."""
    info = _IBAN_DB.info(country)
    structure = info[0][1].get("bban", "") if info else ""
    if not structure or not country.isalpha():
        return None
    parts = _BBAN_PART.findall(structure)
    pattern = "".join(f"{_BBAN_CLASS[kind]}{{{count}}}" for count, kind in parts)
    try:
        module = get_cc_module(country.lower(), "iban")
    except ImportError:  # pragma: no cover - depends on the python-stdnum release
        module = None
    length = 4 + sum(int(count) for count, _ in parts)
    take = re.compile(rf"[A-Za-z0-9](?:[ -]?[A-Za-z0-9]){{{length - 1}}}", re.ASCII)
    return _IbanCountry(length, re.compile(pattern), module, take)


# ISO 7064 letters as numbers: A=10 ... Z=35.
_AS_DIGITS = str.maketrans({chr(65 + i): str(10 + i) for i in range(26)})


def _iban_valid(value: str, country: _IbanCountry) -> bool:
    # ISO 7064 mod 97-10 on the rearranged number, then the country's BBAN format.
    if int((value[4:] + value[:4]).translate(_AS_DIGITS)) % 97 != 1:
        return False
    if not country.bban.fullmatch(value[4:]):
        return False
    return country.module is None or bool(country.module.is_valid(value))


class IbanDetector:
    """IBANs, compact or grouped, any letter case: country length and mod-97 checked by python-stdnum."""

    entities: tuple[str, ...] = ("IBAN",)
    needs = "number"  # the engine skips it for text without a run of 7+ digits and separators

    def __repr__(self) -> str:
        return "IbanDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        for match in _IBAN.finditer(canon):
            text = match.group()
            country = _iban_country(text[:2].upper())
            if country is None:
                continue
            # Take exactly the country's length; the candidate may run into the next word.
            taken = country.take.match(canon, match.start())
            if taken is None:
                continue
            end = taken.end()
            if end < len(canon) and canon[end].isalnum():
                continue
            value = canon[match.start() : end].replace(" ", "").replace("-", "").upper()
            if _iban_valid(value, country):
                yield Hit(match.start(), end, "IBAN", "iban")
