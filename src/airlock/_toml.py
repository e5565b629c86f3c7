"""``tomllib`` on Python 3.11+, ``tomli`` before (the same parser, vendored into the stdlib)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib as toml
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as toml  # type: ignore[import-not-found, unused-ignore]

__all__ = ["toml"]
