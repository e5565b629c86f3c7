"""Sanitisation: each character class, normalisation, HTML, bidi flag/refuse, what the app receives."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Policy
from airlock.sanitize import CHARACTER_CLASSES, Sanitize, strip_scripts, strip_tags
from airlock.validation import Validate

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def echo(request: Request) -> Response:
    raw = await request.body()
    # json.dumps escapes non-ASCII, so a lone surrogate can be echoed back too.
    return Response(
        json.dumps({"raw": raw.decode("utf-8"), "received": json.loads(raw)}), media_type="application/json"
    )


async def post_raw(sink: RecordingSink, sanitize: Any, body: bytes, **policy: Any) -> Any:
    app = AirlockMiddleware(
        Starlette(routes=[Route("/", echo, methods=["POST"])]),
        policy=Policy(sanitize=sanitize, audit=sink, **policy),
    )
    async with client_for(app) as client:
        return await client.post("/", content=body, headers={"content-type": "application/json"})


async def post(sink: RecordingSink, sanitize: Any, document: Any, **policy: Any) -> Any:
    return await post_raw(sink, sanitize, json.dumps(document).encode(), **policy)


def chat(text: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


CLASS_SAMPLES = [
    ("zero_width", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u3164"]),
    ("bidi", ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]),
    ("bidi_mark", ["\u200e", "\u200f", "\u061c"]),
    ("tag", ["\U000e0001", "\U000e0041", "\U000e007f"]),
    ("variation_selector", ["\ufe00", "\ufe0f", "\U000e0100", "\U000e01ef", "\u180b"]),
    ("control", ["\x00", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f"]),
]


@pytest.mark.parametrize(("name", "chars"), CLASS_SAMPLES, ids=[n for n, _ in CLASS_SAMPLES])
async def test_each_character_class_is_removed_and_counted(
    sink: RecordingSink, name: str, chars: list[str]
) -> None:
    text = "a" + "b".join(chars) + "c"
    response = await post(sink, Sanitize(), chat(text))
    assert response.status_code == 200
    assert response.json()["received"]["messages"][0]["content"] == "a" + "b" * (len(chars) - 1) + "c"
    facts = sink.events[0].audit["sanitize"]
    assert facts["removed"] == {name: len(chars)}
    assert facts["changed"] == 1


async def test_lone_surrogates_are_removed_so_the_body_can_be_re_encoded(sink: RecordingSink) -> None:
    body = b'{"model":"m","messages":[{"role":"user","content":"a\\ud800b\\udfffc"}]}'
    response = await post_raw(sink, Sanitize(), body)
    assert response.status_code == 200
    assert response.json()["received"]["messages"][0]["content"] == "abc"
    assert sink.events[0].audit["sanitize"]["removed"] == {"surrogate": 2}


async def test_newlines_tabs_and_visible_text_are_kept(sink: RecordingSink) -> None:
    text = "line one\nline two\r\n\tindented\u2028next paragraph\u2029 café 日本語 👩‍💻"
    response = await post(sink, Sanitize(remove=("control", "bidi", "tag")), chat(text))
    assert response.json()["received"]["messages"][0]["content"] == text
    # A clean document is forwarded byte for byte, not re-serialised.
    assert response.json()["raw"] == json.dumps(chat(text))
    assert sink.events[0].audit["sanitize"] == {"changed": 0}


async def test_text_parts_are_cleaned_and_other_fields_left_alone(sink: RecordingSink) -> None:
    document = {
        "model": "m\u200b",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi\u200bthere"}, {"type": "image_url"}]},
            {"role": "assistant", "content": "ok\u2060"},
        ],
    }
    received = (await post(sink, Sanitize(), document)).json()["received"]
    assert received["model"] == "m\u200b"
    assert received["messages"][0]["content"][0]["text"] == "hithere"
    assert received["messages"][1]["content"] == "ok"
    assert sink.events[0].audit["sanitize"] == {"changed": 2, "removed": {"zero_width": 2}}


async def test_responses_and_embeddings_text_is_cleaned_by_default(sink: RecordingSink) -> None:
    responses = {
        "model": "m",
        "instructions": "be\u200b nice",
        "input": [{"role": "user", "content": "x\u200by"}],
    }
    received = (await post(sink, Sanitize(), responses)).json()["received"]
    assert received["instructions"] == "be nice"
    assert received["input"][0]["content"] == "xy"
    embeddings = {"model": "m", "input": ["a\u200bb", "c"]}
    assert (await post(sink, Sanitize(), embeddings)).json()["received"]["input"] == ["ab", "c"]


async def test_custom_fields(sink: RecordingSink) -> None:
    document = {"question": "wh\u200by", "notes": ["a\u200b", "b"], "messages": [{"content": "k\u200b"}]}
    received = (await post(sink, Sanitize(fields=["question", "notes[*]"]), document)).json()["received"]
    assert received == {"question": "why", "notes": ["a", "b"], "messages": [{"content": "k\u200b"}]}


@pytest.mark.parametrize(
    ("form", "text", "expected"),
    [
        ("NFC", "e\u0301", "\u00e9"),
        ("NFC", "\uff21\ufb01", "\uff21\ufb01"),  # NFC keeps compatibility characters
        ("NFKC", "\uff21\ufb01", "Afi"),
        ("NFKC", "e\u0301", "\u00e9"),
        (None, "e\u0301", "e\u0301"),
    ],
)
async def test_normalisation(sink: RecordingSink, form: Any, text: str, expected: str) -> None:
    received = (await post(sink, Sanitize(normalize=form), chat(text))).json()["received"]
    assert received["messages"][0]["content"] == expected
    assert sink.events[0].audit["sanitize"].get("normalized", 0) == int(text != expected)


async def test_removal_happens_before_normalisation(sink: RecordingSink) -> None:
    # A zero-width space between a letter and its accent hides the composition from NFC.
    received = (await post(sink, Sanitize(), chat("e\u200b\u0301"))).json()["received"]
    assert received["messages"][0]["content"] == "\u00e9"


async def test_html_is_kept_by_default_and_stripped_on_request(sink: RecordingSink) -> None:
    text = "Hi <b>there</b><script>steal()</script><!-- hidden -->!"
    kept = (await post(sink, Sanitize(), chat(text))).json()["received"]
    assert kept["messages"][0]["content"] == text
    scripts = (await post(sink, Sanitize(html="strip_scripts"), chat(text))).json()["received"]
    assert scripts["messages"][0]["content"] == "Hi <b>there</b><!-- hidden -->!"
    assert sink.events[-1].audit["sanitize"]["html_removed"] == 1
    tags = (await post(sink, Sanitize(html="strip_tags"), chat(text))).json()["received"]
    assert tags["messages"][0]["content"] == "Hi there!"
    assert sink.events[-1].audit["sanitize"]["html_removed"] == 4


def test_script_stripping_edge_cases() -> None:
    assert strip_scripts("a<SCRIPT type=x>1</script >b") == ("ab", 1)
    assert strip_scripts("a<style>p{}</STYLE>b<script>never closed") == ("ab", 2)
    assert strip_scripts("<scripts> are fine") == ("<scripts> are fine", 0)
    assert strip_scripts("a<script src=x></script") == ("a", 1)
    assert strip_tags("x<!-- never closed") == ("x", 1)
    assert strip_tags("<p class='a'>para</p><br/><!DOCTYPE html>") == ("para", 4)
    assert strip_tags("3 < 4 and 5 > 2") == ("3 < 4 and 5 > 2", 0)


def test_html_stripping_stays_linear_on_hostile_input() -> None:
    # Each of these made a naive regex backtrack quadratically.
    for hostile in ("<script " * 50_000, "</script<script" * 50_000, "<a" * 100_000, "<!--" * 50_000):
        strip_tags(hostile)


async def test_bidi_controls_are_flagged(sink: RecordingSink) -> None:
    text = "access = \u202euser\u2066 admin"
    response = await post(sink, Sanitize(), chat(text))
    assert response.json()["received"]["messages"][0]["content"] == "access = user admin"
    assert sink.events[0].audit["sanitize"]["flags"] == ["bidi"]
    # Flagged even when the class is not removed.
    response = await post(sink, Sanitize(remove=("zero_width",)), chat(text))
    assert response.json()["received"]["messages"][0]["content"] == text
    assert sink.events[1].audit["sanitize"]["flags"] == ["bidi"]


async def test_bidi_controls_can_be_refused(sink: RecordingSink) -> None:
    marker = "MRKbidi55"
    response = await post(sink, Sanitize(refuse_bidi=True), chat(f"{marker}\u202e{marker}"))
    assert response.status_code == 422
    assert response.json()["code"] == "bidi_override"
    assert response.headers["content-type"] == "application/problem+json"
    assert marker not in response.text
    assert sink.events[0].stage == "sanitize"
    assert sink.events[0].audit["sanitize"]["flags"] == ["bidi"]
    clean = await post(sink, Sanitize(refuse_bidi=True), chat("plain \u200f text"))
    assert clean.status_code == 200


async def test_sanitize_runs_after_validate_and_both_record_facts(sink: RecordingSink) -> None:
    response = await post(sink, Sanitize(), chat("a\u200bb"), validate=Validate(preset="openai-chat"))
    assert response.status_code == 200
    audit = sink.events[0].audit
    assert audit["validation"]["errors"] == 0
    assert audit["sanitize"]["removed"] == {"zero_width": 1}


def test_options_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        Sanitize(normalize="NFD")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Sanitize(html="strip")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Sanitize(remove=("emoji",))
    with pytest.raises(ConfigurationError):
        Sanitize(fields=["messages[*"])


def test_clean_helper_reports_the_same_facts() -> None:
    text, facts = Sanitize().clean("a\u200b\u200bb\x00")
    assert text == "ab"
    assert facts == {"changed": 1, "removed": {"control": 1, "zero_width": 2}}


def test_classes_cover_every_invisible_format_character() -> None:
    covered = {c for ranges in CHARACTER_CLASSES.values() for lo, hi in ranges for c in range(lo, hi + 1)}
    # Format characters left alone are visible marks: Arabic number signs and similar
    # prepended concatenation marks, and Egyptian hieroglyph layout controls.
    visible = {0x0600, 0x0601, 0x0602, 0x0603, 0x0604, 0x0605, 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2}
    visible |= {0x110BD, 0x110CD, *range(0x13430, 0x13440)}
    for code in range(0x110000):
        category = unicodedata.category(chr(code))
        if category == "Cf" and code not in visible:
            assert code in covered, hex(code)
        if category == "Cc" and chr(code) not in "\t\n\r":
            assert code in covered, hex(code)
    assert not {0x09, 0x0A, 0x0D, 0x2028, 0x2029, 0x20} & covered


async def test_lone_surrogate_outside_the_text_fields_is_forwarded_escaped(sink: RecordingSink) -> None:
    # Sanitising changes the document, so the engine re-serialises it: a surrogate left in
    # another field must not turn that into a 500.
    body = b'{"model":"m\\ud800","messages":[{"role":"user","content":"a\\u200bb"}]}'
    response = await post_raw(sink, Sanitize(), body)
    assert response.status_code == 200
    assert '"model":"m\\ud800"' in response.json()["raw"]
    assert response.json()["received"]["messages"][0]["content"] == "ab"
