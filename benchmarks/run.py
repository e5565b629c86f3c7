"""``make bench``: run every benchmark, write ``benchmarks/results.md`` and ``benchmarks/results.png``.

Each benchmark module exposes ``run(*, quick=False) -> {"title", "rows", "notes"}``. This runner
calls them one after another in one process (the load test starts its own servers), records the
machine they ran on, and draws the two charts the README shows.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from report import cell

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODULES = ("overhead", "validation", "anonymize", "throttle", "audit", "load")
PACKAGES = ("asgi-airlock", "starlette", "limits", "cerberus", "python-json-logger", "uvicorn", "slowapi")


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpu}, {os.cpu_count()} cores, {memory}"),
        ("system", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("packages", ", ".join(versions)),
    ]


def markdown_table(result: dict[str, Any]) -> list[str]:
    rows = result.get("rows", [])
    lines = [f"### {result['title']}", ""]
    if rows:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("| " + " | ".join("---" for _ in columns) + " |")
        for row in rows:
            lines.append("| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |")
        lines.append("")
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    return lines


def plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'asgi-airlock[bench]'): no plot", file=sys.stderr)
        return False
    overhead = results.get("overhead", {}).get("rows", [])
    load = results.get("load", {}).get("rows", [])
    figure, axes = plt.subplots(1, 2, figsize=(15, 6))
    if overhead:
        names = [row["name"] for row in overhead]
        values = [row["us_per_op"] for row in overhead]
        axes[0].barh(
            names, values, color=["#888888" if not n.startswith("airlock") else "#2b6cb0" for n in names]
        )
        axes[0].invert_yaxis()
        axes[0].set_xlabel("µs per request (in-process ASGI, lower is better)")
        axes[0].set_title("Per-request cost")
        for index, value in enumerate(values):
            axes[0].text(value, index, f" {value:.1f}", va="center", fontsize=8)
    if load:
        for app in dict.fromkeys(row["app"] for row in load):
            points = sorted((row["concurrency"], row["requests_per_s"]) for row in load if row["app"] == app)
            axes[1].plot([p[0] for p in points], [p[1] for p in points], marker="o", label=app)
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("concurrent connections")
        axes[1].set_ylabel("requests/s (higher is better)")
        axes[1].set_title("Throughput under uvicorn on loopback")
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    parser.add_argument("--only", nargs="*", choices=MODULES, help="run only these benchmarks")
    parser.add_argument("--out", default=str(HERE), help="directory for results.md and results.png")
    args = parser.parse_args(argv)

    out = Path(args.out)
    results: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    started = time.monotonic()
    for name in args.only or MODULES:
        print(f"== {name}", flush=True)
        began = time.monotonic()
        try:
            module = importlib.import_module(name)
            result = module.run(quick=args.quick)
        except Exception:
            failures.append(name)
            traceback.print_exc()
            continue
        results[name] = result
        for line in markdown_table(result):
            print(line)
        print(f"({name}: {time.monotonic() - began:.0f} s)", flush=True)

    lines = ["# airlock benchmark results", ""]
    lines += [f"- **{key}**: {value}" for key, value in machine_info()]
    lines += [f"- **total time**: {time.monotonic() - started:.0f} s", ""]
    if args.quick:
        lines += ["(quick smoke run: too few iterations for the numbers to mean much)", ""]
    for name in MODULES:
        if name in results:
            lines += markdown_table(results[name])
    if failures:
        lines += [f"Benchmarks that failed: {', '.join(failures)}", ""]
    lines += ["![results](results.png)", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines))
    plot(results, out / "results.png")
    print(f"wrote {out / 'results.md'} and {out / 'results.png'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
