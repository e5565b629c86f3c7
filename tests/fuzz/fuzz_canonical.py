"""Atheris harness: the anonymizer's canonical view (``airlock.anonymize.canonical``).

Any text, surrogates and unassigned code points included, must give a canonical view
without raising, and its offset map must stay consistent: every canonical span maps to an
original span inside the text, in order, and the pieces an evasion trick hides (format
characters, other scripts' digits, odd spaces and dashes) are gone from the view.

Run through ``tests/fuzz/run.py`` (``make fuzz``), or directly::

    python tests/fuzz/fuzz_canonical.py CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import itertools
import sys
import unicodedata

import atheris

with atheris.instrument_imports(include=["airlock"]):
    from airlock.anonymize.canonical import canonicalize


def check(text: str, cuts: list[int]) -> None:
    view = canonicalize(text)
    canon = view.canon
    assert view.text is text
    if text.isascii():
        assert canon == text.replace("\t", " ")
        assert view.is_identity
    for char in canon:
        if not char.isascii():
            category = unicodedata.category(char)
            assert category != "Cf", f"format character U+{ord(char):04X} left in the view"
            assert category != "Zs", f"space separator U+{ord(char):04X} left in the view"
            assert category != "Nd", f"non-ASCII digit U+{ord(char):04X} left in the view"
    if not canon:
        return
    previous = (0, 0)
    points = sorted({cut % (len(canon) + 1) for cut in cuts} | {0, len(canon)})
    for start, end in itertools.pairwise(points):
        if end <= start:
            continue
        original = view.span(start, end)
        assert 0 <= original[0] <= original[1] <= len(text), (start, end, original)
        assert original[0] < original[1], "a non-empty canonical span maps to nothing"
        assert original[0] >= previous[0], "spans out of order"
        previous = original
    whole = view.span(0, len(canon))
    assert whole[1] <= len(text)


def test_one_input(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    cuts = provider.ConsumeIntList(3, 2)
    text = provider.ConsumeUnicode(provider.remaining_bytes())
    check(text, cuts)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
