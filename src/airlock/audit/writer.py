"""The writer thread: drains the audit queue into the sinks, off the event loop.

The event loop only puts ``(level, event)`` items on a ``SimpleQueue`` (never
blocks, never full); this thread formats and writes them in order. ``STOP``
ends it after everything queued before it is written; a ``FlushMarker`` is
set once everything queued before it is written and the sinks flushed.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

__all__ = ["STOP", "FlushMarker", "Writer"]

STOP = object()
# About 0.3 ms of formatting between two chances for the event loop to take the GIL.
_YIELD_EVERY = 16


class Target(Protocol):
    lost: int

    def open_sinks(self) -> None: ...

    def write_event(self, level: int, event: dict[str, Any]) -> None: ...

    def flush_sinks(self) -> None: ...


class FlushMarker:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class Writer(threading.Thread):
    """Drains its own queue into ``target`` until it meets ``STOP``."""

    def __init__(self, target: Target, previous: threading.Thread | None) -> None:
        super().__init__(name="airlock-audit-writer", daemon=True)
        self.target = target
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.previous = previous

    def run(self) -> None:
        if self.previous is not None:
            # A writer stopped by close() may still be draining: never two writers on one chain.
            self.previous.join()
        target = self.target
        target.open_sinks()
        get = self.queue.get
        written = 0
        while True:
            item = get()
            if item is STOP:
                target.flush_sinks()
                return
            if isinstance(item, FlushMarker):
                target.flush_sinks()
                item.done.set()
                continue
            try:
                target.write_event(*item)
            except Exception:  # the writer must outlive any bug in a handler
                target.lost += 1
            written += 1
            if written % _YIELD_EVERY == 0:
                # While a backlog is written, let the event loop's thread take the GIL now
                # rather than after the interpreter's switch interval (5 ms).
                time.sleep(0)
