"""``AuditLog``: one JSON event per request, written off the event loop, never dropped.

``record(ctx)`` runs on the event loop: it builds the event (copies and counts,
a few microseconds) and puts it on an unbounded queue. A writer thread formats
each event with python-json-logger, chains it and writes it. If the sink fails
(closed stream, read-only file, full disk, a handler that raises) the request
is unaffected, the event goes to the fallback (stderr) and ``sink_failures``
counts it. Events are flushed on lifespan shutdown (``AirlockMiddleware`` calls
``shutdown()``), and at interpreter exit when no lifespan runs.

The queue is unbounded on purpose: an audit log that drops events under load
cannot prove anything. ``stats()["pending"]`` shows a backlog building up.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

import anyio.to_thread

from airlock.audit.chain import LineHasher
from airlock.audit.event import build_event, event_level, minimal_event
from airlock.audit.hashing import CHAIN_KEY_ENV, ClientPolicy, KeyedHasher, load_key
from airlock.audit.sink import Sink, StandardStream, file_handler
from airlock.audit.writer import STOP, EventRecords, FlushMarker, Writer
from airlock.errors import ConfigurationError

if TYPE_CHECKING:
    from airlock.context import Context

__all__ = ["AuditLog"]

logger = logging.getLogger("airlock.audit")

_RESERVED_NAMES = frozenset({"chain"})
# Live logs, so a fork can reset them in the child (threads do not survive a fork).
_LIVE: weakref.WeakSet[AuditLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for log in list(_LIVE):
        log._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AuditLog:
    """The audit sink for ``Policy(audit=AuditLog(...))``.

    :param stream: a text stream to write to; default: standard output, as it is at write time.
    :param path: a file to append to (``stream`` and ``handler`` must then be unset).
    :param max_bytes: with ``path``, rotate the file when it would grow past this size (0: never).
    :param backup_count: with rotation, how many old files to keep (``audit.jsonl.1`` ...).
    :param handler: any ``logging.Handler`` (SysLog, a queue to a shipper...); airlock sets its
        formatter and its ``handleError``, flushes it at shutdown and leaves closing it to you.
    :param identity_key: key for identity and address hashes; default ``$AIRLOCK_AUDIT_KEY``,
        else a random per-process key (with a warning).
    :param chain_key: key for the hash chain (HMAC-SHA256); default ``$AIRLOCK_AUDIT_CHAIN_KEY``,
        else an unkeyed SHA-256 chain.
    :param chain: ``False`` writes no chain member.
    :param client: client address policy: ``"truncate"`` (/24, /48), ``"hash"`` (keyed) or ``"none"``.
    :param rename_fields: rename top-level members, e.g. ``{"level": "severity"}``.
    :param fallback: where events go when the sink fails; default standard error.
    :param shutdown_timeout: seconds ``shutdown()`` waits for the backlog to be written.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        path: str | os.PathLike[str] | None = None,
        max_bytes: int = 0,
        backup_count: int = 5,
        handler: logging.Handler | None = None,
        identity_key: str | bytes | None = None,
        chain_key: str | bytes | None = None,
        chain: bool = True,
        client: ClientPolicy = "truncate",
        rename_fields: Mapping[str, str] | None = None,
        fallback: TextIO | None = None,
        shutdown_timeout: float = 10.0,
    ) -> None:
        if sum(option is not None for option in (stream, path, handler)) > 1:
            raise ConfigurationError("AuditLog takes one of stream=, path= or handler=")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigurationError("AuditLog max_bytes must be an integer >= 0")
        if isinstance(backup_count, bool) or not isinstance(backup_count, int) or backup_count < 0:
            raise ConfigurationError("AuditLog backup_count must be an integer >= 0")
        if max_bytes and path is None:
            raise ConfigurationError("AuditLog max_bytes needs path=")
        if max_bytes and not backup_count:
            raise ConfigurationError("AuditLog rotation needs backup_count >= 1 (0 would truncate the log)")
        if handler is not None and not isinstance(handler, logging.Handler):
            raise ConfigurationError("AuditLog handler= takes a logging.Handler")
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise ConfigurationError("AuditLog stream= takes a text stream")
        renames = dict(rename_fields or {})
        if _RESERVED_NAMES & (set(renames) | set(renames.values())):
            raise ConfigurationError("AuditLog rename_fields cannot rename to or from 'chain'")
        if not shutdown_timeout > 0:
            raise ConfigurationError("AuditLog shutdown_timeout must be > 0")

        self._hasher = KeyedHasher(identity_key, client=client)
        hasher = LineHasher(load_key(chain_key, CHAIN_KEY_ENV, what="the audit chain key")) if chain else None
        owned = handler is None
        if path is not None:
            target = os.fspath(path)
            folder = os.path.dirname(os.path.abspath(target))
            if not os.path.isdir(folder):
                raise ConfigurationError(f"AuditLog path: directory {folder!r} does not exist")
            handler = file_handler(target, max_bytes=max_bytes, backup_count=backup_count)
        elif stream is not None:
            handler = logging.StreamHandler(stream)
        elif handler is None:
            handler = StandardStream("stdout")
        fallback_handler = (
            logging.StreamHandler(fallback) if fallback is not None else StandardStream("stderr")
        )
        # Handlers airlock made are written to in batches; a given handler gets handle() per event.
        self.sink = Sink(handler, hasher=hasher, rename_fields=renames, owned=owned, batched=owned)
        self.fallback = Sink(
            fallback_handler,
            hasher=hasher,
            rename_fields=renames,
            static_fields={"fallback": True},
            owned=fallback is None,
            batched=True,
        )
        self.shutdown_timeout = float(shutdown_timeout)
        self.recorded = 0
        self.written = 0
        self.sink_failures = 0
        self.lost = 0
        self._failing = False
        self._lock = threading.Lock()
        self._records = EventRecords()
        self._writer: Writer | None = None
        self._last_thread: threading.Thread | None = None
        self._atexit_registered = False
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<AuditLog sink={self.sink.name} recorded={self.recorded} sink_failures={self.sink_failures}>"

    # -- event loop side -------------------------------------------------------------------

    def record(self, ctx: Context) -> None:
        """Queue the event of one finished request. Never blocks, never raises for a sink's sake."""
        try:
            event = build_event(ctx, self._hasher)
            level = event_level(ctx)
        except Exception as exc:
            logger.error(
                "airlock audit: building the event failed (%s); logging a minimal one", type(exc).__name__
            )
            event = minimal_event(ctx)
            level = logging.ERROR
        with self._lock:
            writer = self._writer
            if writer is None:
                writer = self._start_locked()
            writer.queue.put((level, event))
            self.recorded += 1

    async def startup(self) -> None:
        """Start the writer (lifespan startup); otherwise it starts with the first event."""
        with self._lock:
            if self._writer is None:
                self._start_locked()

    async def shutdown(self) -> None:
        """Write every queued event and flush (lifespan shutdown)."""
        await anyio.to_thread.run_sync(self.close)

    # -- any thread ------------------------------------------------------------------------

    def _start_locked(self) -> Writer:
        writer = Writer(self, self._last_thread)
        writer.start()
        self._writer = writer
        self._last_thread = writer
        if not self._atexit_registered:
            atexit.register(self.close)
            self._atexit_registered = True
        return writer

    def close(self, timeout: float | None = None) -> bool:
        """Stop the writer after it wrote everything queued; ``False`` if it did not finish in time.

        Blocking: from async code use ``await shutdown()``. A later ``record()`` starts a new writer.
        """
        with self._lock:
            writer = self._writer
            self._writer = None
            if writer is not None:
                writer.queue.put(STOP)
            if self._atexit_registered:
                atexit.unregister(self.close)
                self._atexit_registered = False
        if writer is None:
            return True
        writer.join(self.shutdown_timeout if timeout is None else timeout)
        if writer.is_alive():
            logger.error(
                "airlock audit: the writer did not finish within %.1fs; %d event(s) not yet written",
                self.shutdown_timeout if timeout is None else timeout,
                writer.queue.qsize(),
            )
            return False
        self.sink.close()
        self.fallback.close()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event recorded so far is written and the handlers flushed."""
        marker = FlushMarker()
        with self._lock:
            writer = self._writer
            if writer is None:
                return True
            writer.queue.put(marker)
        return marker.done.wait(timeout)

    def stats(self) -> dict[str, int]:
        """Counters: ``recorded``, ``written``, ``sink_failures`` (events that went to the fallback),
        ``lost`` (the fallback failed too), ``pending`` (queued, not yet written)."""
        writer = self._writer
        return {
            "recorded": self.recorded,
            "written": self.written,
            "sink_failures": self.sink_failures,
            "lost": self.lost,
            "pending": writer.queue.qsize() if writer is not None else 0,
        }

    def check_writable(self) -> str | None:
        """Why the sink's file cannot be appended to now, or ``None`` (for ``airlock doctor``).

        Blocking (opens the file, creating it if missing); streams and custom handlers are not checked.
        """
        path = getattr(self.sink.handler, "baseFilename", None)
        if not isinstance(path, str):
            return None
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            return f"cannot append to {path} ({exc.strerror or type(exc).__name__})"
        return None

    def chain_heads(self) -> dict[str, Any]:
        """The last link of each chain: keep it elsewhere to detect lines cut from the end."""
        heads: dict[str, Any] = {}
        for label, sink in (("sink", self.sink), ("fallback", self.fallback)):
            if sink.chain is not None and sink.chain.id and sink.chain.seq > 0:
                heads[label] = sink.chain.head
        return heads

    def _reset_after_fork(self) -> None:
        # In the child: no writer thread exists; start fresh chains so parent and child never share one.
        self._lock = threading.Lock()
        self._writer = None
        self._last_thread = None
        self.sink.fresh = True
        self.fallback.fresh = True

    # -- writer thread ---------------------------------------------------------------------

    def write_events(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        records = [self._records.make(level, event) for level, event in items]
        failed: list[logging.LogRecord] = []
        for record, error in zip(records, self.sink.write_many(records), strict=True):
            if error is None:
                self.written += 1
                if self._failing:
                    self._failing = False
                    logger.warning("airlock audit: the %s sink works again", self.sink.name)
                continue
            self.sink_failures += 1
            if not self._failing:
                self._failing = True
                logger.error(
                    "airlock audit: the %s sink failed (%s); events go to the fallback until it recovers",
                    self.sink.name,
                    type(error).__name__,
                )
            failed.append(record)
        if failed:
            self.lost += sum(error is not None for error in self.fallback.write_many(failed))

    def open_sinks(self) -> None:
        self._records = EventRecords()  # made on the writer thread: its name and id go in the records
        for sink in (self.sink, self.fallback):
            try:
                sink.open()
            except Exception:
                logger.warning("airlock audit: could not prepare the %s sink's chain", sink.name)

    def flush_sinks(self) -> None:
        self.sink.flush()
        self.fallback.flush()
