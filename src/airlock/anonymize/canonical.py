"""The canonical view of a text: what detectors match on, with a map back to the original.

Evasion tricks change how a value looks, not what it is: a zero-width space
inside an e-mail address, fullwidth or Arabic-Indic digits in a card number, a
no-break space or a soft hyphen between SSN groups. The canonical view undoes
them character by character:

* NFKC compatibility folding (fullwidth letters and digits, ligatures, circled digits);
* format characters (Unicode category ``Cf``: zero-width space/joiners, soft hyphen,
  word joiner, BOM, bidi controls) and variation selectors are removed;
* every space separator (``Zs``) and the tab become ``" "``;
* every dash (``Pd``) and the minus sign become ``"-"``;
* every decimal digit of any script becomes its ASCII digit.

Each original character becomes zero or more canonical characters, so the view
keeps a map from canonical offsets to original offsets and a match on the
canonical text is replaced on exactly the original characters. Digit runs
split by single separators are joined by the number detectors
(:func:`airlock.anonymize.detectors.numbers.digit_blocks`), which keep the group
boundaries so that two adjacent numbers are never glued into one unrecognisable run.

ASCII text (the common case) needs no map at all: the view is the text itself.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from functools import lru_cache

__all__ = ["Canonical", "canonicalize"]

# Characters that may change: anything outside ASCII, plus the tab.
_SPECIAL = re.compile(r"[^\x00-\x08\x0a-\x7f]+")
_REMOVED_CATEGORIES = frozenset({"Cf"})
# Default-ignorable characters that are not Cf: combining grapheme joiner, Hangul
# fillers, Mongolian free variation selectors, variation selectors.
_IGNORABLE = frozenset(
    [847, 4447, 4448, 12644, 65440, *range(6155, 6160), *range(65024, 65040), *list(range(917760, 918000))]
)


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """The canonical form of one character ("" when it is removed)."""
    code = ord(char)
    if code < 0x80:
        return " " if char == "\t" else char
    if code in _IGNORABLE:
        return ""
    category = unicodedata.category(char)
    if category in _REMOVED_CATEGORIES:
        return ""
    if category == "Zs":
        return " "
    if category == "Pd" or char == "\u2212":
        return "-"
    if category == "Nd":
        return str(unicodedata.decimal(char))
    folded = unicodedata.normalize("NFKC", char)
    if folded == char:
        return char
    # NFKC may produce characters that need folding themselves (e.g. a fullwidth
    # hyphen-minus becomes "-", "①" becomes "1"); fold the result once more.
    return "".join(_fold(c) if c != char else c for c in folded)


class Canonical:
    """A text and its canonical view.

    ``text`` is the original, ``canon`` the view detectors match on.
    :meth:`span` turns a canonical ``[start, end)`` into the original span that
    produced it.
    """

    __slots__ = ("_canon_starts", "_orig_starts", "_widths", "canon", "text")

    def __init__(
        self,
        text: str,
        canon: str,
        canon_starts: list[int] | None = None,
        orig_starts: list[int] | None = None,
        widths: list[int] | None = None,
    ) -> None:
        self.text = text
        self.canon = canon
        # Piecewise map: chunk i starts at canon_starts[i] / orig_starts[i]. Width 0
        # marks an identity run (offsets advance together); width 1 marks one
        # original character that became one or more canonical characters.
        self._canon_starts = canon_starts
        self._orig_starts = orig_starts
        self._widths = widths

    def __repr__(self) -> str:
        return f"<Canonical len={len(self.text)} mapped={self._canon_starts is not None}>"

    @property
    def is_identity(self) -> bool:
        return self._canon_starts is None

    def _start(self, pos: int) -> int:
        starts = self._canon_starts
        if starts is None:
            return pos
        assert self._orig_starts is not None
        assert self._widths is not None
        i = bisect_right(starts, pos) - 1
        if self._widths[i]:
            return self._orig_starts[i]
        return self._orig_starts[i] + (pos - starts[i])

    def _end(self, pos: int) -> int:
        starts = self._canon_starts
        if starts is None:
            return pos
        assert self._orig_starts is not None
        assert self._widths is not None
        last = pos - 1
        i = bisect_right(starts, last) - 1
        width = self._widths[i]
        if width:
            return self._orig_starts[i] + width
        return self._orig_starts[i] + (last - starts[i]) + 1

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original ``[start, end)`` behind canonical ``[start, end)`` (``end > start``)."""
        return self._start(start), self._end(end)


def canonicalize(text: str) -> Canonical:
    """Build the canonical view of ``text`` (linear time)."""
    if text.isascii():
        return Canonical(text, text.replace("\t", " ") if "\t" in text else text)
    parts: list[str] = []
    canon_starts: list[int] = []
    orig_starts: list[int] = []
    widths: list[int] = []
    changed = False
    canon_len = 0
    last = 0  # original offset up to which text was copied unchanged

    def identity_run(orig: int, length: int) -> None:
        nonlocal canon_len
        if length <= 0:
            return
        if not widths or widths[-1] != 0 or orig_starts[-1] + (canon_len - canon_starts[-1]) != orig:
            canon_starts.append(canon_len)
            orig_starts.append(orig)
            widths.append(0)
        parts.append(text[orig : orig + length])
        canon_len += length

    for match in _SPECIAL.finditer(text):
        identity_run(last, match.start() - last)
        for offset, char in enumerate(match.group(), match.start()):
            folded = _fold(char)
            if folded == char:
                identity_run(offset, 1)
                continue
            changed = True
            if folded:
                canon_starts.append(canon_len)
                orig_starts.append(offset)
                widths.append(1)
                parts.append(folded)
                canon_len += len(folded)
        last = match.end()
    identity_run(last, len(text) - last)
    if not changed:
        return Canonical(text, text)
    # A sentinel chunk so that offsets at the very end map to the end of the text.
    canon_starts.append(canon_len)
    orig_starts.append(len(text))
    widths.append(0)
    return Canonical(text, "".join(parts), canon_starts, orig_starts, widths)
