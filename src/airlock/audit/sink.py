"""Where events go: python-json-logger lines on a ``logging.Handler``, with their chain.

Each sink owns a :class:`~airlock.audit.chain.ChainState` and an
:class:`AuditFormatter` (a python-json-logger ``JsonFormatter``) that writes the
chain member into the line and hashes the line as written. A sink learns that
its handler failed even when the handler swallows the error (stdlib handlers
catch ``OSError`` in ``emit`` and call ``handleError``): airlock replaces the
handler's ``handleError`` with its own, so a failed write is never counted as
written and never advances the chain.

Everything here runs on the writer thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal, TextIO

from pythonjsonlogger.json import JsonFormatter

from airlock.audit.chain import ChainState, LineHasher, last_line, link_to

__all__ = ["AuditFormatter", "Sink", "StandardStream", "file_handler"]


def _unserializable(value: Any) -> None:
    # Events are bounded to JSON types before they are queued; never fall back to str()/repr(),
    # which is how objects' contents end up in logs.
    return None


# One encoder for every line: python-json-logger would build a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=_unserializable)


def _compact_dumps(obj: Any, **kwargs: Any) -> str:
    return _ENCODER.encode(obj)


_last_second: list[Any] = [None, ""]


def rfc3339(timestamp: float) -> str:
    """``2026-05-09T07:35:25.123456Z``: RFC 3339, UTC, microseconds."""
    micros = round(timestamp * 1e6)
    second, fraction = divmod(micros, 1_000_000)
    cached = _last_second
    if cached[0] != second:
        # Only the writer thread calls this; many events share a second, strftime is the slow part.
        cached[1] = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        cached[0] = second
    return f"{cached[1]}.{fraction:06d}Z"


def summary(event: Mapping[str, Any]) -> str:
    """A short human line for log viewers that show ``message`` first (Cloud Logging, Kibana)."""
    status = event.get("status")
    return (
        f"{event.get('method', '-')} {event.get('route') or '-'} {status if status is not None else '-'} "
        f"{event.get('code') or event.get('outcome', '-')}"
    )


class AuditFormatter(JsonFormatter):
    """JSON lines: ``timestamp``, ``level``, ``message``, the event, then ``chain``.

    ``rename_fields`` renames top-level members for a log platform (e.g.
    ``{"level": "severity"}`` for Google Cloud Logging); ``chain`` keeps its name.
    """

    def __init__(
        self,
        chain: ChainState | None,
        *,
        rename_fields: Mapping[str, str] | None = None,
        static_fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            rename_fields=dict(rename_fields or {}),
            static_fields=dict(static_fields or {}),
            json_ensure_ascii=True,
            json_serializer=_compact_dumps,
        )
        self.chain = chain

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data[self._get_rename("timestamp")] = rfc3339(record.created)
        log_data[self._get_rename("level")] = record.levelname
        # python-json-logger fills "message" from record.message (its default format is %(message)s).
        record.message = summary(message_dict)
        log_data[self._get_rename("message")] = record.message
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if self.chain is not None:
            log_data["chain"] = self.chain.fields()
        return log_data

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        line: str = super().serialize_log_record(log_data)
        if self.chain is not None:
            line = self.chain.seal(line)
        return line


class StandardStream(logging.Handler):
    """``sys.stdout`` or ``sys.stderr`` as they are at write time (test runners and servers swap them).

    One ``write`` per line, then a flush: on a pipe, lines under ``PIPE_BUF``
    from several processes do not interleave.
    """

    def __init__(self, which: Literal["stdout", "stderr"]) -> None:
        super().__init__()
        self.which = which

    def __repr__(self) -> str:
        return f"<StandardStream {self.which}>"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream: TextIO = getattr(sys, self.which)
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


def file_handler(path: str, *, max_bytes: int, backup_count: int) -> logging.FileHandler:
    """A file, appended to; size-rotated when ``max_bytes`` > 0. Opened on first write, off the loop."""
    if max_bytes > 0:
        return logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8", delay=True
        )
    return logging.FileHandler(path, mode="a", encoding="utf-8", delay=True)


def _end_partial_line(path: str) -> bytes | None:
    """End the file's last line if it was cut short; return its last complete line."""
    line, partial = last_line(path)
    if partial:
        with open(path, "ab") as file:
            file.write(b"\n")
    return line


class Sink:
    """One handler, its formatter and its chain."""

    def __init__(
        self,
        handler: logging.Handler,
        *,
        hasher: LineHasher | None,
        rename_fields: Mapping[str, str] | None = None,
        static_fields: Mapping[str, Any] | None = None,
        owned: bool,
    ) -> None:
        self.handler = handler
        self.chain = ChainState(hasher) if hasher is not None else None
        self.formatter = AuditFormatter(self.chain, rename_fields=rename_fields, static_fields=static_fields)
        self.owned = owned
        self.fresh = True
        self._repair = False
        path = getattr(handler, "baseFilename", None)
        self._path: str | None = path if isinstance(path, str) else None
        self._error: BaseException | None = None
        handler.setFormatter(self.formatter)
        # Stdlib handlers swallow write errors into handleError; route them here.
        handler.handleError = self._handle_error  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<airlock audit Sink {self.handler!r}>"

    @property
    def name(self) -> str:
        path = getattr(self.handler, "baseFilename", None)
        if isinstance(path, str):
            return os.path.basename(path)
        return type(self.handler).__name__

    def _handle_error(self, record: logging.LogRecord) -> None:
        self._error = sys.exc_info()[1] or OSError("the log handler reported an error")

    def open(self) -> None:
        """Start a new chain (first use in this process). A file's chain names the file's last line."""
        if self.chain is None or not self.fresh:
            return
        self.fresh = False
        after = None
        path = self._path
        if path is not None:
            try:
                line = _end_partial_line(path)
                if line is None:
                    line = last_line(path + ".1")[0]  # just rotated: link to the previous file
                after = link_to(line)
            except OSError:
                after = None  # unreadable now; writing will fail over to the fallback
        self.chain.restart(after)

    def write(self, record: logging.LogRecord) -> BaseException | None:
        """Write one record; the error if the handler failed (then the chain does not advance)."""
        if record.levelno < self.handler.level:
            return None
        if self._repair and self._path is not None:
            try:
                _end_partial_line(self._path)
            except OSError as exc:
                return exc  # still failing: do not write onto a half-written line
            self._repair = False
        self._error = None
        try:
            self.handler.handle(record)
        except Exception as exc:
            self._error = exc
        error = self._error
        if self.chain is not None:
            if error is None:
                self.chain.commit()
            else:
                self.chain.discard()
        if error is not None and isinstance(self.handler, logging.FileHandler):
            # A failed write (full disk) may have left part of the line in the file and the
            # rest in the stream's buffer, to be written before the next line. Drop the
            # buffer (the handler reopens the file on its next write) and end the partial
            # line first: the event went to the fallback, so the file's chain stays intact.
            with contextlib.suppress(Exception):
                self.handler.close()
            self._repair = True
        return error

    def flush(self) -> None:
        try:
            self.handler.flush()
        except Exception:  # a failing sink must not stop the others from flushing
            return

    def close(self) -> None:
        self.flush()
        if self.owned:
            try:
                self.handler.close()
            except Exception:
                return
