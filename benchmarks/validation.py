"""Validation and sanitisation cost per request: plain Cerberus against airlock's compiled path.

The 700-byte OpenAI chat body of ``overhead.py`` is validated against the
``openai-chat`` preset schema by

* Cerberus as most code calls it (``Validator(schema).validate(doc)``, which also
  normalises), and with ``normalize=False``;
* airlock's compiled schema (the same answers, checked by the differential test);
* airlock's whole ``Validate`` stage (structure caps, schema, token estimate).

The responses and embeddings presets are measured the same way, and the
``Sanitize`` stage on the same body, clean and with invisible characters. All
configurations run interleaved, round after round; the median of the rounds is
reported with the ratio to plain Cerberus.
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from airlock.context import Context
from airlock.policy import Policy
from airlock.sanitize import Sanitize
from airlock.validation import Schema, StructureCaps, Validate, preset_schema
from airlock.validation.rules import validator_class

from overhead import CHAT_BODY
from report import print_result

RESPONSES_BODY = json.dumps(
    {
        "model": "gpt-4.1-mini",
        "instructions": "You are a helpful assistant for a travel company. Answer briefly.",
        "input": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_text",
                        "text": "Plan three days in Lisbon in May for a family of four: museums, "
                        "food markets, short step-free walks, one rainy-day option and a quiet fish "
                        "restaurant by the river.",
                    }
                ],
            }
        ],
        "max_output_tokens": 300,
        "temperature": 0.7,
    }
).encode()
EMBEDDINGS_BODY = json.dumps(
    {
        "model": "text-embedding-3-small",
        "input": [
            "Three-day family itinerary for Lisbon in May with museums and food markets.",
            "Step-free walking routes near the river in Lisbon.",
            "Quiet fish restaurants in Lisbon close to tram lines.",
        ],
        "dimensions": 512,
    }
).encode()
DIRTY_CHAT = json.loads(CHAT_BODY)
DIRTY_CHAT["messages"][1]["content"] = (
    DIRTY_CHAT["messages"][1]["content"].replace(" ", " \u200b", 20) + "\u202e"
)


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """Drive a stage that never suspends (true for these bodies) without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("stage suspended")


_POLICY = Policy(identity=None)
_SCOPE = {"type": "http", "method": "POST", "path": "/"}


def _context(body: bytes, document: Any) -> Context:
    ctx = Context(_SCOPE, _POLICY, "bench", None)
    ctx.body = body
    ctx.bytes_in = len(body)
    ctx.json = document
    return ctx


def configurations() -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """name -> call, and name -> the plain-Cerberus row it is compared with."""
    calls: dict[str, Callable[[], Any]] = {}
    baseline: dict[str, str] = {}
    for preset, body in (
        ("openai-chat", CHAT_BODY),
        ("openai-responses", RESPONSES_BODY),
        ("openai-embeddings", EMBEDDINGS_BODY),
    ):
        document = json.loads(body)
        definition = preset_schema(preset)
        reference = validator_class()(copy.deepcopy(definition))
        compiled = Schema(definition)
        if not compiled.compiled or compiled.validate(document).errors or not reference.validate(document):
            raise RuntimeError(f"{preset}: the benchmark body must be valid and the schema compiled")
        plain = f"{preset}: cerberus validate()"
        calls[plain] = lambda r=reference, d=document: r.validate(d)
        calls[f"{preset}: cerberus validate(normalize=False)"] = lambda r=reference, d=document: r.validate(
            d, normalize=False
        )
        calls[f"{preset}: airlock compiled schema"] = lambda c=compiled, d=document: c.validate(d)
        stage = Validate(preset=preset)
        calls[f"{preset}: airlock Validate stage"] = lambda s=stage, b=body, d=document: _run(
            s(_context(b, d))
        )
        for name in list(calls):
            if name.startswith(preset) and name != plain:
                baseline[name] = plain

    chat = json.loads(CHAT_BODY)
    caps = StructureCaps()
    calls["caps: bounds from the raw body"] = lambda: caps.check(chat, CHAT_BODY)
    calls["caps: full walk"] = lambda: caps.check(chat)
    sanitize = Sanitize()
    calls["sanitize stage: clean chat body"] = lambda: _run(sanitize(_context(CHAT_BODY, chat)))
    dirty = json.dumps(DIRTY_CHAT).encode()
    # The dirty document is changed in place, so each call parses a fresh one (json.loads row below).
    calls["sanitize stage: 21 invisible chars"] = lambda: _run(sanitize(_context(dirty, json.loads(dirty))))
    calls["json.loads of the chat body (for scale)"] = lambda: json.loads(CHAT_BODY)
    calls["Context() (for scale, in each stage row)"] = lambda: _context(CHAT_BODY, chat)
    return calls, baseline


def measure(calls: dict[str, Callable[[], Any]], *, rounds: int, budget: float) -> dict[str, float]:
    """Median microseconds per call over ``rounds`` interleaved rounds of ``budget`` seconds each."""
    counts: dict[str, int] = {}
    for name, call in calls.items():  # warm up and size each batch to the budget
        started = time.perf_counter()
        done = 0
        while time.perf_counter() - started < budget / 4:
            call()
            done += 1
        counts[name] = max(1, int(done * 4 * budget / max(time.perf_counter() - started, 1e-9) / 4))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            count = counts[name]
            started = time.perf_counter()
            for _ in range(count):
                call()
            samples[name].append((time.perf_counter() - started) / count * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(*, quick: bool = False) -> dict[str, Any]:
    calls, baseline = configurations()
    rounds, budget = (3, 0.02) if quick else (15, 0.1)
    medians = measure(calls, rounds=rounds, budget=budget)
    rows: list[dict[str, Any]] = []
    for name, micros in medians.items():
        row: dict[str, Any] = {"name": name, "us_per_op": round(micros, 2)}
        if name in baseline:
            row["x_faster_than_cerberus"] = round(medians[baseline[name]] / micros, 1)
        rows.append(row)
    chat_plain = medians["openai-chat: cerberus validate()"]
    chat_fast = medians["openai-chat: airlock compiled schema"]
    notes = [
        f"{len(CHAT_BODY)}-byte chat body ({len(RESPONSES_BODY)}-byte responses, "
        f"{len(EMBEDDINGS_BODY)}-byte embeddings); median of {rounds} interleaved rounds.",
        f"openai-chat: plain Cerberus {chat_plain:.1f} us, airlock compiled {chat_fast:.2f} us "
        f"({chat_plain / chat_fast:.0f}x); the differential test shows both give the same errors.",
        "Validate stage = structure caps + compiled schema + token estimate (heuristic).",
        "pulse-cerberus is not measured: it falls back to Cerberus for Validator subclasses and for "
        "regex/keysrules/valuesrules, which every preset uses.",
    ]
    return {"title": "Validation and sanitisation cost", "rows": rows, "notes": notes}


if __name__ == "__main__":
    print_result(run(quick="--quick" in sys.argv))
