"""The handlers airlock creates for its sinks, and how it writes several lines to them at once.

The writer thread formats events in batches and writes a batch with a few
``write`` calls instead of one per event. Each ``write`` system call releases
the GIL, and every release while the event loop runs costs a hand-over of the
GIL to the loop's thread and back, more than formatting the event did; so on
a busy server the batch saves most of what the audit log costs the loop.

What per-line writes guaranteed still holds:

* every ``write`` holds whole lines, at most ``PIPE_BUF`` bytes of them (a
  longer line goes alone), so lines from several processes on one pipe or one
  ``O_APPEND`` file never interleave;
* a size-rotated file rotates before the line that would make it reach
  ``max_bytes``, as ``RotatingFileHandler`` decides it;
* after a failure the caller knows which lines were written: exactly, for the
  files airlock opens (their raw layer counts the bytes that reached the
  kernel); for a stream it does not own, the lines of every completed ``write``
  and none of the failed one (whose lines go to the fallback, and the chain
  restarts, so what a reader got still verifies).

Handlers given by the user (``handler=``) get one ``handle(record)`` per event,
as before.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import select
import sys
from collections.abc import Sequence
from typing import Any, Literal, TextIO

__all__ = ["PIPE_BUF", "CountingFile", "StandardStream", "file_handler", "write_lines"]

PIPE_BUF = getattr(select, "PIPE_BUF", 512)


class StandardStream(logging.Handler):
    """``sys.stdout`` or ``sys.stderr`` as they are at write time (test runners and servers swap them).

    One ``write`` per line, then a flush: on a pipe, lines under ``PIPE_BUF``
    from several processes do not interleave.
    """

    terminator = "\n"

    def __init__(self, which: Literal["stdout", "stderr"]) -> None:
        super().__init__()
        self.which = which

    def __repr__(self) -> str:
        return f"<StandardStream {self.which}>"

    @property
    def stream(self) -> TextIO:
        stream: TextIO = getattr(sys, self.which)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self.stream
            stream.write(self.format(record) + "\n")
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        stream = getattr(sys, self.which, None)
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()


class CountingFile(io.FileIO):
    """A file's raw layer that counts the bytes the kernel accepted (``landed``)."""

    landed = 0

    def write(self, data: Any, /) -> int:
        written = super().write(data)
        if written:
            self.landed += written
        return written


def _open_counting(handler: logging.FileHandler) -> io.TextIOWrapper:
    raw = CountingFile(handler.baseFilename, "a")
    encoding = handler.encoding or "utf-8"
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=handler.errors)


class _AuditFile(logging.FileHandler):
    def _open(self) -> io.TextIOWrapper:
        return _open_counting(self)


class _RotatingAuditFile(logging.handlers.RotatingFileHandler):
    def _open(self) -> io.TextIOWrapper:
        return _open_counting(self)


def file_handler(path: str, *, max_bytes: int, backup_count: int) -> logging.FileHandler:
    """A file, appended to; size-rotated when ``max_bytes`` > 0. Opened on first write, off the loop."""
    if max_bytes > 0:
        return _RotatingAuditFile(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
    return _AuditFile(path, mode="a", encoding="utf-8", delay=True)


def _counter(stream: Any) -> CountingFile | None:
    raw = getattr(getattr(stream, "buffer", None), "raw", None)
    return raw if isinstance(raw, CountingFile) else None


def _rotator(handler: logging.Handler) -> logging.handlers.RotatingFileHandler | None:
    if not isinstance(handler, logging.handlers.RotatingFileHandler) or handler.maxBytes <= 0:
        return None
    # As RotatingFileHandler.shouldRollover: never rotate anything but a regular file.
    path = handler.baseFilename
    return None if os.path.exists(path) and not os.path.isfile(path) else handler


class _Writes:
    """Sends lines in writes of whole lines, at most ``PIPE_BUF`` bytes each, counting what got out."""

    __slots__ = ("chunk", "counter", "failed_in_write", "landed_before", "lead", "size", "stream", "written")

    def __init__(self, stream: TextIO) -> None:
        self.chunk: list[str] = []
        self.size = 0
        self.written = 0
        self.lead = 0  # pieces at the start that are not lines (a repairing newline)
        self.failed_in_write = False
        self.landed_before = 0
        self.stream = stream
        self.counter = _counter(stream)

    def retarget(self, stream: TextIO) -> None:
        self.stream = stream
        self.counter = _counter(stream)

    def add(self, text: str) -> None:
        if self.chunk and self.size + len(text) > PIPE_BUF:
            self.send()
        self.chunk.append(text)
        self.size += len(text)

    def send(self) -> None:
        if not self.chunk:
            return
        self.landed_before = self.counter.landed if self.counter is not None else 0
        self.failed_in_write = True
        self.stream.write("".join(self.chunk))
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()
        self.failed_in_write = False
        self.written += len(self.chunk) - self.lead
        self.chunk, self.size, self.lead = [], 0, 0

    def outcome(self) -> tuple[int, bool]:
        """After an error: lines known to be written, and whether that count is exact."""
        if not self.failed_in_write:
            return self.written, True  # failed before the pending lines were sent
        if self.counter is None:
            return self.written, False  # a stream we do not own: part of the write may be out
        # The raw layer knows how many bytes of the failed write reached the file.
        landed = self.counter.landed - self.landed_before
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        written = self.written
        for index, text in enumerate(self.chunk):
            length = len(text.encode(encoding, "replace"))
            if landed < length:
                break
            landed -= length
            if index >= self.lead:
                written += 1
        return written, True


def write_lines(
    handler: logging.Handler, lines: Sequence[str], *, lead: str = ""
) -> tuple[int, BaseException | None, bool]:
    """Write formatted ``lines`` to one of airlock's handlers (hold ``handler.lock``).

    ``lead`` goes before the first line (a newline that ends a line a failed
    write may have cut short). Returns how many lines were written (a prefix of
    ``lines``), the error that stopped the rest, and whether that count is exact
    (else some lines of the failed write may have been written too).
    """
    terminator: str = getattr(handler, "terminator", "\n")
    writes: _Writes | None = None
    try:
        if isinstance(handler, logging.FileHandler) and handler.stream is None:
            handler.stream = handler._open()  # delay=True: opened here, on the writer thread
        stream: TextIO = handler.stream  # type: ignore[attr-defined]
        writes = _Writes(stream)
        if lead:
            writes.add(lead)
            writes.lead = 1
        rotator = _rotator(handler)
        position = stream.seek(0, os.SEEK_END) if rotator is not None else 0
        for line in lines:
            text = line + terminator
            if rotator is not None:
                if position + len(text) >= rotator.maxBytes:
                    writes.send()
                    rotator.doRollover()
                    if rotator.stream is None:  # delay=True: doRollover leaves it closed
                        rotator.stream = rotator._open()
                    writes.retarget(rotator.stream)
                    position = 0
                position += len(text)
            writes.add(text)
        writes.send()
    except Exception as exc:
        if writes is None:
            return 0, exc, True
        written, exact = writes.outcome()
        return written, exc, exact
    return writes.written, None, True
