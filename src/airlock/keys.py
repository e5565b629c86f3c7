"""Client API keys, stored only as hashes, several live at once for rotation.

Keys are random and long (``airlock keys new`` makes 256-bit ones), so a plain
SHA-256 digest is as safe to store as a password hash would be, and cheap
enough to check on every request. A presented key is hashed and compared with
*every* stored digest with :func:`hmac.compare_digest`, without stopping at the
first match, so the time taken says nothing about which key, or how much of
one, matched.

A keys file is TOML::

    [keys]
    alice = "sha256:3f1c..."
    ci-2026-11 = "sha256:9a0b..."

Rotation is adding a key, moving clients over, then removing the old line; the
file is re-read when it changes (checked at most once per ``reload_interval``
seconds, off the event loop), so no restart is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

import anyio.to_thread

from airlock._toml import load_toml
from airlock.errors import ConfigurationError

__all__ = ["KEY_PREFIX", "KeyStore", "check_key_name", "generate_key", "hash_key"]

KEY_PREFIX = "ak_"
_DIGEST_PREFIX = "sha256:"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Presented keys outside this shape are refused before hashing (and before any compare).
_KEY_RE = re.compile(r"[\x21-\x7e]{16,256}")


def generate_key() -> str:
    """A new client key: ``ak_`` and 43 URL-safe characters (256 random bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: ``sha256:<hex>``."""
    return _DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_key_name(name: str) -> str:
    """``name`` if it can name a key (1-64 letters, digits, '.', '_', '@', '-'), else ConfigurationError."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(
            "key names are 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    return name


def _parse_entries(entries: Mapping[str, str], source: str) -> list[tuple[str, bytes]]:
    parsed: list[tuple[str, bytes]] = []
    for name, digest in entries.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ConfigurationError(f"{source}: key names are 1-64 letters, digits, '.', '_', '@' or '-'")
        if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
            # Never echo the value: it may be a key pasted where its hash belongs.
            raise ConfigurationError(
                f"{source}: key {name!r} must be stored as 'sha256:<64 hex digits>' "
                "(run 'airlock keys new' to make a key and its line)"
            )
        parsed.append((name, bytes.fromhex(digest[len(_DIGEST_PREFIX) :])))
    return parsed


def _read_file(path: Path) -> list[tuple[str, bytes]]:
    document = load_toml(path, "keys file")
    table = document.get("keys", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"keys file {str(path)!r}: [keys] must be a table")
    return _parse_entries(table, f"keys file {str(path)!r}")


class KeyStore:
    """Hashes of the client keys that are currently valid, by name."""

    def __init__(
        self,
        entries: Mapping[str, str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        reload_interval: float = 1.0,
    ) -> None:
        self._path = Path(path) if path is not None else None
        self._reload_interval = reload_interval
        self._inline = _parse_entries(entries or {}, "keys")
        self._file_entries: list[tuple[str, bytes]] = []
        self._mtime: int | None = None
        self._checked = 0.0
        if self._path is not None:
            self._mtime = self._stat()
            self._file_entries = _read_file(self._path)
        self._entries = self._inline + self._file_entries

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, reload_interval: float = 1.0) -> KeyStore:
        return cls(path=path, reload_interval=reload_interval)

    def __repr__(self) -> str:
        return f"<KeyStore names={self.names()!r}>"

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return [name for name, _ in self._entries]

    def _stat(self) -> int | None:
        assert self._path is not None
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return None

    def _reload_if_changed(self) -> None:
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return
        try:
            entries = _read_file(self._path)  # type: ignore[arg-type]
        except ConfigurationError:
            # A half-written or broken file keeps the last good keys rather than locking everyone out.
            return
        self._mtime = mtime
        self._file_entries = entries
        self._entries = self._inline + entries

    async def refresh(self) -> None:
        """Re-read the keys file if it changed; at most once per ``reload_interval``."""
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < self._reload_interval:
            return
        self._checked = now
        await anyio.to_thread.run_sync(self._reload_if_changed)

    def lookup(self, key: str) -> str | None:
        """The name of ``key`` if it is valid, else ``None`` (constant time over all keys)."""
        if not _KEY_RE.fullmatch(key):
            return None
        digest = hashlib.sha256(key.encode("ascii")).digest()
        found: str | None = None
        for name, stored in self._entries:
            if hmac.compare_digest(digest, stored) and found is None:
                found = name
        return found
