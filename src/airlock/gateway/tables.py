"""Reading TOML tables strictly: every wrong type or unknown key is named by its full path.

A typo in a security setting must stop the gateway at start-up, not be ignored.
Values are never echoed in messages: a mistyped option could hold a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from airlock.errors import ConfigurationError

__all__ = ["Table", "find_literal_secrets"]

_MISSING = object()

# Values that are API keys or tokens, written where only names and paths belong.
_SECRET_VALUE_RE = re.compile(
    r"(?:^|[^A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic (sk-ant-...), DeepSeek, ...
    r"|ak_[A-Za-z0-9_-]{40,}"  # airlock client keys
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google
    r"|eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}"  # JWT
    r"|Bearer\s+\S{8,}"
    r")"
)
# Option names that can only mean "the key itself".
_SECRET_NAMES = frozenset({"api_key", "apikey", "key", "secret", "token", "password", "access_token"})


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def find_literal_secrets(document: Mapping[str, Any]) -> str | None:
    """The path of the first string value in ``document`` that looks like a key, or ``None``."""
    for path, text in _walk(document, ""):
        if _SECRET_VALUE_RE.search(text):
            return path
    return None


class Table:
    """One TOML table, consumed key by key; :meth:`done` refuses whatever is left."""

    def __init__(self, value: Any, path: str, *, base_dir: Path | None = None) -> None:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"[{path}] must be a table")
        self.path = path
        self.base_dir = base_dir
        self.values: dict[str, Any] = dict(value)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _take(self, key: str, kinds: tuple[type, ...], default: Any, what: str) -> Any:
        value = self.values.pop(key, _MISSING)
        if value is _MISSING:
            return default
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigurationError(f"{self.name(key)} must be {what}")
        return value

    def string(self, key: str, default: Any = None) -> Any:
        return self._take(key, (str,), default, "a string")

    def boolean(self, key: str, default: bool) -> bool:
        return bool(self._take(key, (bool,), default, "true or false"))

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value = self._take(key, (int,), default, "an integer")
        if not low <= value <= high:
            raise ConfigurationError(f"{self.name(key)} must be between {low} and {high}")
        return int(value)

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = self._take(key, (int, float), default, "a number")
        if not low <= value <= high:
            raise ConfigurationError(f"{self.name(key)} must be between {low:g} and {high:g}")
        return float(value)

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a list of one."""
        value = self._take(key, (str, list), _MISSING, "a string or a list of strings")
        if value is _MISSING:
            return default
        items = [value] if isinstance(value, str) else value
        if not all(isinstance(item, str) and item for item in items):
            raise ConfigurationError(f"{self.name(key)} must be a list of non-empty strings")
        return tuple(items)

    def mapping(self, key: str) -> dict[str, Any]:
        return dict(self._take(key, (dict,), {}, "a table"))

    def table(self, key: str) -> Table:
        return Table(self.mapping(key), self.name(key), base_dir=self.base_dir)

    def file(self, key: str) -> str | None:
        """A path option; a relative path is read from the config file's folder."""
        value = self.string(key)
        if value is None or not value:
            return None
        return value if self.base_dir is None or os.path.isabs(value) else str(self.base_dir / value)

    def files(self, key: str) -> tuple[str, ...]:
        values = self.strings(key)
        if self.base_dir is None:
            return values
        return tuple(v if os.path.isabs(v) else str(self.base_dir / v) for v in values)

    def raw(self, key: str) -> Any:
        return self.values.pop(key, None)

    def refuse_secrets(self, hint: str) -> None:
        """Refuse options that can only hold a key, before anything else is read."""
        for key in sorted(self.values):
            if key.lower() in _SECRET_NAMES:
                raise ConfigurationError(
                    f"{self.name(key)}: a key must never be written in the config file; {hint}"
                )

    def done(self) -> None:
        if self.values:
            raise ConfigurationError(f"unknown key(s) in [{self.path}]: {', '.join(sorted(self.values))}")
