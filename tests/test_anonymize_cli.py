"""`airlock anonymize` as a user runs it: text or JSON lines on stdin, anonymized on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

KEY = "test-key-0123456789abcdef"


def airlock(*args: str, stdin: str, key: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_ANONYMIZE_KEY"}
    if key:
        env["AIRLOCK_ANONYMIZE_KEY"] = KEY
    return subprocess.run(
        [sys.executable, "-m", "airlock", "anonymize", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_text_mode_redacts_line_by_line() -> None:
    result = airlock(stdin="user jane@example.com logged in from 10.1.2.3\nno data here\n")
    assert result.returncode == 0
    assert result.stdout == "user [EMAIL] logged in from [IP_ADDRESS]\nno data here\n"
    assert result.stderr == ""


def test_jsonl_mode_keeps_other_fields_and_reports_findings() -> None:
    lines = [
        json.dumps({"id": 1, "text": "card 4111 1111 1111 1111, call +44 20 7946 0958"}),
        json.dumps({"id": 2, "text": "nothing"}),
    ]
    result = airlock("--jsonl", stdin="\n".join(lines) + "\n")
    assert result.returncode == 0
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {
        "id": 1,
        "text": "card [CREDIT_CARD], call [PHONE]",
        "findings": [
            {"entity": "CREDIT_CARD", "start": 5, "end": 24, "kind": "card"},
            {"entity": "PHONE", "start": 31, "end": 47, "kind": "phone"},
        ],
    }
    assert second == {"id": 2, "text": "nothing", "findings": []}


def test_jsonl_bad_lines_are_reported_without_their_content() -> None:
    result = airlock("--jsonl", stdin='{"text": "ok"}\nsecret jane@example.com\n{"text": 5}\n')
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1
    assert "line 2" in result.stderr
    assert "line 3" in result.stderr
    assert "jane" not in result.stderr


def test_hash_operator_is_stable_with_a_key_and_entities_filter() -> None:
    text = "jane@example.com 4111 1111 1111 1111\n"
    first = airlock("--operator", "hash", "--entities", "EMAIL", stdin=text, key=True)
    second = airlock("--operator", "hash", "--entities", "EMAIL", stdin=text, key=True)
    assert first.returncode == 0
    assert first.stdout == second.stdout
    assert first.stdout.startswith("[EMAIL:")
    assert first.stdout.endswith(" 4111 1111 1111 1111\n")


def test_unknown_entity_is_a_configuration_error() -> None:
    result = airlock("--entities", "PASSPORT", stdin="x")
    assert result.returncode == 2
    assert "unknown entity" in result.stderr


def test_undecodable_bytes_pass_through_unchanged() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airlock", "anonymize"],
        input=b"bad \xff byte jane@example.com\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == b"bad \xff byte [EMAIL]\n"
