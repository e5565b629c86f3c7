"""The atheris harnesses (tests/fuzz/): a CI-sized run, and proof that their checks can fail.

``make fuzz`` runs them for minutes each (``python tests/fuzz/run.py --seconds N`` for any
length). Here each harness gets a few seconds, which is enough to exercise every path of
the harness and catch a regression that any input shows at once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

atheris = pytest.importorskip(
    "atheris",
    reason="atheris is not installed for this Python (pip install 'asgi-airlock[fuzz]'; "
    "it ships wheels for Linux only, and building it elsewhere needs clang with libFuzzer)",
)

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import fuzz_canonical  # noqa: E402
import fuzz_json_walker  # noqa: E402

from airlock.anonymize.canonical import Canonical  # noqa: E402
from airlock.validation.caps import StructureCaps  # noqa: E402


@pytest.mark.slow
def test_the_harnesses_run_clean_for_a_few_seconds(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), "--seconds", "4", "--corpus", str(tmp_path / "corpus")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "fuzz canonical: exit 0" in result.stdout
    assert "fuzz json_walker: exit 0" in result.stdout
    for name in ("canonical", "json_walker"):
        assert len(list((tmp_path / "corpus" / name).iterdir())) > 3  # libFuzzer kept new inputs


def test_the_canonical_harness_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    fuzz_canonical.check("ja\u200bne@exa\u200cmple.com \uff14\u0661", [3, 9])  # a clean pass

    def backwards(self: Canonical, start: int, end: int) -> tuple[int, int]:
        return end, start

    monkeypatch.setattr(Canonical, "span", backwards)
    with pytest.raises(AssertionError):
        fuzz_canonical.check("ja\u200bne@exa\u200cmple.com", [3, 9])


def test_the_json_walker_harness_checks_can_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    caps = StructureCaps(max_depth=2, max_array_items=3, max_total_items=10, max_string_length=5)
    body = b'{"a": [[["deep"]]]}'
    document: Any = {"a": [[["deep"]]]}
    monkeypatch.setattr(StructureCaps, "within_bounds", lambda self, body: True)
    with pytest.raises(AssertionError):  # the shortcut wrongly says "within the caps"
        fuzz_json_walker.check_caps(document, body, caps)
    monkeypatch.undo()
    fuzz_json_walker.check_caps(document, body, caps)  # the real shortcut: a clean pass
    fuzz_json_walker.check_fields({"messages": [{"content": "x"}]}, ["messages[*].content", "**"])
