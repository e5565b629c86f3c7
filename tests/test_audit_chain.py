"""The hash chain and ``airlock audit verify``: altered, removed, reordered lines are named."""

from __future__ import annotations

import json
import logging
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
from airlock.cli import main

from helpers import client_for

pytestmark = pytest.mark.anyio

KEY = "identity-key-for-tests-0123456789"
CHAIN_KEY = "chain-key-for-tests-abcdefghijklmnop"


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def write_log(path: Path, count: int, **options: Any) -> None:
    audit = AuditLog(path=path, identity_key=KEY, **options)
    app = Starlette(
        routes=[Route("/", ok, methods=["POST"])],
        middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=audit))],
    )
    async with client_for(app) as http:
        for _ in range(count):
            await http.post("/", json={})
    await audit.shutdown()


def verify(*args: str) -> int:
    return main(["audit", "verify", *args])


@pytest.fixture
async def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    await write_log(path, 6)
    return path


def edit(path: Path, change: Any) -> None:
    lines = path.read_text().splitlines(keepends=True)
    change(lines)
    path.write_text("".join(lines))


async def test_an_untouched_log_verifies(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(str(log)) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 6 event(s) in 1 chain(s) (unkeyed SHA-256)")
    assert "cut from the end" in out


async def test_an_altered_line_fails_naming_it(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def alter(lines: list[str]) -> None:
        event = json.loads(lines[2])
        event["status"] = 201
        lines[2] = json.dumps(event, separators=(",", ":")) + "\n"

    edit(log, alter)
    assert verify(str(log)) == 1
    err = capsys.readouterr().err
    assert f"FAILED {log}:3: this line was altered" in err


async def test_one_changed_byte_is_caught(log: Path) -> None:
    edit(log, lambda lines: lines.__setitem__(1, lines[1].replace('"status":200', '"status":500')))
    report = verify_files([str(log)])
    assert report.failure is not None
    assert report.failure.where == f"{log}:2"


async def test_an_altered_last_line_is_caught(log: Path) -> None:
    edit(
        log,
        lambda lines: lines.__setitem__(-1, lines[-1].replace('"outcome":"allowed"', '"outcome":"error"')),
    )
    report = verify_files([str(log)])
    assert report.failure is not None
    assert report.failure.where == f"{log}:6"


async def test_a_forged_chain_in_a_keyed_log_is_caught(tmp_path: Path) -> None:
    from airlock.audit.chain import LineHasher, seal

    path = tmp_path / "audit.jsonl"
    await write_log(path, 2, chain_key=CHAIN_KEY)
    event = json.loads(path.read_text().splitlines()[0])
    event["chain"] = {
        "id": "f" * 16,
        "seq": 0,
        "prev": None,
        "alg": "hmac-sha256",
        "kid": event["chain"]["kid"],
    }
    text = json.dumps(event, separators=(",", ":"))
    wrong_key = LineHasher(b"a guessed key, not the real one")
    with path.open("a") as file:
        file.write(seal(text, wrong_key(text.encode())) + "\n")
    assert verify_files([str(path)], key=CHAIN_KEY.encode()).ok is False


async def test_a_removed_line_fails_naming_where(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(log, lambda lines: lines.pop(3))
    assert verify(str(log)) == 1
    err = capsys.readouterr().err
    assert f"{log}:4:" in err
    assert "1 line(s) missing" in err


async def test_removed_first_line_is_detected(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(log, lambda lines: lines.pop(0))
    assert verify(str(log)) == 1
    assert f"{log}:1:" in capsys.readouterr().err


async def test_reordered_lines_fail(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def swap(lines: list[str]) -> None:
        lines[2], lines[3] = lines[3], lines[2]

    edit(log, swap)
    assert verify(str(log)) == 1
    err = capsys.readouterr().err
    assert f"{log}:3:" in err
    assert "1 line(s) missing (removed or moved)" in err


async def test_a_duplicated_line_fails(log: Path) -> None:
    edit(log, lambda lines: lines.insert(3, lines[2]))
    report = verify_files([str(log)])
    assert report.failure is not None
    assert report.failure.where == f"{log}:4"
    assert "reordered or duplicated" in report.failure.message


async def test_a_line_broken_into_invalid_json_is_named(log: Path) -> None:
    edit(log, lambda lines: lines.__setitem__(2, lines[2].replace('"outcome":', '"outcome"')))
    report = verify_files([str(log)])
    assert report.failure is not None
    assert report.failure.where == f"{log}:3"


async def test_tail_truncation_is_not_detectable_from_the_file_alone(log: Path) -> None:
    # Documented limitation: compare the chain heads with an anchor kept elsewhere.
    full = verify_files([str(log)])
    edit(log, lambda lines: lines.pop())
    cut = verify_files([str(log)])
    assert cut.ok
    assert full.heads()[0][1] == 5
    assert cut.heads()[0][1] == 4


async def test_other_log_lines_on_the_same_stream_are_skipped_unless_strict(log: Path) -> None:
    edit(log, lambda lines: lines.insert(2, "INFO:     127.0.0.1:5000 - GET /healthz 200\n"))
    report = verify_files([str(log)])
    assert report.ok
    assert report.skipped == 1
    strict = verify_files([str(log)], strict=True)
    assert strict.failure is not None
    assert strict.failure.where == f"{log}:3"


async def test_keyed_chain_needs_the_key_and_refuses_a_wrong_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(path, 4, chain_key=CHAIN_KEY)
    event = json.loads(path.read_text().splitlines()[0])
    assert event["chain"]["alg"] == "hmac-sha256"
    assert len(event["chain"]["kid"]) == 8

    monkeypatch.delenv("AIRLOCK_AUDIT_CHAIN_KEY", raising=False)
    assert verify(str(path)) == 2
    assert "pass the chain key" in capsys.readouterr().err

    monkeypatch.setenv("AIRLOCK_AUDIT_CHAIN_KEY", CHAIN_KEY)
    assert verify(str(path)) == 0
    assert "keyed HMAC-SHA256" in capsys.readouterr().out

    key_file = tmp_path / "chain.key"
    key_file.write_text("a-different-chain-key-0123456789\n")
    assert verify("--key-file", str(key_file), str(path)) == 1
    assert "not chained with the given key" in capsys.readouterr().err

    key_file.write_text(CHAIN_KEY + "\n")
    monkeypatch.delenv("AIRLOCK_AUDIT_CHAIN_KEY")
    assert verify("--key-file", str(key_file), str(path)) == 0


async def test_a_keyed_log_rewritten_without_the_key_fails(tmp_path: Path) -> None:
    """Recomputing every link with plain SHA-256 is what a forger without the key can do."""
    from airlock.audit.chain import LineHasher, seal

    path = tmp_path / "audit.jsonl"
    await write_log(path, 3, chain_key=CHAIN_KEY)
    plain = LineHasher(None)
    forged, prev = [], None
    for line in path.read_text().splitlines():
        event = json.loads(line)
        event["status"] = 418
        event["chain"].update({"alg": "sha256", "prev": prev})
        del event["chain"]["kid"], event["chain"]["hash"]
        text = json.dumps(event, separators=(",", ":"))
        prev = plain(text.encode())
        forged.append(seal(text, prev) + "\n")
    path.write_text("".join(forged))
    assert verify_files([str(path)]).ok  # consistent: an unkeyed check proves little
    report = verify_files([str(path)], key=CHAIN_KEY.encode())
    assert report.failure is not None
    assert report.failure.where == f"{path}:1"


async def test_interleaved_chains_of_two_writers_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    app_logs = [AuditLog(path=path, identity_key=KEY) for _ in range(2)]
    apps = [
        Starlette(
            routes=[Route("/", ok, methods=["POST"])],
            middleware=[Middleware(AirlockMiddleware, policy=Policy(audit=audit))],
        )
        for audit in app_logs
    ]
    clients = [client_for(app) for app in apps]
    for _ in range(10):
        for audit, http in zip(app_logs, clients):
            await http.post("/", json={})
            await audit.shutdown()  # flush, so the two writers' lines interleave in the file
    for http in clients:
        await http.aclose()
    report = verify_files([str(path)])
    assert report.ok, report.failure
    assert report.events == 20
    assert len(report.chains) == 2
    ids = [json.loads(line)["chain"]["id"] for line in path.read_text().splitlines()]
    assert ids[0] != ids[1]


async def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(str(tmp_path / "nope.jsonl")) == 2
    assert "cannot read" in capsys.readouterr().err


async def test_a_chain_disabled_log_has_no_chain_member(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await write_log(path, 2, chain=False)
    assert all("chain" not in json.loads(line) for line in path.read_text().splitlines())


async def test_verify_never_prints_event_contents(
    log: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    edit(
        log, lambda lines: lines.__setitem__(2, lines[2].replace('"outcome":"allowed"', '"outcome":"MARKER"'))
    )
    with caplog.at_level(logging.DEBUG):
        assert verify(str(log)) == 1
    captured = capsys.readouterr()
    assert "MARKER" not in captured.err + captured.out + caplog.text
