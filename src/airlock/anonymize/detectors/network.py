"""E-mail addresses and IP addresses (v4 and v6, validated by the standard library).

Every pattern starts a match only where a value can start (after a character
that cannot be part of it) and repeats only unambiguous pieces, so that inputs
like ``a@a@a@...`` or a megabyte of hex digits and colons stay linear.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from airlock.anonymize.detectors.base import Hit

__all__ = ["EmailDetector", "IpDetector"]

# Local part: word characters (any script), dots, plus, dash, and a few RFC 5322
# atext symbols; domain: labels of word characters and dashes with a TLD of 2+
# letters. Unicode-aware, so a Cyrillic look-alike letter does not hide an address.
_EMAIL = re.compile(
    r"(?<![\w.+%'!#$&*/=?^`{|}~-])[\w.+%'!#$&*/=?^`{|}~-]{1,64}@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}(?![\w-]|\.[^\W_])",
)


class EmailDetector:
    entities: tuple[str, ...] = ("EMAIL",)

    def __repr__(self) -> str:
        return "EmailDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        if "@" not in canon:
            return
        for match in _EMAIL.finditer(canon):
            start, end = match.span()
            # A local part may not start or end with a dot.
            while canon[start] == ".":
                start += 1
            if canon[canon.index("@", start) - 1] == ".":
                continue
            yield Hit(start, end, "EMAIL", "email")


_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w]|\.\d)", re.ASCII)
# Hex groups and colons (an optional dotted IPv4 tail); ipaddress decides.
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.[0-9A-Fa-f])"
)


class IpDetector:
    """IPv4 dotted quads and IPv6 addresses that :mod:`ipaddress` accepts.

    Loopback-only and unspecified IPv6 shorthands (``::``, ``::1``) and two-group
    forms such as ``a::b`` (common in source code) are ignored.
    """

    entities: tuple[str, ...] = ("IP_ADDRESS",)
    needs = "digit"  # the engine skips it for text without a digit

    def __repr__(self) -> str:
        return "IpDetector()"

    def find(self, canon: str) -> Iterator[Hit]:
        if "." in canon:
            for match in _IPV4.finditer(canon):
                # What ipaddress.IPv4Address accepts, without its overhead: octets up
                # to 255, no leading zeros.
                if all(int(o) <= 255 and (len(o) == 1 or o[0] != "0") for o in match.group().split(".")):
                    yield Hit(match.start(), match.end(), "IP_ADDRESS", "ipv4")
        if canon.count(":") >= 2:
            for match in _IPV6.finditer(canon):
                text = match.group()
                colons = text.count(":")
                if "::" not in text and colons != 7 and not (colons == 6 and "." in text):
                    continue  # not even the shape of an IPv6 address (10:30:00 is a time)
                if colons < 3 and len(text) - colons < 4:
                    continue
                try:
                    address = ipaddress.IPv6Address(text)
                except ValueError:
                    continue
                if address.is_unspecified or address.is_loopback:
                    continue
                yield Hit(match.start(), match.end(), "IP_ADDRESS", "ipv6")
