"""Restoring pseudonyms in replies: JSON, SSE split across events and chunks, plain text, others untouched."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airlock.anonymize import Anonymizer, RestoreFilter, Vault

KEY = "test-key-0123456789abcdef"
ORIGINAL = 'Jane "J" O\'Brien <jane.obrien@example.com>'


@pytest.fixture
def vault_and_placeholder() -> tuple[Vault, str]:
    result = Anonymizer(key=KEY).anonymize("jane.obrien@example.com")
    vault = result.vault
    return vault, result.text


def started(vault: Vault, media: bytes) -> RestoreFilter:
    restore = RestoreFilter(vault)
    assert restore.begin(200, [(b"content-type", media)])
    return restore


def test_json_body_gets_escaped_originals(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault = Vault()
    vault.put("[NAME_0123abcd]", ORIGINAL)
    restore = started(vault, b"application/json; charset=utf-8")
    body = json.dumps({"choices": [{"message": {"content": "Hello [NAME_0123abcd]!"}}]}).encode()
    out = restore.feed(body[:30]) + restore.feed(body[30:]) + restore.flush()
    assert json.loads(out)["choices"][0]["message"]["content"] == f"Hello {ORIGINAL}!"


def test_json_placeholder_split_across_chunks(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault, placeholder = vault_and_placeholder
    body = json.dumps({"content": f"write to {placeholder} today"}).encode()
    cut = body.index(b"[") + 5
    restore = started(vault, b"application/json")
    first = restore.feed(body[:cut])
    assert first == body[: body.index(b"[")]  # only the placeholder's start is held back
    out = first + restore.feed(body[cut:]) + restore.flush()
    assert json.loads(out) == {"content": "write to jane.obrien@example.com today"}


def test_text_plain_and_held_tail_that_is_not_a_placeholder(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault, placeholder = vault_and_placeholder
    restore = started(vault, b"text/plain")
    assert restore.feed(b"see [EMA") == b"see "
    assert restore.feed(b"ZING]") == b"[EMAZING]"
    assert restore.feed(f"mail {placeholder}".encode()) == b"mail jane.obrien@example.com"
    assert restore.feed(b" end [EMAIL_") == b" end "
    assert restore.flush() == b"[EMAIL_"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"application/octet-stream")],
        [(b"content-type", b"image/png")],
        [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")],
        [],
    ],
)
def test_other_media_types_are_not_touched(vault_and_placeholder: tuple[Vault, str], headers: list) -> None:
    vault, _ = vault_and_placeholder
    assert RestoreFilter(vault).begin(200, headers) is False


def test_empty_vault_needs_no_filter() -> None:
    assert RestoreFilter(Vault()).begin(200, [(b"content-type", b"application/json")]) is False


def sse(content: str, index: int = 0) -> bytes:
    event = {"id": "c1", "choices": [{"index": index, "delta": {"content": content}, "finish_reason": None}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def contents(stream: bytes) -> str:
    text = ""
    for line in stream.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content", "")
    return text


def test_sse_placeholder_split_across_events_and_chunks(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault, placeholder = vault_and_placeholder
    tokens = ["Sure, I wrote to ", placeholder[:3], placeholder[3:9], placeholder[9:], " just now."]
    stream = b"".join(sse(token) for token in tokens) + b"data: [DONE]\n\n"
    restore = started(vault, b"text/event-stream")
    outputs = []
    # Feed in awkward 7-byte chunks: lines and events are split everywhere.
    for start in range(0, len(stream), 7):
        outputs.append(restore.feed(stream[start : start + 7]))
    outputs.append(restore.flush())
    out = b"".join(outputs)
    assert contents(out) == "Sure, I wrote to jane.obrien@example.com just now."
    assert placeholder.encode() not in out
    assert out.endswith(b"data: [DONE]\n\n")
    # Never the whole stream: the first event is out before the placeholder even starts.
    assert b"Sure, I wrote to" in b"".join(outputs[: len(sse(tokens[0])) // 7 + 2])


def test_sse_unfinished_placeholder_prefix_is_released_at_done(
    vault_and_placeholder: tuple[Vault, str],
) -> None:
    vault, _ = vault_and_placeholder
    stream = sse("the list [EMA") + sse("") + b"data: [DONE]\n\n"
    restore = started(vault, b"text/event-stream")
    out = restore.feed(stream) + restore.flush()
    assert contents(out) == "the list [EMA"
    assert out.endswith(b"data: [DONE]\n\n")


def test_sse_non_json_data_comments_and_events_pass(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault, placeholder = vault_and_placeholder
    stream = f": keep-alive\nevent: note\ndata: plain {placeholder}\n\n".encode() + sse("no placeholder here")
    restore = started(vault, b"text/event-stream")
    out = restore.feed(stream) + restore.flush()
    assert out.startswith(b": keep-alive\nevent: note\ndata: plain jane.obrien@example.com\n\n")
    assert out.endswith(sse("no placeholder here"))  # untouched events are byte-identical


def test_sse_parallel_choices_keep_their_own_tails(vault_and_placeholder: tuple[Vault, str]) -> None:
    vault, placeholder = vault_and_placeholder
    restore = started(vault, b"text/event-stream")
    out = restore.feed(sse("A " + placeholder[:5], 0) + sse("B " + placeholder[:8], 1))
    out += restore.feed(sse(placeholder[5:], 0) + sse(placeholder[8:], 1)) + restore.flush()
    per_choice: dict[int, str] = {}
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                per_choice[choice["index"]] = per_choice.get(choice["index"], "") + choice["delta"]["content"]
    assert per_choice == {0: "A jane.obrien@example.com", 1: "B jane.obrien@example.com"}


@given(
    st.lists(st.integers(min_value=1, max_value=400), max_size=12), st.sampled_from(["sse", "json", "text"])
)
@settings(max_examples=200, deadline=None)
def test_property_any_chunking_restores_the_same(cuts: list[int], mode: str) -> None:
    result = Anonymizer(key=KEY).anonymize("mail jane.obrien@example.com or +44 20 7946 0958 [x")
    vault, placeholder_text = result.vault, result.text
    if mode == "sse":
        tokens = [placeholder_text[i : i + 3] for i in range(0, len(placeholder_text), 3)]
        body, media = b"".join(sse(t) for t in tokens) + b"data: [DONE]\n\n", b"text/event-stream"
    elif mode == "json":
        body, media = json.dumps({"content": placeholder_text}).encode(), b"application/json"
    else:
        body, media = placeholder_text.encode(), b"text/plain"
    restore = started(vault, media)
    positions = sorted({c % (len(body) + 1) for c in cuts})
    out = b""
    previous = 0
    for position in [*positions, len(body)]:
        out += restore.feed(body[previous:position])
        previous = position
    out += restore.flush()
    expected = "mail jane.obrien@example.com or +44 20 7946 0958 [x"
    if mode == "sse":
        assert contents(out) == expected
    elif mode == "json":
        assert json.loads(out) == {"content": expected}
    else:
        assert out.decode() == expected
