"""``Sanitize``: the sanitize stage, which cleans the user's text before anyone reads it.

::

    Policy(sanitize=Sanitize())                                   # OpenAI text fields, NFC
    Policy(sanitize=Sanitize(normalize="NFKC", html="strip_scripts", refuse_bidi=True))
    Policy(sanitize=Sanitize(fields=["question", "notes[*]"]))

For every string at the selected fields (:mod:`airlock.fields`; default: the text
of OpenAI chat, responses, embeddings and completions requests), in this order:

1. **Invisible and control characters are removed**, by class (all on by default):

   ============================ =====================================================
   ``zero_width``               zero-width spaces and joiners, word joiner, soft hyphen,
                                BOM, invisible operators, Hangul fillers, other
                                default-ignorable code points
   ``bidi``                     bidirectional embeddings, overrides and isolates
                                (U+202A-202E, U+2066-2069, "Trojan Source")
   ``bidi_mark``                LRM, RLM, ALM (U+200E, U+200F, U+061C)
   ``tag``                      tag characters (U+E0000-E007F, "ASCII smuggling")
   ``variation_selector``       U+FE00-FE0F, U+E0100-E01EF, Mongolian FVS
   ``control``                  C0 and C1 controls except tab, line feed, carriage return
   ``surrogate``                lone surrogates (from ``\\ud800`` escapes; not encodable)
   ============================ =====================================================

2. **Unicode normalisation**: ``"NFC"`` (default), ``"NFKC"`` (also folds
   full-width letters, ligatures and other look-alikes) or ``None``.
3. **HTML** (off by default): ``"strip_scripts"`` removes ``<script>`` and
   ``<style>`` elements with their content; ``"strip_tags"`` also removes comments
   and every other tag, keeping the text between tags. Tag stripping treats any
   ``<letter...>`` as a tag, so only turn it on for fields that hold HTML.

Text holding ``bidi`` controls is flagged in the audit event (``flags: ["bidi"]``)
and, with ``refuse_bidi=True``, refused with ``422 bidi_override``. Counts of what
was removed go to ``ctx.audit["sanitize"]``; a changed document is marked so the
app receives the cleaned body.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from airlock.errors import BidiOverride, ConfigurationError
from airlock.fields import OPENAI_TEXT_FIELDS, Fields

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["CHARACTER_CLASSES", "Sanitize"]

CHARACTER_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "zero_width": (
        (0x00AD, 0x00AD),  # soft hyphen
        (0x034F, 0x034F),  # combining grapheme joiner
        (0x115F, 0x1160),  # Hangul choseong/jungseong fillers
        (0x17B4, 0x17B5),  # Khmer inherent vowels
        (0x180E, 0x180E),  # Mongolian vowel separator
        (0x200B, 0x200D),  # zero-width space, non-joiner, joiner
        (0x2060, 0x2065),  # word joiner, invisible operators
        (0x206A, 0x206F),  # deprecated format characters
        (0x3164, 0x3164),  # Hangul filler
        (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
        (0xFFA0, 0xFFA0),  # half-width Hangul filler
        (0xFFF0, 0xFFFB),  # unassigned specials, interlinear annotation controls
        (0x1BCA0, 0x1BCA3),  # shorthand format controls
        (0x1D173, 0x1D17A),  # musical symbol format controls
        (0xE0080, 0xE00FF),  # default-ignorable, unassigned
        (0xE01F0, 0xE0FFF),  # default-ignorable, unassigned
    ),
    "bidi": ((0x202A, 0x202E), (0x2066, 0x2069)),
    "bidi_mark": ((0x061C, 0x061C), (0x200E, 0x200F)),
    "tag": ((0xE0000, 0xE007F),),
    "variation_selector": ((0x180B, 0x180D), (0x180F, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF)),
    "control": ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F)),
    "surrogate": ((0xD800, 0xDFFF),),
}

Form = Literal["NFC", "NFKC"]
HtmlMode = Literal["keep", "strip_scripts", "strip_tags"]

_SCRIPT_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
_SCRIPT_CLOSE = {name: re.compile(rf"</{name}", re.IGNORECASE) for name in ("script", "style")}
_TAG = re.compile(r"<[/!?]?[A-Za-z][^<>]*>")


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _char_class(classes: Iterable[str], low: int = 0, high: int = 0x10FFFF) -> re.Pattern[str] | None:
    """A regex class of the code points of ``classes`` between ``low`` and ``high``.

    Scanning is split by plane because ``re`` turns a class of code points below
    U+10000 into a lookup table, while one that reaches beyond is checked range by
    range, several times slower per character.
    """
    ranges = sorted(
        (max(lo, low), min(hi, high))
        for name in classes
        for lo, hi in CHARACTER_CLASSES[name]
        if hi >= low and lo <= high
    )
    if not ranges:
        return None
    body = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
    return re.compile(f"[{body}]")


def _until(text: str, start: int, opener: re.Pattern[str] | None, close: str) -> int:
    """Index just past ``close`` after ``start`` (the end of the text if it never comes)."""
    if opener is not None:
        found = opener.search(text, start)
        if found is None:
            return len(text)
        start = found.end()
    end = text.find(close, start)
    return len(text) if end < 0 else end + len(close)


def strip_scripts(text: str) -> tuple[str, int]:
    """``text`` without ``<script>``/``<style>`` elements; an unclosed one runs to the end
    (as in a browser). Linear time: every search starts where the last one stopped."""
    pieces: list[str] = []
    position = removed = 0
    while True:
        found = _SCRIPT_OPEN.search(text, position)
        if found is None:
            break
        pieces.append(text[position : found.start()])
        removed += 1
        position = _until(text, found.end(), _SCRIPT_CLOSE[found.group(1).lower()], ">")
    if not removed:
        return text, 0
    pieces.append(text[position:])
    return "".join(pieces), removed


def strip_tags(text: str) -> tuple[str, int]:
    """``text`` without scripts, styles, comments and tags (the text between tags stays)."""
    text, removed = strip_scripts(text)
    pieces: list[str] = []
    position = 0
    while True:
        start = text.find("<!--", position)
        if start < 0:
            break
        pieces.append(text[position:start])
        removed += 1
        position = _until(text, start + 4, None, "-->")
    pieces.append(text[position:])
    text = "".join(pieces)
    text, tags = _TAG.subn("", text)
    return text, removed + tags


class _Tally:
    __slots__ = ("bidi", "html", "normalized", "removed")

    def __init__(self) -> None:
        self.removed: dict[str, int] = {}
        self.normalized = 0
        self.html = 0
        self.bidi = False


class Sanitize:
    """The sanitize stage (see the module documentation).

    :param fields: selectors of the text to clean (default: OpenAI text fields).
    :param normalize: ``"NFC"``, ``"NFKC"`` or ``None``.
    :param remove: character classes to remove (default: all of :data:`CHARACTER_CLASSES`).
    :param html: ``"keep"``, ``"strip_scripts"`` or ``"strip_tags"``.
    :param refuse_bidi: refuse text with bidi controls (``422 bidi_override``) instead of
        removing them.
    """

    def __init__(
        self,
        fields: Sequence[str] | None = None,
        *,
        normalize: Form | None = "NFC",
        remove: Iterable[str] = tuple(CHARACTER_CLASSES),
        html: HtmlMode = "keep",
        refuse_bidi: bool = False,
    ) -> None:
        if normalize not in ("NFC", "NFKC", None):
            raise ConfigurationError("Sanitize(normalize=...) takes 'NFC', 'NFKC' or None")
        if html not in ("keep", "strip_scripts", "strip_tags"):
            raise ConfigurationError("Sanitize(html=...) takes 'keep', 'strip_scripts' or 'strip_tags'")
        if not isinstance(refuse_bidi, bool):
            raise ConfigurationError("Sanitize(refuse_bidi=...) must be a bool")
        removed = tuple(dict.fromkeys([remove] if isinstance(remove, str) else remove))
        unknown = sorted(set(removed) - set(CHARACTER_CLASSES))
        if unknown:
            raise ConfigurationError(
                f"unknown character class(es): {', '.join(unknown)}; known: {', '.join(CHARACTER_CLASSES)}"
            )
        self.fields = Fields(fields if fields is not None else OPENAI_TEXT_FIELDS)
        self.normalize: Form | None = normalize
        self.remove = removed
        self.html: HtmlMode = html
        self.refuse_bidi = refuse_bidi
        # Scan for everything removed plus bidi controls (always flagged); strip only what is removed.
        scanned = {*removed, "bidi"}
        self._scan = _char_class(scanned)
        self._scan_ascii = _char_class(scanned, high=0x7F)
        self._scan_bmp = _char_class(scanned, high=0xFFFF)
        self._scan_astral = _char_class(scanned, low=0x10000)
        self._strip = _char_class(removed)
        spans = sorted((lo, hi, name) for name in {*removed, "bidi"} for lo, hi in CHARACTER_CLASSES[name])
        self._starts = [lo for lo, _, _ in spans]
        self._spans = spans
        self._html = {"keep": None, "strip_scripts": strip_scripts, "strip_tags": strip_tags}[html]

    def __repr__(self) -> str:
        return (
            f"<airlock.Sanitize normalize={self.normalize} html={self.html} "
            f"refuse_bidi={self.refuse_bidi} fields={len(self.fields.selectors)}>"
        )

    def _class_of(self, char: str) -> str:
        point = ord(char)
        index = bisect.bisect_right(self._starts, point) - 1
        return self._spans[index][2]

    def _suspect(self, text: str) -> bool:
        """Whether ``text`` holds any character to remove or flag (fast, usually false)."""
        if text.isascii():
            return self._scan_ascii is not None and self._scan_ascii.search(text) is not None
        if self._scan_bmp is not None and self._scan_bmp.search(text) is not None:
            return True
        astral = self._scan_astral
        return astral is not None and _ASTRAL.search(text) is not None and astral.search(text) is not None

    def _clean(self, text: str, tally: _Tally) -> str:
        scan = self._scan
        if scan is not None and self._suspect(text):
            removed = tally.removed
            for found in scan.finditer(text):
                name = self._class_of(found.group())
                if name == "bidi":
                    tally.bidi = True
                    if self.refuse_bidi:
                        raise BidiOverride()
                    if "bidi" not in self.remove:
                        continue
                removed[name] = removed.get(name, 0) + 1
            if self._strip is not None:
                text = self._strip.sub("", text)
        form = self.normalize
        if form is not None and not text.isascii() and not unicodedata.is_normalized(form, text):
            text = unicodedata.normalize(form, text)
            tally.normalized += 1
        if self._html is not None and "<" in text:
            text, count = self._html(text)
            tally.html += count
        return text

    def clean(self, text: str) -> tuple[str, dict[str, Any]]:
        """Clean one string; return it with the facts the stage would record."""
        tally = _Tally()
        result = self._clean(text, tally)
        return result, self._facts(tally, int(result != text))

    @staticmethod
    def _facts(tally: _Tally, changed: int) -> dict[str, Any]:
        facts: dict[str, Any] = {"changed": changed}
        if tally.removed:
            facts["removed"] = dict(sorted(tally.removed.items()))
        if tally.normalized:
            facts["normalized"] = tally.normalized
        if tally.html:
            facts["html_removed"] = tally.html
        if tally.bidi:
            facts["flags"] = ["bidi"]
        return facts

    async def __call__(self, ctx: Context) -> None:
        document = ctx.json
        if document is None:
            return
        tally = _Tally()
        try:
            changed = self.fields.rewrite(document, lambda text: self._clean(text, tally))
        finally:
            # Recorded even when refusing, so the audit event says why.
            ctx.audit["sanitize"] = self._facts(tally, 0)
        ctx.audit["sanitize"]["changed"] = changed
        if changed:
            ctx.mark_modified()
