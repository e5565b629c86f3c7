"""Audit sinks: stdout, files, rotation, any handler; failing sinks; never blocking; flushed at the end."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Policy
from airlock.audit import AuditLog, verify_files

from helpers import client_for

pytestmark = pytest.mark.anyio

KEY = "identity-key-for-tests-0123456789"


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


def make_app(audit: AuditLog) -> Starlette:
    policy = Policy(audit=audit)
    return Starlette(
        routes=[Route("/v1/chat", ok, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=policy)],
    )


async def send(audit: AuditLog, count: int = 1) -> list[str]:
    """``count`` accepted requests; their request ids."""
    ids = []
    async with client_for(make_app(audit)) as http:
        for _ in range(count):
            response = await http.post("/v1/chat", json={"q": 1})
            assert response.status_code == 200
            ids.append(response.headers["x-request-id"])
    return ids


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_default_sink_is_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    audit = AuditLog(identity_key=KEY)
    ids = await send(audit, 2)
    await audit.shutdown()
    out = capsys.readouterr()
    assert [event["request_id"] for event in lines_of(out.out)] == ids
    assert out.err == ""


async def test_file_sink_appends_and_a_restart_links_to_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path=path, identity_key=KEY)
    ids = await send(first, 3)
    await first.shutdown()
    second = AuditLog(path=str(path), identity_key=KEY)
    ids += await send(second, 2)
    await second.shutdown()

    events = lines_of(path.read_text())
    assert [event["request_id"] for event in events] == ids
    assert [event["chain"]["seq"] for event in events] == [0, 1, 2, 0, 1]
    # The anchor to keep elsewhere: the first run's last line.
    head = events[2]["chain"]
    assert first.chain_heads() == {"sink": {"id": head["id"], "seq": 2, "hash": head["hash"]}}
    after = events[3]["chain"]["after"]
    assert after["id"] == events[2]["chain"]["id"]
    assert after["seq"] == 2
    report = verify_files([str(path)])
    assert report.ok, report.failure
    assert report.events == 5
    assert len(report.chains) == 2


async def test_removing_a_whole_run_between_restarts_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(3):
        audit = AuditLog(path=path, identity_key=KEY)
        await send(audit, 2)
        await audit.shutdown()
    lines = path.read_text().splitlines(keepends=True)
    del lines[2:4]  # the whole second run
    path.write_text("".join(lines))
    report = verify_files([str(path)])
    assert report.failure is not None
    assert report.failure.where == f"{path}:3"
    assert "not in the given files" in report.failure.message


async def test_size_rotated_file_keeps_one_chain_across_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, max_bytes=2000, backup_count=50, identity_key=KEY)
    ids = await send(audit, 30)
    await audit.shutdown()

    # Oldest first: audit.jsonl.N ... audit.jsonl.1, audit.jsonl.
    files = [path.with_name(f"audit.jsonl.{n}") for n in range(50, 0, -1)]
    files = [p for p in files if p.exists()] + [path]
    assert len(files) > 3
    assert all(p.stat().st_size <= 2000 for p in files)
    events = [event for p in files for event in lines_of(p.read_text())]
    assert [event["request_id"] for event in events] == ids
    assert [event["chain"]["seq"] for event in events] == list(range(30))
    assert verify_files([str(p) for p in files]).ok
    only_current = verify_files([str(path)])
    assert only_current.failure is not None
    assert "earlier rotated file" in only_current.failure.message
    assert verify_files([str(path)], partial=True).ok


async def test_any_logging_handler_gets_formatted_json_lines() -> None:
    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.lines: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(self.format(record))

    handler = Collect()
    audit = AuditLog(handler=handler, identity_key=KEY)
    ids = await send(audit, 3)
    await audit.shutdown()
    assert [json.loads(line)["request_id"] for line in handler.lines] == ids


async def test_a_handler_level_filters_events_without_counting_failures() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.CRITICAL)
    audit = AuditLog(handler=handler, identity_key=KEY)
    await send(audit, 2)
    await audit.shutdown()
    assert stream.getvalue() == ""
    assert audit.stats()["sink_failures"] == 0


class Failing(logging.Handler):
    """A handler that raises (like a full disk in a handler that does not catch)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        self.lines.append(self.format(record))


def closed_stream(tmp_path: Path) -> dict[str, Any]:
    stream = io.StringIO()
    stream.close()
    return {"stream": stream}


def full_disk(tmp_path: Path) -> dict[str, Any]:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    return {"path": "/dev/full"}


def read_only_file(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "audit.jsonl"
    path.write_text("")
    path.chmod(0o444)
    # Root ignores permissions; the immutable attribute still stops it.
    if os.access(path, os.W_OK) and (
        shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0
    ):
        pytest.skip("cannot make a read-only file here")
    return {"path": path}


def raising_handler(tmp_path: Path) -> dict[str, Any]:
    return {"handler": Failing()}


@pytest.fixture
def unlock(tmp_path: Path) -> Any:
    yield
    target = tmp_path / "audit.jsonl"
    if target.exists() and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(target)], stderr=subprocess.DEVNULL)


@pytest.mark.usefixtures("unlock")
@pytest.mark.parametrize("make_sink", [closed_stream, full_disk, read_only_file, raising_handler])
async def test_a_failing_sink_falls_back_to_stderr_and_counts(
    tmp_path: Path, make_sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fallback = io.StringIO()
    audit = AuditLog(fallback=fallback, identity_key=KEY, **make_sink(tmp_path))
    with caplog.at_level(logging.ERROR, logger="airlock.audit"):
        ids = await send(audit, 3)
        await audit.shutdown()
    events = lines_of(fallback.getvalue())
    assert [event["request_id"] for event in events] == ids
    assert all(event["fallback"] is True for event in events)
    assert audit.stats() == {"recorded": 3, "written": 0, "sink_failures": 3, "lost": 0, "pending": 0}
    assert audit.sink_failures == 3
    assert "sink failed" in caplog.text


async def test_a_recovered_sink_gets_events_again_and_its_chain_is_intact() -> None:
    handler = Failing()
    fallback = io.StringIO()
    audit = AuditLog(handler=handler, fallback=fallback, identity_key=KEY)
    failed = await send(audit, 2)
    assert await anyio.to_thread.run_sync(audit.flush)
    handler.broken = False
    written = await send(audit, 3)
    await audit.shutdown()
    assert [json.loads(line)["request_id"] for line in handler.lines] == written
    assert [json.loads(line)["chain"]["seq"] for line in handler.lines] == [0, 1, 2]
    assert [event["request_id"] for event in lines_of(fallback.getvalue())] == failed
    assert audit.stats()["sink_failures"] == 2
    assert audit.stats()["written"] == 3


async def test_a_stuck_sink_never_blocks_requests_and_nothing_is_lost() -> None:
    release = threading.Event()
    stream = io.StringIO()

    class Stuck(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            release.wait(30)
            super().emit(record)

    audit = AuditLog(handler=Stuck(stream), identity_key=KEY)
    with anyio.fail_after(10):
        ids = await send(audit, 200)
    # Every request has been answered while the sink has written nothing.
    assert stream.getvalue() == ""
    assert audit.stats()["recorded"] == 200
    release.set()
    await audit.shutdown()
    assert [event["request_id"] for event in lines_of(stream.getvalue())] == ids


async def test_lifespan_shutdown_flushes_every_event(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, identity_key=KEY)
    app = make_app(audit)
    to_app: Any
    to_app, from_test = anyio.create_memory_object_stream[dict[str, Any]](10)
    to_test, from_app = anyio.create_memory_object_stream[dict[str, Any]](10)

    async def receive() -> dict[str, Any]:
        return await from_test.receive()

    async def send_message(message: dict[str, Any]) -> None:
        await to_test.send(message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(
            app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send_message
        )
        await to_app.send({"type": "lifespan.startup"})
        assert (await from_app.receive())["type"] == "lifespan.startup.complete"
        ids = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for _ in range(50):
                ids.append((await http.post("/v1/chat", json={})).headers["x-request-id"])
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await from_app.receive())["type"] == "lifespan.shutdown.complete"
        # Written by the time shutdown completed: no waiting, no flush call.
        assert [event["request_id"] for event in lines_of(path.read_text())] == ids


async def test_events_are_flushed_at_interpreter_exit_without_lifespan(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = textwrap.dedent(
        f"""
        import anyio, httpx
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import JSONResponse
        from starlette.routing import Route
        from airlock import AirlockMiddleware, Policy
        from airlock.audit import AuditLog

        async def ok(request):
            return JSONResponse({{"ok": True}})

        audit = AuditLog(path={str(path)!r}, identity_key="x" * 32)
        app = Starlette(routes=[Route("/", ok, methods=["POST"])],
                        middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=audit))])

        async def main():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                for _ in range(500):
                    await c.post("/", json={{}})

        anyio.run(main)
        # No shutdown(), no flush(): the interpreter exits with events queued.
        """
    )
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", script], check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert len(lines_of(path.read_text())) == 500
    assert verify_files([str(path)]).ok


async def test_a_file_cut_mid_line_gets_a_newline_before_new_events(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, identity_key=KEY)
    await send(audit, 2)
    await audit.shutdown()
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:40])  # a crash mid-write
    again = AuditLog(path=path, identity_key=KEY)
    await send(again, 1)
    await again.shutdown()
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    restarted = json.loads(lines[3])["chain"]
    assert restarted["after"]["seq"] == 1
    assert verify_files([str(path)]).ok
    strict = verify_files([str(path)], strict=True)
    assert strict.failure is not None
    assert strict.failure.where == f"{path}:3"


async def test_a_late_event_after_shutdown_starts_the_writer_again(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path=path, identity_key=KEY)
    await audit.startup()
    await send(audit, 1)
    await audit.shutdown()
    await send(audit, 1)
    await audit.shutdown()
    events = lines_of(path.read_text())
    assert [event["chain"]["seq"] for event in events] == [0, 1]
    assert len({event["chain"]["id"] for event in events}) == 1
    assert verify_files([str(path)]).ok


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stream": io.StringIO(), "path": "x.log"}, "one of"),
        ({"max_bytes": 100}, "needs path"),
        ({"path": "/nonexistent-dir-airlock/a.log"}, "does not exist"),
        ({"path": "a.log", "max_bytes": 100, "backup_count": 0}, "backup_count"),
        ({"identity_key": "short"}, "at least 16 bytes"),
        ({"chain_key": "short"}, "at least 16 bytes"),
        ({"client": "full"}, "client must be"),
        ({"rename_fields": {"chain": "c"}}, "chain"),
        ({"handler": object()}, "logging.Handler"),
    ],
)
async def test_bad_configuration_is_refused_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        AuditLog(**options)


async def test_key_errors_never_echo_the_key() -> None:
    with pytest.raises(ConfigurationError) as info:
        AuditLog(chain_key="SECRET-ISH")
    assert "SECRET-ISH" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_a_forked_child_gets_its_own_writer_and_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    script = textwrap.dedent(
        f"""
        import os, warnings
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        from airlock import Context, Policy
        from airlock.audit import AuditLog

        audit = AuditLog(path={str(path)!r}, identity_key="x" * 32)

        def record(request_id):
            audit.record(Context({{"type": "http", "headers": []}}, Policy(), request_id, "/"))

        record("parent-1")
        assert audit.flush(10)
        pid = os.fork()
        if pid == 0:
            record("child-1")
            ok = audit.close(timeout=10)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        record("parent-2")
        audit.close()
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", script], check=False)
    assert result.returncode == 0, result.stderr.decode()
    events = lines_of(path.read_text())
    assert sorted(event["request_id"] for event in events) == ["child-1", "parent-1", "parent-2"]
    chains = {event["request_id"]: event["chain"]["id"] for event in events}
    assert chains["child-1"] != chains["parent-1"] == chains["parent-2"]
    assert verify_files([str(path)]).ok


@pytest.mark.usefixtures("unlock")
async def test_check_writable_names_an_unwritable_file(tmp_path: Path) -> None:
    assert AuditLog(path=tmp_path / "audit.jsonl", identity_key=KEY).check_writable() is None
    assert AuditLog(stream=io.StringIO(), identity_key=KEY).check_writable() is None
    options = read_only_file(tmp_path)
    problem = AuditLog(identity_key=KEY, **options).check_writable()
    assert problem is not None
    assert str(options["path"]) in problem


class FillingDisk(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: writes partly, then fails with ENOSPC."""

    def __init__(self, path: str, room: list[int]) -> None:
        self.file = open(path, "ab", buffering=0)  # noqa: SIM115
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.room[0] <= 0:
            raise OSError(28, "No space left on device")
        part = bytes(data[: self.room[0]])
        self.room[0] -= len(part)
        return self.file.write(part) or 0

    def close(self) -> None:
        self.file.close()
        super().close()


async def test_a_full_disk_mid_line_leaves_the_file_verifiable_once_space_is_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    room = [10**9]

    class OnFillingDisk(logging.FileHandler):
        def _open(self) -> Any:
            return io.TextIOWrapper(io.BufferedWriter(FillingDisk(self.baseFilename, room)), encoding="utf-8")

    fallback = io.StringIO()
    audit = AuditLog(handler=OnFillingDisk(str(path), delay=True), fallback=fallback, identity_key=KEY)
    before = await send(audit, 3)
    assert await anyio.to_thread.run_sync(audit.flush)
    room[0] = 150  # the next line gets cut after 150 bytes
    during = await send(audit, 3)
    assert await anyio.to_thread.run_sync(audit.flush)
    room[0] = 10**9  # space freed
    after = await send(audit, 3)
    await audit.shutdown()

    text = path.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    assert [event["request_id"] for event in events] == before + after
    assert [event["chain"]["seq"] for event in events] == list(range(6))
    assert len(text.splitlines()) == 7  # plus the line cut short, ended by a newline
    assert [event["request_id"] for event in lines_of(fallback.getvalue())] == during
    assert audit.stats()["sink_failures"] == 3
    report = verify_files([str(path)])
    assert report.ok, report.failure
    assert report.skipped == 1


async def test_a_new_chain_after_rotation_links_to_the_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rotated = tmp_path / "audit.jsonl.1"
    first = AuditLog(path=path, identity_key=KEY)
    await send(first, 3)
    await first.shutdown()
    path.rename(rotated)  # rotated by logrotate, or by a rollover just before a restart
    second = AuditLog(path=path, identity_key=KEY)
    await send(second, 2)
    await second.shutdown()

    start = lines_of(path.read_text())[0]["chain"]
    assert start["seq"] == 0
    assert start["after"]["seq"] == 2
    assert verify_files([str(rotated), str(path)]).ok
    lines = rotated.read_text().splitlines(keepends=True)
    rotated.write_text("".join(lines[:-1]))  # the old file's last line removed
    report = verify_files([str(rotated), str(path)])
    assert report.failure is not None
    assert report.failure.where == f"{path}:1"
