"""Where events go: python-json-logger lines on a ``logging.Handler``, with their chain.

Each sink owns a :class:`~airlock.audit.chain.ChainState` and an
:class:`AuditFormatter` (a python-json-logger ``JsonFormatter``) that writes the
chain member into the line and hashes the line as written. A sink learns that
its handler failed even when the handler swallows the error (stdlib handlers
catch ``OSError`` in ``emit`` and call ``handleError``): airlock replaces the
handler's ``handleError`` with its own, so a failed write is never counted as
written and never advances the chain.

A handler airlock made (standard output, ``stream=``, ``path=``, the fallback)
gets a batch of lines in a few writes (:mod:`airlock.audit.handlers`); the sink
knows which of them were written, so the chain and the fallback stay exact. A
handler given by the user gets ``handle(record)`` per event.

Everything here runs on the writer thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from pythonjsonlogger.core import merge_record_extra
from pythonjsonlogger.json import JsonFormatter

from airlock.audit.chain import ChainState, LineHasher, last_line, link_to
from airlock.audit.handlers import StandardStream, file_handler, write_lines

__all__ = ["AuditFormatter", "Sink", "StandardStream", "file_handler"]


def _unserializable(value: Any) -> None:
    # Events are bounded to JSON types before they are queued; never fall back to str()/repr(),
    # which is how objects' contents end up in logs.
    return None


# One encoder for every line: python-json-logger would build a new one per call.
# No circular-reference bookkeeping: every container of an event is a fresh copy (bounded()),
# so an event is a tree.
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=True, default=_unserializable, check_circular=False
)


# JSONEncoder.encode builds a C encoder for each call; this is the one it would build, made
# once. Same arguments as JSONEncoder.iterencode passes, so the same text.
_C_ENCODE: Any = (
    c_make_encoder(
        None,
        _unserializable,
        encode_basestring_ascii,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        _ENCODER.sort_keys,
        _ENCODER.skipkeys,
        _ENCODER.allow_nan,
    )
    if c_make_encoder is not None
    else None
)


def _compact_dumps(obj: Any, **kwargs: Any) -> str:
    if _C_ENCODE is not None and type(obj) is dict:
        return "".join(_C_ENCODE(obj, 0))
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
        self._head = tuple(self._get_rename(name) for name in ("timestamp", "level", "message"))

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        # python-json-logger's add_fields for this formatter's configuration (format
        # "%(message)s", no defaults, no timestamp option), without its per-member renaming
        # calls and its scan of the record when nothing needs either: the same members,
        # in the same order.
        timestamp, level, message = self._head
        log_data[timestamp] = rfc3339(record.created)
        log_data[level] = record.levelname
        record.message = summary(message_dict)
        log_data[message] = record.message
        rename = self.rename_fields
        if rename:
            for fields in (self.static_fields, message_dict):
                for key, value in fields.items():
                    log_data[rename.get(key, key)] = value
        else:
            log_data.update(self.static_fields)
            log_data.update(message_dict)
        if not self._skip_fields.issuperset(record.__dict__):
            # Attributes a logging filter put on the record: python-json-logger logs them too.
            merge_record_extra(record, log_data, reserved=self._skip_fields, rename_fields=rename)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        if self.chain is not None:
            log_data["chain"] = self.chain.fields()
        return log_data

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        line: str = super().serialize_log_record(log_data)
        if self.chain is not None:
            line = self.chain.seal(line)
        return line


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
        batched: bool = False,
    ) -> None:
        self.handler = handler
        # A handler airlock made (see airlock.audit.handlers): written to in batches.
        self.batched = batched
        self.chain = ChainState(hasher) if hasher is not None else None
        self.formatter = AuditFormatter(self.chain, rename_fields=rename_fields, static_fields=static_fields)
        self.owned = owned
        self.fresh = True
        self._repair = False
        self._cut_short = False
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

    def write_many(self, records: Sequence[logging.LogRecord]) -> list[BaseException | None]:
        """Write ``records`` in order; for each, the error if it was not written (as :meth:`write`)."""
        handler = self.handler
        if not self.batched or handler.filters:
            return [self.write(record) for record in records]
        errors: list[BaseException | None] = [None] * len(records)
        # Below the handler's level: not written and not a failure, as Handler.handle decides.
        todo = [i for i, record in enumerate(records) if record.levelno >= handler.level]
        if self._repair and self._path is not None:
            try:
                _end_partial_line(self._path)
            except OSError as exc:
                for i in todo:
                    errors[i] = exc  # do not write onto a half-written line
                return errors
            self._repair = False
        chain = self.chain
        start = (chain.seq, chain.prev) if chain is not None else (0, None)
        lines: list[str] = []
        sent: list[int] = []
        hashes: list[str | None] = []
        for i in todo:
            try:
                lines.append(handler.format(records[i]))
            except Exception as exc:  # a bug costs this event its line, not the batch
                if chain is not None:
                    chain.discard()
                errors[i] = exc
                continue
            sent.append(i)
            if chain is not None:
                chain.commit()  # the next line links to this one; undone below if it is not written
                hashes.append(chain.prev)
        with handler.lock or contextlib.nullcontext():
            written, error, exact = write_lines(handler, lines, lead="\n" if self._cut_short else "")
        if error is None:
            self._cut_short = False
            return errors
        for i in sent[written:]:
            errors[i] = error
        if chain is not None:
            if exact:
                chain.rewind(start[0] + written, hashes[written - 1] if written else start[1])
            else:
                chain.restart()  # a reader may have part of the failed write: start over, cleanly
        if not exact:
            self._cut_short = True  # end a line the failed write may have cut, before the next one
        if isinstance(handler, logging.FileHandler):
            # As in write(): drop what is buffered, end a partial line before the next write.
            with contextlib.suppress(Exception):
                handler.close()
            self._repair = True
        return errors

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
