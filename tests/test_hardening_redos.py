"""ReDoS: every regular expression airlock runs, on adversarial input of 10 kB, 100 kB and 1 MB.

The patterns are collected, not listed: every compiled pattern reachable from a module of
the ``airlock`` package (module globals and the tables, dicts and bound methods in them),
the patterns built inside live stage objects (``Sanitize``, ``Anonymizer`` with its lazy
per-country and per-region tables warmed up, a deny list), and every ``regex`` rule of the
validation presets (run as the compiled validator runs it: anchored ``match`` with ``$``).
A new pattern anywhere in the package is tested without touching this file.

Adversarial input: each pattern's own literal pieces (``sk-ant-``, ``://``, ``-----BEGIN``)
and a set of generic near-miss units, repeated. A screening pass at 4 kB finds each
pattern's costliest unit (a quadratic one already costs ~100x a linear one there); that
unit is then timed at 10 kB, 100 kB and 1 MB. Linear time is ~10x for 10x the input,
quadratic ~100x: the test asserts that 1 MB takes under 15x the time of 100 kB (the issue's
bound), with the best of interleaved runs so a busy machine does not fail it.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import airlock
from airlock.anonymize import Anonymizer
from airlock.sanitize import Sanitize
from airlock.validation import preset_names, preset_schema

LIMIT = 15
SCREEN = 4_000
SMALL, MEDIUM, LARGE = 10_000, 100_000, 1_000_000

# Patterns that never see request data, with the reason. Each one was found by this test.
NOT_ON_REQUEST_DATA = {
    # Parses python-stdnum's IBAN registry ("8!n10!n") once per country at start-up. It is
    # quadratic on a long run of digits (76 s for 100 kB), but its input is the registry's.
    "airlock.anonymize.detectors.iban._BBAN_PART",
}
# Patterns only ever used anchored at one position (``pattern.match(text, pos)``), timed that way.
# A scan with finditer would try them at every position, which is not how they run.
ANCHORED_USE = {
    # Matched once right after each "-----BEGIN ... PRIVATE KEY-----" line found in the text.
    "airlock.anonymize.detectors.secrets._PEM_BODY",
}
# A pattern that scans 1 MB in less than this cannot be quadratic; its ratio is timer noise.
NOISE_FLOOR = 0.02

GENERIC_UNITS = (
    "a", "0", " ", "-", ".", "_", "=", "/", "\\", ":", "@", "\n", "\t", "<a", "(0", "+0 ", "A",
    "a0", "a-", "0-", "0 ", "a@", "@a.", "a.", "a:", "0.", "0:", "aA0_-", "a=", "[a_0", "%",
    "\u0661", "\u200b0", "\u00a0", "0\u2013",
)  # fmt: skip


@dataclass(frozen=True)
class Target:
    name: str
    pattern: re.Pattern[Any]
    anchored: bool  # used as an anchored match (the validators' regex rule), not a scan

    def runner(self) -> Callable[[Any], object]:
        if self.anchored:
            return self.pattern.match
        finditer = self.pattern.finditer

        def scan(text: Any) -> object:
            for _ in finditer(text):
                pass
            return None

        return scan


def _walk(name: str, value: Any, found: dict[tuple[Any, int], str], seen: set[int], depth: int) -> None:
    if isinstance(value, re.Pattern):
        found.setdefault((value.pattern, value.flags), name)
        return
    owner = getattr(value, "__self__", None)
    if isinstance(owner, re.Pattern):  # pattern.search / pattern.match kept as a function
        found.setdefault((owner.pattern, owner.flags), name)
        return
    if depth > 5 or id(value) in seen or isinstance(value, (str, bytes, int, float, type)):
        return
    seen.add(id(value))
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = [(f"{name}[{k!r}]", v) for k, v in list(value.items())[:2000]]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = [(f"{name}[{i}]", v) for i, v in enumerate(list(value)[:2000])]
    elif type(value).__module__.startswith("airlock."):
        attributes = dict(getattr(value, "__dict__", {}))
        for slot in getattr(type(value), "__slots__", ()):
            if hasattr(value, slot):
                attributes[slot] = getattr(value, slot)
        items = [(f"{name}.{k}", v) for k, v in attributes.items()]
    else:
        return
    for child_name, child in items:
        _walk(child_name, child, found, seen, depth + 1)


def collect() -> list[Target]:
    found: dict[tuple[Any, int], str] = {}
    seen: set[int] = set()
    # Live stage objects build patterns of their own; warm the lazy tables up first.
    anonymizer = Anonymizer(key="redos-test-key-0123456789", deny={"PROJECT": ["Blue Harbor", "Falcon"]})
    anonymizer.anonymize(
        "call +44 20 7946 0958, IBAN DE89 3704 0044 0532 0130 00, GB82 WEST 1234 5698 7654 32"
    )
    _walk("Anonymizer()", anonymizer, found, seen, 0)
    _walk("Sanitize()", Sanitize(html="strip_tags"), found, seen, 0)
    for info in pkgutil.walk_packages(airlock.__path__, "airlock."):
        if info.name.endswith("__main__"):
            continue  # runs the command line
        module = importlib.import_module(info.name)
        for key, value in vars(module).items():
            _walk(f"{info.name}.{key}", value, found, seen, 1)
    targets = [
        Target(name, re.compile(pattern, flags), name in ANCHORED_USE)
        for (pattern, flags), name in found.items()
    ]
    for preset in preset_names():
        for path, regex in _schema_regexes(preset_schema(preset), preset):
            # As the compiled validator runs a Cerberus regex rule: anchored at both ends.
            compiled = re.compile(regex if regex.endswith("$") else regex + "$")
            targets.append(Target(f"{path} (regex rule)", compiled, True))
    return sorted(targets, key=lambda target: target.name)


def _schema_regexes(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        regex = node.get("regex")
        if isinstance(regex, str):
            yield path, regex
        for key, value in node.items():
            yield from _schema_regexes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _schema_regexes(value, path)


# Text between the metacharacters of a pattern's source (escaped punctuation included).
_LITERAL_RUN = re.compile(r"(?:\\[^A-Za-z0-9]|[^\\\[\](){}.*+?|^$])+")


def literal_runs(pattern: re.Pattern[Any]) -> list[str]:
    """The literal pieces of ``pattern`` (``sk-ant-``, ``://``, ``BEGIN``...), as near-miss seeds."""
    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    runs = (re.sub(r"\\(.)", r"\1", run) for run in _LITERAL_RUN.findall(source))
    return [run for run in runs if len(run) >= 2]


def units_for(target: Target) -> list[str]:
    units = list(GENERIC_UNITS)
    for run in literal_runs(target.pattern)[:20]:
        units += [run, run + "a0", run + " ", "a" + run]
    return list(dict.fromkeys(units))


def repeat(unit: str, size: int, as_bytes: bool) -> Any:
    text = (unit * (size // len(unit) + 1))[:size]
    return text.encode("utf-8")[:size] if as_bytes else text


def best_time(function: Callable[[Any], object], data: Any, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        function(data)
        best = min(best, time.perf_counter() - started)
    return best


TARGETS = collect()


def test_the_collection_found_the_patterns_that_matter() -> None:
    names = " ".join(target.name for target in TARGETS)
    for expected in (
        "airlock.pipeline._REQUEST_ID_RE",  # request ids
        "airlock.keys._KEY_RE",  # presented API keys
        "airlock.anonymize.detectors.secrets",  # secret detectors
        "airlock.anonymize.detectors.network._EMAIL",
        "airlock.anonymize.detectors.phone._CANDIDATE",
        "Sanitize()",  # the character classes a Sanitize builds
        "(regex rule)",  # the presets' Cerberus regex rules
    ):
        assert expected in names, expected
    assert len(TARGETS) >= 70


MEASURED = [target for target in TARGETS if target.name not in NOT_ON_REQUEST_DATA]


def worst_unit(target: Target) -> str:
    """The unit that costs ``target`` the most on a short input."""
    as_bytes = isinstance(target.pattern.pattern, bytes)
    run = target.runner()
    return max(units_for(target), key=lambda unit: best_time(run, repeat(unit, SCREEN, as_bytes), 2))


@pytest.mark.slow
@pytest.mark.parametrize("target", MEASURED, ids=[target.name for target in MEASURED])
def test_every_pattern_runs_in_linear_time(target: Target) -> None:
    as_bytes = isinstance(target.pattern.pattern, bytes)
    run = target.runner()
    enabled = gc.isenabled()
    gc.disable()
    try:
        unit = worst_unit(target)
        inputs = [repeat(unit, size, as_bytes) for size in (SMALL, MEDIUM, LARGE)]
        best = [float("inf")] * 3
        for _ in range(4):  # interleaved, so a burst of load hits every size alike
            for index, data in enumerate(inputs):
                best[index] = min(best[index], best_time(run, data, 1))
            ratio = best[2] / max(best[1], 1e-6)
            if best[2] < NOISE_FLOOR or ratio <= LIMIT * 0.8:
                break
    finally:
        if enabled:
            gc.enable()
    if best[2] >= NOISE_FLOOR:
        assert ratio <= LIMIT, f"{target.name}: 1 MB took {ratio:.1f}x the time of 100 kB of {unit!r}"


def test_an_exempt_pattern_is_really_quadratic_and_off_the_request_path() -> None:
    # Keeps the exemption honest: if the pattern is fixed or removed, drop it from the list.
    (target,) = [target for target in TARGETS if target.name in NOT_ON_REQUEST_DATA]
    run = target.runner()
    ratio = best_time(run, "0" * 4_000, 1) / max(best_time(run, "0" * 400, 3), 1e-7)
    assert ratio > 30, "no longer quadratic: remove it from NOT_ON_REQUEST_DATA"
