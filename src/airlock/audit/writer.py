"""The writer thread: drains the audit queue into the sinks, off the event loop.

The event loop only puts ``(level, event)`` items on a ``SimpleQueue`` (never
blocks, never full); this thread formats and writes them in order. ``STOP``
ends it after everything queued before it is written; a ``FlushMarker`` is
set once everything queued before it is written and the sinks flushed.

Events are written in batches: when an event arrives after a quiet spell, the
writer lets ``BATCH_WAIT`` pass so that the events of the next requests join
it, then formats up to ``MAX_BATCH`` of them and writes them with a few
``write`` calls (see :mod:`airlock.audit.handlers`). Every ``write`` releases
the GIL, and while the loop is busy each release costs a hand-over of the GIL
to the loop's thread and back; one per batch instead of one per event is most
of what the writer costs a busy server. An event reaches the sink at most a
few milliseconds later; ``flush()`` and shutdown are not delayed beyond that.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

__all__ = ["STOP", "EventRecords", "FlushMarker", "Writer"]

STOP = object()
# How long the writer waits, after a quiet spell, for more events to batch with the first.
BATCH_WAIT = 0.002
# About 0.3 ms of formatting between two chances for the event loop to take the GIL.
MAX_BATCH = 16


class Target(Protocol):
    lost: int

    def open_sinks(self) -> None: ...

    def write_events(self, items: list[tuple[int, dict[str, Any]]]) -> None: ...

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
        get, get_nowait = self.queue.get, self.queue.get_nowait
        caught_up = True
        while True:
            item = get()
            if caught_up and type(item) is tuple:
                time.sleep(BATCH_WAIT)
            items = [item]
            while len(items) < MAX_BATCH:
                try:
                    items.append(get_nowait())
                except queue.Empty:
                    break
            caught_up = len(items) < MAX_BATCH
            events: list[tuple[int, dict[str, Any]]] = []
            for item in items:
                if type(item) is tuple:
                    events.append(item)
                    continue
                self._write(events)
                events = []
                target.flush_sinks()
                if item is STOP:
                    return
                if isinstance(item, FlushMarker):
                    item.done.set()
            self._write(events)
            # Let the event loop's thread take the GIL between two batches.
            time.sleep(0)

    def _write(self, events: list[tuple[int, dict[str, Any]]]) -> None:
        if not events:
            return
        try:
            self.target.write_events(events)
        except Exception:  # the writer must outlive any bug in a handler
            self.target.lost += len(events)


class EventRecords:
    """``logging.LogRecord``s for events, made on the writer thread.

    Every record of this thread has the same logger, source, thread and process
    attributes; only the message, the level and the time differ. Copying them
    from one record made here costs a third of building each record anew.
    """

    __slots__ = ("_created", "_relative", "_template")

    def __init__(self) -> None:
        record = logging.LogRecord("airlock.audit", logging.INFO, __file__, 0, None, None, None)
        self._template = dict(record.__dict__)
        self._created = record.created
        self._relative = record.relativeCreated

    def make(self, level: int, event: dict[str, Any]) -> logging.LogRecord:
        created = event.pop("ts", None)
        record = logging.LogRecord.__new__(logging.LogRecord)
        fields = record.__dict__
        fields.update(self._template)
        fields["msg"] = event
        fields["levelno"] = level
        fields["levelname"] = logging.getLevelName(level)
        if isinstance(created, float):
            # When the request finished, not when the writer got to it.
            fields["created"] = created
            fields["msecs"] = int((created - int(created)) * 1000) + 0.0
            fields["relativeCreated"] = self._relative + (created - self._created) * 1000
        return record
