"""Run the atheris harnesses of tests/fuzz/, each in its own process, for a bounded time.

::

    python tests/fuzz/run.py                        # every harness, 300 s each (what `make fuzz` runs)
    python tests/fuzz/run.py --seconds 5            # the CI-sized run the test suite does
    python tests/fuzz/run.py --harness canonical --corpus .venv/fuzz-corpus --seconds 3600

Each harness starts from a few seed inputs (written into its corpus folder) and keeps what
libFuzzer finds there, so a later run with the same ``--corpus`` continues where the last
one stopped. A crash, a failed assertion or a slow input (10 s) leaves the input that caused
it in the artifacts folder (``<harness>-crash-<sha1>``; replay it with
``python tests/fuzz/fuzz_<harness>.py FILE``) and makes this script exit 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = {"canonical": HERE / "fuzz_canonical.py", "json_walker": HERE / "fuzz_json_walker.py"}

SEEDS: dict[str, list[bytes]] = {
    "canonical": [
        "mail ja\u200bne@exa\u200cmple.com".encode("utf-16-le"),
        "\uff14\uff11\uff11\uff11 1111\u00a01111\u20131111".encode("utf-16-le"),
        "\u0665\u0663\u0666-\u0669\u0660-\u0664\u0663\u0669\u0669\tok".encode("utf-16-le"),
        b"plain ascii text with a tab\t",
    ],
    "json_walker": [
        b'{"model":"m","messages":[{"role":"user","content":"hi"},'
        b'{"role":"user","content":[{"type":"text","text":"part"}]}]}',
        b'{"input":["a","b",[1,2]],"instructions":"x","a":[{"b":"c"}],"prompt":"p"}',
        b'[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]',
        b'{"a":1,"a":2}',
        b'{"x":1e400,"y":NaN,"z":"\\ud800"}',
    ],
}


def run(name: str, seconds: int, corpus_root: Path, artifacts: Path) -> int:
    corpus = corpus_root / name
    corpus.mkdir(parents=True, exist_ok=True)
    for index, seed in enumerate(SEEDS[name]):
        path = corpus / f"seed-{index}"
        if not path.exists():
            path.write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(HARNESSES[name]),
        str(corpus),
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/{name}-",
        "-timeout=10",  # one input taking 10 s is a finding (ReDoS, a quadratic walk)
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ]
    print(f"fuzz {name}: {seconds} s, corpus {corpus}", flush=True)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    tail = result.stderr.strip().splitlines()[-12:]
    runs = next((line for line in reversed(tail) if line.startswith("stat::number_of_executed_units")), None)
    print(f"fuzz {name}: exit {result.returncode}; {runs or 'no stats'}", flush=True)
    if result.returncode != 0:
        print("\n".join(result.stderr.strip().splitlines()[-60:]), file=sys.stderr)
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=300, help="time per harness (default 300)")
    parser.add_argument("--harness", choices=[*HARNESSES, "all"], default="all")
    parser.add_argument(
        "--corpus", type=Path, default=None, help="corpus folder to keep (default: a temp dir)"
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="where crashing inputs go (default: $TMPDIR/airlock-fuzz-artifacts)",
    )
    options = parser.parse_args(argv)
    names = list(HARNESSES) if options.harness == "all" else [options.harness]
    with tempfile.TemporaryDirectory(prefix="airlock-fuzz-") as temporary:
        corpus_root = options.corpus or Path(temporary)
        # Outside the temporary corpus, so a crashing input outlives the run.
        artifacts = options.artifacts or Path(tempfile.gettempdir()) / "airlock-fuzz-artifacts"
        failed = [name for name in names if run(name, options.seconds, corpus_root, artifacts) != 0]
    if failed:
        print(f"fuzz: FAILED {', '.join(failed)} (inputs in {artifacts})", file=sys.stderr)
        return 1
    print("fuzz: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
