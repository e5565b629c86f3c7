"""Custom Cerberus schemas: 422 bodies (paths and rules, never values), files, rules, types,
normalisation, the Cerberus fallback, and what the handler and the audit event see."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from airlock import AirlockMiddleware, ConfigurationError, Context, Policy
from airlock.validation import Schema, Validate, load_schema, register_rule, register_type

from helpers import RecordingSink, client_for

pytestmark = pytest.mark.anyio


async def handler(request: Request) -> JSONResponse:
    ctx: Context = request.state.airlock
    body = json.loads(await request.body())
    return JSONResponse({"received": body, "token_estimate": ctx.token_estimate})


def make_app(sink: RecordingSink, validate: Any) -> AirlockMiddleware:
    app = Starlette(routes=[Route("/", handler, methods=["POST"])])
    return AirlockMiddleware(app, policy=Policy(validate=validate, audit=sink))


ASK = {
    "question": {"type": "string", "required": True, "maxlength": 20},
    "lang": {"type": "string", "allowed": ["en", "fr"]},
    "tags": {"type": "list", "maxlength": 2, "schema": {"type": "string"}},
    "meta": {"type": "dict", "schema": {"source": {"type": "string", "required": True}}},
}


async def test_valid_document_reaches_the_handler_unchanged(sink: RecordingSink) -> None:
    document = {"question": "Why?", "lang": "en", "tags": ["a"], "meta": {"source": "web"}}
    async with client_for(make_app(sink, Validate(schema=ASK))) as client:
        response = await client.post("/", json=document)
    assert response.status_code == 200
    assert response.json()["received"] == document
    assert sink.events[0].audit["validation"] == {
        "schema": "custom",
        "compiled": True,
        "errors": 0,
        "token_estimate": response.json()["token_estimate"],
    }


async def test_errors_list_paths_and_rules(sink: RecordingSink) -> None:
    document = {"lang": "de", "tags": ["a", 3, "c"], "meta": {}, "extra": 1}
    async with client_for(make_app(sink, Validate(schema=ASK))) as client:
        response = await client.post("/", json=document)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert body["errors"] == [
        {"path": "extra", "rule": "unknown"},
        {"path": "lang", "rule": "allowed"},
        {"path": "meta.source", "rule": "required"},
        {"path": "question", "rule": "required"},
        {"path": "tags", "rule": "maxlength"},
        {"path": "tags.1", "rule": "type"},
    ]
    assert body["error_count"] == 6
    facts = sink.events[0].audit["validation"]
    assert facts["errors"] == 6
    assert facts["rules"] == ["allowed", "maxlength", "required", "type", "unknown"]


async def test_no_submitted_value_appears_in_the_problem_or_the_audit(sink: RecordingSink) -> None:
    marker = "MRK7f3a9c"
    schema = {
        "name": {"type": "string", "maxlength": 3, "regex": "[a-z]+"},
        "kind": {"type": "string", "allowed": ["a"]},
        "count": {"type": "integer", "max": 1},
        "items": {"type": "list", "schema": {"type": "dict", "schema": {"v": {"type": "integer"}}}},
        "map": {"type": "dict", "keysrules": {"regex": "[a-z]+"}, "valuesrules": {"type": "integer"}},
    }
    document = {
        "name": marker,
        "kind": marker,
        "count": marker,
        "items": [{"v": marker}, marker],
        "map": {"ok": marker, f"{marker}@example.com": 1, f"1-{marker}": 2},
        "extra_field": marker,
        f"{marker} with spaces": marker,
    }
    async with client_for(make_app(sink, Validate(schema=schema))) as client:
        response = await client.post("/", json=document)
    assert response.status_code == 422
    assert marker not in response.text
    assert marker not in json.dumps(sink.events[0].audit)
    assert marker not in repr(sink.events[0].problem)
    paths = {error["path"] for error in response.json()["errors"]}
    # Keys the client chose are shown only when they look like field names; others are masked.
    assert {"extra_field", "*", "map.ok", "map.*", "items.0.v", "items.1", "name", "kind", "count"} <= paths


async def test_non_object_documents_are_refused(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, Validate(schema=ASK))) as client:
        response = await client.post("/", json=["question"])
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "", "rule": "type"}]


async def test_error_list_is_truncated_but_counted(sink: RecordingSink) -> None:
    schema = {"items": {"type": "list", "schema": {"type": "integer"}}}
    async with client_for(make_app(sink, Validate(schema=schema, max_errors=3))) as client:
        response = await client.post("/", json={"items": ["x"] * 50})
    body = response.json()
    assert len(body["errors"]) == 3
    assert body["error_count"] == 50


async def test_unknown_fields_can_be_allowed(sink: RecordingSink) -> None:
    async with client_for(make_app(sink, Validate(schema=ASK, allow_unknown=True))) as client:
        response = await client.post("/", json={"question": "q", "anything": [1]})
    assert response.status_code == 200


async def test_schema_from_json_and_yaml_files(sink: RecordingSink, tmp_path: Path) -> None:
    (tmp_path / "ask.json").write_text(json.dumps(ASK))
    (tmp_path / "ask.yaml").write_text(
        "question: {type: string, required: true, maxlength: 20}\nlang: {type: string, allowed: [en, fr]}\n"
    )
    for name in ("ask.json", "ask.yaml"):
        app = make_app(sink, Validate.from_file(tmp_path / name))
        async with client_for(app) as client:
            good = await client.post("/", json={"question": "q", "lang": "fr"})
            bad = await client.post("/", json={"question": "q", "lang": "xx"})
        assert good.status_code == 200, name
        assert bad.json()["errors"] == [{"path": "lang", "rule": "allowed"}], name


def test_bad_schema_files_fail_at_start_up(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "broken.yaml").write_text("a: [")
    (tmp_path / "schema.txt").write_text("{}")
    for name in ("list.json", "broken.yaml", "schema.txt", "missing.json"):
        with pytest.raises(ConfigurationError):
            load_schema(tmp_path / name)


def test_invalid_schemas_and_options_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="invalid Cerberus schema"):
        Validate(schema={"a": {"type": "no-such-type"}})
    with pytest.raises(ConfigurationError):
        Validate(schema={"a": {"maxlength": "ten"}})
    with pytest.raises(ConfigurationError):
        Validate(preset="openai-chat", schema=ASK)
    with pytest.raises(ConfigurationError):
        Validate(schema=ASK, max_messages=3)
    with pytest.raises(ConfigurationError):
        Validate(preset="no-such-preset")
    with pytest.raises(ConfigurationError):
        Validate(schema=ASK, max_prompt_tokens=0)


def test_the_callers_schema_is_not_modified() -> None:
    schema = {
        "a": {
            "type": "list",
            "schema": {"type": "dict", "schema": {"b": {"anyof_type": ["string", "integer"]}}},
        }
    }
    before = json.dumps(schema, sort_keys=True)
    Schema(schema)
    assert json.dumps(schema, sort_keys=True) == before


register_rule("no_urls", lambda on, value: not (on and isinstance(value, str) and "://" in value))
register_type("short_text", str)


async def test_registered_rules_and_types_work_in_any_schema(sink: RecordingSink) -> None:
    first = Validate(schema={"text": {"type": "short_text", "no_urls": True}})
    second = Validate(schema={"note": {"type": "list", "schema": {"no_urls": True}}})
    assert first.schema is not None
    assert first.schema.compiled
    async with client_for(make_app(sink, first)) as client:
        assert (await client.post("/", json={"text": "hello"})).status_code == 200
        response = await client.post("/", json={"text": "see https://x.example"})
        assert response.json()["errors"] == [{"path": "text", "rule": "no_urls"}]
        response = await client.post("/", json={"text": 3})
        assert response.json()["errors"] == [{"path": "text", "rule": "type"}]
    async with client_for(make_app(sink, second)) as client:
        response = await client.post("/", json={"note": ["ok", "ftp://x"]})
        assert response.json()["errors"] == [{"path": "note.1", "rule": "no_urls"}]


def test_rule_and_type_registration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        register_rule("maxlength", lambda c, v: True)  # a Cerberus rule
    with pytest.raises(ConfigurationError):
        register_rule("Bad-Name", lambda c, v: True)
    with pytest.raises(ConfigurationError):
        register_rule("no_urls", lambda c, v: False)  # taken, by a different check
    with pytest.raises(ConfigurationError):
        register_type("string", str)
    with pytest.raises(ConfigurationError):
        register_type("thing", "str")  # type: ignore[arg-type]


async def test_schema_outside_the_compiled_rules_runs_on_cerberus(sink: RecordingSink) -> None:
    schema = {"value": {"anyof": [{"type": "integer"}, {"type": "string", "maxlength": 2}]}}
    validate = Validate(schema=schema)
    assert validate.schema is not None
    assert not validate.schema.compiled
    async with client_for(make_app(sink, validate)) as client:
        assert (await client.post("/", json={"value": 5})).status_code == 200
        response = await client.post("/", json={"value": "long"})
    assert response.json()["errors"] == [{"path": "value", "rule": "anyof"}]
    assert sink.events[-1].audit["validation"]["compiled"] is False


async def test_normalising_schema_forwards_the_normalised_document(sink: RecordingSink) -> None:
    schema = {
        "lang": {"type": "string", "default": "en"},
        "count": {"type": "integer", "coerce": int},
    }
    async with client_for(make_app(sink, Validate(schema=schema))) as client:
        response = await client.post("/", json={"count": "3"})
    assert response.status_code == 200
    assert response.json()["received"] == {"count": 3, "lang": "en"}


async def test_cerberus_crash_on_odd_input_is_a_422(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    marker = "MRKcrash42"
    # Cerberus builds a set of the list to check "forbidden": unhashable items raise.
    schema = {"tags": {"type": "list", "forbidden": ["x"]}}
    caplog.set_level(logging.WARNING)
    async with client_for(make_app(sink, Validate(schema=schema))) as client:
        response = await client.post("/", json={"tags": [{"k": marker}]})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"path": "", "rule": "invalid"}]
    assert marker not in caplog.text


def test_compiled_and_plain_paths_agree_on_a_simple_case() -> None:
    schema = Schema(ASK)
    plain = Schema(ASK, compiled=False)
    assert schema.compiled
    assert not plain.compiled
    document = {"question": 5, "tags": [1]}
    assert sorted(schema.validate(document).errors) == sorted(plain.validate(document).errors)


def test_yaml_schema_without_pyyaml_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    (tmp_path / "ask.yaml").write_text("question: {type: string}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes "import yaml" fail
    with pytest.raises(ConfigurationError, match=r"asgi-airlock\[yaml\]"):
        Validate.from_file(tmp_path / "ask.yaml")
