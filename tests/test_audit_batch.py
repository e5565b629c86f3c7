"""Batched writes of the sinks airlock makes: whole lines per write, rotation, and exact failover."""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, Policy
from airlock.audit import AuditLog, verify_files
from airlock.audit.handlers import PIPE_BUF, CountingFile

from helpers import client_for

pytestmark = pytest.mark.anyio

KEY = "identity-key-for-tests-0123456789"


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


def held_writer(audit: AuditLog) -> threading.Event:
    """Keep the writer from starting until the returned event is set: events queue up meanwhile."""
    gate = threading.Event()
    open_sinks = audit.open_sinks

    def wait_then_open() -> None:
        gate.wait(30)
        open_sinks()

    audit.open_sinks = wait_then_open  # type: ignore[method-assign]
    return gate


async def send(audit: AuditLog, count: int) -> list[str]:
    app = Starlette(
        routes=[Route("/v1/chat", ok, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=audit))],
    )
    ids = []
    async with client_for(app) as http:
        for _ in range(count):
            response = await http.post("/v1/chat", json={"q": 1})
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
    return ids


def events_in(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and line.endswith("}")]


class RecordingStream(io.StringIO):
    """A text stream that remembers every write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


async def test_every_write_holds_whole_lines_within_pipe_buf() -> None:
    stream = RecordingStream()
    audit = AuditLog(stream=stream, identity_key=KEY)
    gate = held_writer(audit)
    ids = await send(audit, 40)
    gate.set()
    await audit.shutdown()

    assert [event["request_id"] for event in events_in(stream.getvalue())] == ids
    assert len(stream.writes) < len(ids)  # batched: several lines per write
    for text in stream.writes:
        assert text.endswith("\n")
        assert len(text.encode()) <= PIPE_BUF or text.count("\n") == 1
    assert sum(text.count("\n") for text in stream.writes) == len(ids)


async def test_a_file_that_fills_mid_write_keeps_every_event_once_and_verifies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = [10**9]
    write = CountingFile.write

    def filling_write(self: CountingFile, data: Any) -> int:
        if room[0] <= 0:
            raise OSError(28, "No space left on device")
        part = bytes(data[: room[0]])
        room[0] -= len(part)
        return write(self, part)

    monkeypatch.setattr(CountingFile, "write", filling_write)
    path = tmp_path / "audit.jsonl"
    fallback = io.StringIO()
    audit = AuditLog(path=path, fallback=fallback, identity_key=KEY)
    before = await send(audit, 2)
    assert audit.flush(5)
    gate = held_writer(audit)
    audit.close()  # the next event starts a new writer, held at the gate
    room[0] = 1500  # room for two lines and a part of the third
    during = await send(audit, 12)
    gate.set()
    assert audit.flush(5)
    room[0] = 10**9
    after = await send(audit, 3)
    await audit.shutdown()

    in_file = [event["request_id"] for event in events_in(path.read_text())]
    in_fallback = [event["request_id"] for event in events_in(fallback.getvalue())]
    assert in_file[:2] == before
    assert in_file[-3:] == after
    written_during = in_file[2:-3]
    assert 1 <= len(written_during) < len(during)
    assert written_during + in_fallback == during  # each event exactly once, in order
    assert all(event["fallback"] is True for event in events_in(fallback.getvalue()))
    stats = audit.stats()
    assert stats["written"] == len(in_file)
    assert stats["sink_failures"] == len(in_fallback)
    assert stats["lost"] == 0
    report = verify_files([str(path)])
    assert report.ok, report.failure
    assert report.skipped == 1  # the line cut short, ended by a newline before the next write


class BreakingStream(io.StringIO):
    """Takes ``budget`` writes, then writes part of the next one and fails."""

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget

    def write(self, text: str) -> int:
        if self.budget <= 0:
            super().write(text[: len(text) // 2])
            raise OSError(32, "Broken pipe")
        self.budget -= 1
        return super().write(text)


async def test_a_stream_failing_mid_write_loses_nothing_and_what_it_got_verifies(tmp_path: Path) -> None:
    stream = BreakingStream(budget=1)
    fallback = io.StringIO()
    audit = AuditLog(stream=stream, fallback=fallback, identity_key=KEY)
    gate = held_writer(audit)
    ids = await send(audit, 30)
    gate.set()
    assert audit.flush(5)
    stream.budget = 10**9
    ids += await send(audit, 3)
    await audit.shutdown()

    in_stream = [event["request_id"] for event in events_in(stream.getvalue())]
    in_fallback = [event["request_id"] for event in events_in(fallback.getvalue())]
    assert set(in_stream) | set(in_fallback) == set(ids)
    assert in_stream[-3:] == ids[-3:]
    assert audit.stats()["lost"] == 0
    # Part of the failed write may have reached the reader: the chain started over after it.
    copy = tmp_path / "received.jsonl"
    copy.write_text(stream.getvalue() + "\n")
    report = verify_files([str(copy)])
    assert report.ok, report.failure
    assert len(report.chains) >= 2  # a new chain after each failed write


async def test_rotation_happens_before_the_line_that_would_reach_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, max_bytes=3000, backup_count=50, identity_key=KEY)
    gate = held_writer(audit)
    ids = await send(audit, 40)
    gate.set()
    await audit.shutdown()

    files = [path.with_name(f"audit.jsonl.{n}") for n in range(50, 0, -1)]
    files = [p for p in files if p.exists()] + [path]
    events = [event for p in files for event in events_in(p.read_text())]
    assert [event["request_id"] for event in events] == ids
    assert verify_files([str(p) for p in files]).ok
    # RotatingFileHandler's rule: a file is rotated when its next line would make it reach max_bytes.
    for older, newer in itertools.pairwise(files):
        first_line_of_newer = len(newer.read_text().splitlines(keepends=True)[0])
        assert older.stat().st_size < 3000
        assert older.stat().st_size + first_line_of_newer >= 3000


async def test_a_given_handler_still_gets_one_record_per_event_with_filter_fields() -> None:
    records: list[logging.LogRecord] = []
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            lines.append(self.format(record))

    def add_host(record: logging.LogRecord) -> bool:
        record.host = "web-1"
        return True

    handler = Collect()
    handler.addFilter(add_host)
    audit = AuditLog(handler=handler, identity_key=KEY)
    ids = await send(audit, 3)
    await audit.shutdown()
    events = [json.loads(line) for line in lines]
    assert [event["request_id"] for event in events] == ids
    assert all(event["host"] == "web-1" for event in events)  # python-json-logger adds extra fields
    for record, event in zip(records, events, strict=True):
        assert record.levelname == event["level"] == "INFO"
        assert record.name == "airlock.audit"
        assert record.threadName == "airlock-audit-writer"
        assert isinstance(record.msg, dict)
