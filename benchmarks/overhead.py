"""Per-request cost of airlock, in process: no server, no network, so the numbers are stable.

One 700-byte OpenAI chat body is sent through a bare Starlette app, the same app with
slowapi's ``@limiter.limit`` (when slowapi is installed), airlock with each stage alone, and
airlock with every stage on. Configurations are measured interleaved, round after round, and
the median of the rounds is reported with ratios to bare Starlette and to slowapi.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import Callable
from typing import Any

from airlock import Policy

import apps
from apps import BENCH_KEY, CHAT_BODY
from report import print_result


def _flusher(policy: Policy) -> Callable[[], object] | None:
    # The audit writer works in a thread; waiting for it inside the timed batch charges its
    # work to the configuration that caused it instead of to whichever row runs next.
    audit = policy.audit
    return getattr(audit, "flush", None)


def configurations() -> dict[str, tuple[Any, Callable[[], object] | None]]:
    """Name -> (ASGI app, flush): bare, slowapi, the engine alone, each stage alone, all on."""
    configs: dict[str, tuple[Any, Callable[[], object] | None]] = {"bare Starlette": (apps.bare(), None)}
    # slowapi is in the bench extra; without it the comparison is skipped.
    with contextlib.suppress(ImportError):
        configs["slowapi @limit (memory)"] = (apps.slowapi(), None)
    policies = {"airlock: engine (body+parse)": Policy(identity=None)}
    for name, options in apps.stage_options().items():
        policies[f"airlock: engine + {name}"] = Policy(**{"identity": None, **options})
    policies["airlock: full pipeline"] = apps.full_policy()
    for name, policy in policies.items():
        configs[name] = (apps.with_policy(policy), _flusher(policy))
    return configs


_AUTH = [(b"authorization", b"Bearer " + BENCH_KEY.encode())]


async def _batch(app: Any, count: int, flush: Callable[[], object] | None) -> float:
    return await apps.timed_batch(app, CHAT_BODY, count, headers=_AUTH, flush=flush)


def measure(
    configs: dict[str, tuple[Any, Callable[[], object] | None]], *, rounds: int, per_round: int
) -> dict[str, float]:
    async def main() -> dict[str, list[float]]:
        samples: dict[str, list[float]] = {name: [] for name in configs}
        for app, flush in configs.values():  # warm up caches, route engines, lazy storages
            await _batch(app, 50, flush)
        for _ in range(rounds):
            for name, (app, flush) in configs.items():
                samples[name].append(await _batch(app, per_round, flush))
        return samples

    samples = asyncio.run(main())
    return {name: statistics.median(values) for name, values in samples.items()}


def run(*, quick: bool = False) -> dict[str, Any]:
    rounds, per_round = (3, 100) if quick else (15, 1000)
    medians = measure(configurations(), rounds=rounds, per_round=per_round)
    bare = medians["bare Starlette"]
    slowapi_cost = medians.get("slowapi @limit (memory)")
    engine = medians["airlock: engine (body+parse)"]
    rows = []
    for name, micros in medians.items():
        row: dict[str, Any] = {"name": name, "us_per_op": round(micros, 1), "x_bare": round(micros / bare, 2)}
        if slowapi_cost is not None:
            row["x_slowapi"] = round(micros / slowapi_cost, 2)
        if name.startswith("airlock: engine +"):
            row["stage_us"] = round(micros - engine, 1)
        rows.append(row)
    notes = [
        f"{len(CHAT_BODY)}-byte OpenAI chat body, in-process ASGI calls; median of {rounds} "
        f"interleaved rounds of {per_round} requests; stage_us = cost over the engine alone; audit rows "
        "include the writer thread's work (each batch waits for it).",
    ]
    full = medians.get("airlock: full pipeline")
    if full is not None:
        if slowapi_cost is not None:
            verdict = "PASS" if full <= slowapi_cost else "MISS"
            notes.append(f"target full pipeline <= slowapi: {verdict} ({full / slowapi_cost:.2f}x slowapi)")
        verdict = "PASS" if full <= 2 * bare else "MISS"
        notes.append(f"aim full pipeline <= 2x bare Starlette: {verdict} ({full / bare:.2f}x bare)")
    return {"title": "Per-request overhead (in-process ASGI)", "rows": rows, "notes": notes}


if __name__ == "__main__":
    print_result(run())
