"""Which installed dependencies airlock considers outdated, known offline.

``airlock doctor`` compares installed versions (``importlib.metadata``) with
airlock's declared minimums and with :data:`KNOWN_FIXES`, a list of
advisories that affect how airlock uses a package, shipped here so the check
needs no package index. Versions are compared by their numeric release, which
is enough for minimums (a pre-release counts as its release).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata

from airlock.gateway.checks import Check

__all__ = ["KNOWN_FIXES", "check_dependencies", "release"]

# Package -> (first fixed version, why an older one is a problem). Versions only go up here;
# an entry is added when an advisory affects how airlock uses the package.
KNOWN_FIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "starlette": (
        ("0.40.0", "CVE-2024-47874: unbounded multipart form fields (DoS)"),
        ("0.47.2", "CVE-2025-54121: large multipart uploads block the event loop"),
    ),
    "h11": (("0.16.0", "CVE-2025-43859: lenient chunked parsing allows request smuggling"),),
    "httpx": (("0.23.0", "CVE-2021-41945: URL parsing confusion"),),
    "uvicorn": (("0.11.7", "CVE-2020-7694/7695: log injection and response splitting"),),
    "python-json-logger": (("3.3.0", "CVE-2025-27607: dependency confusion in 3.2.0-3.2.1"),),
    "idna": (("3.7", "CVE-2024-3651: quadratic-time decoding (DoS)"),),
    "certifi": (("2024.7.4", "CVE-2024-39689: distrusted GLOBALTRUST roots still trusted"),),
    "redis": (("4.5.4", "CVE-2023-28858/28859: a cancelled command can leak another's reply"),),
    "fastapi": (("0.109.1", "CVE-2024-24762: form parsing ReDoS"),),
    "python-multipart": (("0.0.18", "CVE-2024-53981: boundary parsing DoS"),),
}
_REQUIREMENT_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)")


def release(version: str) -> tuple[int, ...]:
    """The numeric release of ``version`` (``"1.10.0rc1"`` -> ``(1, 10, 0)``), enough for minimums."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _declared_minimums() -> dict[str, str]:
    try:
        requirements = metadata.requires("asgi-airlock") or []
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return {}
    minimums: dict[str, str] = {}
    for requirement in requirements:
        if re.search(r"""extra\s*==\s*["'](?:dev|bench)["']""", requirement):
            continue  # tools for working on airlock, not what it runs on
        match = _REQUIREMENT_RE.match(requirement)
        if match:
            name = match.group(1).lower().replace("_", "-")
            if release(match.group(2)) > release(minimums.get(name, "0")):
                minimums[name] = match.group(2)
    return minimums


def check_dependencies(installed: Callable[[str], str | None] = _installed) -> Check:
    problems: list[str] = []
    minimums = _declared_minimums()
    names = sorted(set(minimums) | set(KNOWN_FIXES))
    checked = 0
    for name in names:
        version = installed(name)
        if version is None:
            continue
        checked += 1
        if name in minimums and release(version) < release(minimums[name]):
            problems.append(f"{name} {version} < {minimums[name]} (airlock's minimum)")
        for fixed, why in KNOWN_FIXES.get(name, ()):
            if release(version) < release(fixed):
                problems.append(f"{name} {version} < {fixed} ({why})")
    if problems:
        return Check("dependencies", "fail", "upgrade: " + "; ".join(problems))
    return Check("dependencies", "pass", f"{checked} installed packages at or above known-good versions")
