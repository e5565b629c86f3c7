"""TOML files: ``tomllib`` on Python 3.11+, ``tomli`` before (the same parser, vendored into the stdlib)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airlock.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib as toml
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as toml  # type: ignore[import-not-found, unused-ignore]

__all__ = ["load_toml", "toml"]


def load_toml(path: Path, what: str) -> dict[str, Any]:
    """The document in ``path``; ``ConfigurationError`` naming ``what`` (e.g. "config") if it cannot be read.

    The messages carry the path and the parser's position, never the file's content.
    """
    try:
        with path.open("rb") as handle:
            document: dict[str, Any] = toml.load(handle)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigurationError(f"{what} {str(path)!r} is not valid TOML: {exc}") from None
    return document
