"""Provider keys: read from environment variables or secret files, never from the config file.

The key's value lives in one place, :class:`Secret`, whose ``repr`` and ``str``
name where it came from and nothing else, so a key cannot reach a log line, a
traceback or an error body by accident. Several keys may be configured for
rotation: they are used in order; a key the provider refuses (HTTP 401) is set
aside for ``cooldown`` seconds and the next one is used at once. Secret files
(Kubernetes and Docker secrets) are re-read when they change, at most once per
``reload_interval`` seconds and off the event loop, so a rotated file takes
effect without a restart.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from airlock.errors import ConfigurationError

__all__ = ["ENV_NAME_RE", "KeySource", "ProviderKeys", "Secret"]

logger = logging.getLogger("airlock.provider")

ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# A key travels in an HTTP header: printable ASCII, no spaces.
_KEY_RE = re.compile(r"[\x21-\x7e]{8,4096}")
_REDACTED = b"[REDACTED]"


class Secret:
    """A provider key. ``reveal()`` is the only way to its value."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"<Secret from {self.source}>"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling would copy the value into caches and worker queues.
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class KeySource:
    """Where one key comes from: an environment variable or a file."""

    kind: str  # "env" | "file"
    name: str

    def describe(self) -> str:
        return f"environment variable {self.name}" if self.kind == "env" else f"file {self.name}"


def _check_value(value: str, source: KeySource) -> str:
    value = value.strip()
    if not value:
        raise ConfigurationError(f"the provider key in {source.describe()} is empty")
    if not _KEY_RE.fullmatch(value):
        # Never echo the value: describe the problem only.
        raise ConfigurationError(
            f"{source.describe()} must hold exactly one provider key "
            "(8-4096 printable ASCII characters, no spaces or 'Bearer ' prefix)"
        )
    return value


def _read_file(source: KeySource) -> str:
    try:
        text = Path(source.name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"provider.api_key_file: {source.name!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"provider.api_key_file: cannot read {source.name!r}: {reason}") from None
    return _check_value(text, source)


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class ProviderKeys:
    """The provider keys in rotation order.

    :param env: names of environment variables, each holding one key.
    :param files: paths of secret files, each holding one key.
    :param environ: the environment to read (``os.environ``; tests pass a dict).
    :param cooldown: seconds a key the provider refused is set aside.
    :param reload_interval: seconds between checks whether a secret file changed.
    """

    def __init__(
        self,
        *,
        env: Iterable[str] = (),
        files: Iterable[str | os.PathLike[str]] = (),
        environ: Mapping[str, str] | None = None,
        cooldown: float = 60.0,
        reload_interval: float = 5.0,
    ) -> None:
        environ = os.environ if environ is None else environ
        sources: list[KeySource] = []
        for name in env:
            if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
                raise ConfigurationError(
                    "provider.api_key_env takes the NAME of an environment variable (letters, digits, '_'), "
                    "not the key itself"
                )
            sources.append(KeySource("env", name))
        sources.extend(KeySource("file", os.fspath(path)) for path in files)
        self.sources: tuple[KeySource, ...] = tuple(sources)
        self._cooldown = cooldown
        self._reload_interval = reload_interval
        self._secrets: list[Secret] = []
        self._mtimes: list[int | None] = []
        for source in self.sources:
            if source.kind == "env":
                raw = environ.get(source.name)
                if raw is None or not raw.strip():
                    raise ConfigurationError(
                        f"provider.api_key_env: environment variable {source.name} is not set or empty "
                        f"(export {source.name}=... before starting airlock)"
                    )
                value = _check_value(raw, source)
                self._mtimes.append(None)
            else:
                self._mtimes.append(_mtime(source.name))
                value = _read_file(source)
            self._secrets.append(Secret(value, source.describe()))
        self._refused_until = [0.0] * len(self._secrets)
        self._checked = time.monotonic()

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"<ProviderKeys sources={[s.describe() for s in self.sources]!r}>"

    def current(self) -> Secret | None:
        """The key to use now: the first one not set aside (or, if all are, the soonest back)."""
        if not self._secrets:
            return None
        now = time.monotonic()
        for secret, until in zip(self._secrets, self._refused_until, strict=True):
            if until <= now:
                return secret
        soonest = min(range(len(self._secrets)), key=self._refused_until.__getitem__)
        return self._secrets[soonest]

    def refused(self, secret: Secret) -> bool:
        """The provider refused ``secret``; set it aside. ``True`` if another key is available."""
        now = time.monotonic()
        for index, candidate in enumerate(self._secrets):
            if candidate is secret:
                self._refused_until[index] = now + self._cooldown
                logger.warning("airlock: the provider refused the key from %s", secret.source)
        return any(until <= now for until in self._refused_until)

    def scrub(self, data: bytes) -> bytes:
        """``data`` with every configured key replaced by ``[REDACTED]``."""
        for secret in self._secrets:
            value = secret.reveal().encode("ascii")
            if value in data:
                data = data.replace(value, _REDACTED)
        return data

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read secret files that changed (at most once per ``reload_interval`` unless forced)."""
        if not any(source.kind == "file" for source in self.sources):
            return
        now = time.monotonic()
        if not force and now - self._checked < self._reload_interval:
            return
        self._checked = now
        await anyio.to_thread.run_sync(self._reload_changed_files)

    def _reload_changed_files(self) -> None:
        for index, source in enumerate(self.sources):
            if source.kind != "file":
                continue
            mtime = _mtime(source.name)
            if mtime is None or mtime == self._mtimes[index]:
                continue
            try:
                value = _read_file(source)
            except ConfigurationError:
                # A half-written file keeps the last good key rather than breaking every call.
                logger.warning("airlock: could not re-read the provider key from %s", source.describe())
                continue
            self._mtimes[index] = mtime
            self._secrets[index] = Secret(value, source.describe())
            self._refused_until[index] = 0.0
            logger.info("airlock: reloaded the provider key from %s", source.describe())
