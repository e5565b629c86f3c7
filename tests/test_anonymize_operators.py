"""Operators (redact, mask, hash, pseudonymize), keys, the vault and the anonymize -> restore round trip."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airlock.anonymize import KEY_ENV, Anonymizer, Mask, Vault
from airlock.errors import ConfigurationError

KEY = "test-key-0123456789abcdef"
TEXT = "Mail jane@example.com or call +44 20 7946 0958, card 4111-1111-1111-1111."


def test_redact() -> None:
    result = Anonymizer(key=KEY, operators={"*": "redact"}).anonymize(TEXT)
    assert result.text == "Mail [EMAIL] or call [PHONE], card [CREDIT_CARD]."
    assert [f.entity for f in result.findings] == ["EMAIL", "PHONE", "CREDIT_CARD"]
    assert not result.vault


def test_findings_point_into_the_original_text() -> None:
    text = "x\u200b jane@example.com \uff14111 1111 1111 1111"
    result = Anonymizer(key=KEY).anonymize(text)
    assert [text[f.start : f.end] for f in result.findings] == [
        "jane@example.com",
        "\uff14111 1111 1111 1111",
    ]
    assert result.counts == {"EMAIL": 1, "CREDIT_CARD": 1}


def test_mask_keeps_last_four_digits_and_the_separators() -> None:
    anonymizer = Anonymizer(key=KEY, operators={"CREDIT_CARD": "mask"})
    assert "card ****-****-****-1111." in anonymizer.anonymize(TEXT).text
    spaced = Anonymizer(key=KEY, operators={"CREDIT_CARD": Mask(keep=2, char="#")})
    assert spaced.anonymize("4111 1111 1111 1111").text == "#### #### #### ##11"
    # Separators are not counted: the last four are digits even with a soft hyphen inside.
    assert anonymizer.anonymize("4111 1111 1111 11\u00ad11").text == "**** **** **** 1111"
    with pytest.raises(ConfigurationError):
        Mask(keep=-1)


def test_hash_is_keyed_and_stable_across_processes() -> None:
    text = "mail jane@example.com"
    here = Anonymizer(key=KEY, operators={"*": "hash"}).anonymize(text).text
    assert re.fullmatch(r"mail \[EMAIL:[0-9a-f]{16}\]", here)
    code = (
        "from airlock.anonymize import Anonymizer;"
        f"print(Anonymizer(key={KEY!r}, operators={{'*': 'hash'}}).anonymize({text!r}).text)"
    )
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert other == here
    assert Anonymizer(key="another-key-0123456789", operators={"*": "hash"}).anonymize(text).text != here


def test_pseudonyms_are_stable_for_the_same_value_and_scope() -> None:
    anonymizer = Anonymizer(key=KEY)
    first = anonymizer.anonymize("jane@example.com", scope="user:1").text
    again = Anonymizer(key=KEY).anonymize("Write to JANE@example.com", scope="user:1").text
    assert re.fullmatch(r"\[EMAIL_[0-9a-f]{8}\]", first)
    assert again == f"Write to {first}"
    assert anonymizer.anonymize("jane@example.com", scope="user:2").text != first
    assert anonymizer.anonymize("john@example.com", scope="user:1").text != first


def test_two_spellings_of_one_value_both_restore_exactly() -> None:
    text = "jane@example.com and Jane@Example.com and ja\u200bne@example.com"
    result = Anonymizer(key=KEY).anonymize(text)
    assert len(result.findings) == 3
    assert len(result.vault) == 3
    assert result.vault.restore(result.text) == text


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    from_env = Anonymizer(operators={"*": "hash"})
    assert from_env.key_is_stable
    assert from_env.anonymize(TEXT).text == Anonymizer(key=KEY, operators={"*": "hash"}).anonymize(TEXT).text


def test_without_a_key_a_random_one_is_used_and_a_warning_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="airlock.anonymize"):
        first = Anonymizer()
        second = Anonymizer()
    assert not first.key_is_stable
    assert KEY_ENV in caplog.text
    assert first.anonymize("jane@example.com").text != second.anonymize("jane@example.com").text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="airlock.anonymize"):
        Anonymizer(operators={"*": "redact"})
    assert caplog.text == ""


def test_short_key_and_unknown_operator_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        Anonymizer(key="short")
    with pytest.raises(ConfigurationError):
        Anonymizer(key=KEY, operators={"EMAIL": "shred"})


def test_vault_restore_is_case_insensitive_and_ignores_unknown_placeholders() -> None:
    result = Anonymizer(key=KEY).anonymize("jane@example.com")
    placeholder = result.text
    reply = f"I wrote to {placeholder.lower()} and {placeholder}; [EMAIL_00000000] is unknown, [EMAIL] too."
    assert result.vault.restore(reply) == (
        "I wrote to jane@example.com and jane@example.com; [EMAIL_00000000] is unknown, [EMAIL] too."
    )


def test_vault_restore_handles_regex_special_characters_in_values() -> None:
    text = r"password: a\1b$&(?x)[]{}.*+|^2 and mail x.y+z@example.com"
    anonymizer = Anonymizer(key=KEY, operators={"*": "pseudonymize"})
    result = anonymizer.anonymize(text)
    assert "[SECRET_" in result.text
    assert result.vault.restore(result.text) == text


def test_vault_pending_start_holds_only_a_placeholder_prefix() -> None:
    vault = Vault()
    vault.put("[EMAIL_1a2b3c4d]", "jane@example.com")
    assert vault.pending_start("hello [EMA") == 6
    assert vault.pending_start("hello [email_1A2") == 6
    assert vault.pending_start("hello [x") == len("hello [x")
    assert vault.pending_start("hello [EMAIL_1a2b3c4d]") == len("hello [EMAIL_1a2b3c4d]")
    assert vault.pending_start("a [b] c") == len("a [b] c")


PII = st.sampled_from(
    [
        "jane.doe@example.com",
        "+44 20 7946 0958",
        "4111 1111 1111 1111",
        "DE89 3704 0044 0532 0130 00",
        "192.168.10.20",
        "536-90-4399",
        "sk-" + "Ab1" * 16,
        "ja\u200bne@example.com",
        "\uff14111 1111 1111 1111",
    ]
)
FILLER = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


@given(st.lists(st.tuples(FILLER, PII), max_size=5), FILLER)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_property_anonymize_then_restore_gives_back_the_original(
    pairs: list[tuple[str, str]], tail: str
) -> None:
    text = "".join(f"{filler} {value} " for filler, value in pairs) + tail
    anonymizer = _ROUND_TRIP
    result = anonymizer.anonymize(text)
    assert result.vault.restore(result.text) == text
    for finding in result.findings:
        assert 0 <= finding.start < finding.end <= len(text)


_ROUND_TRIP = Anonymizer(key=KEY, operators={"*": "pseudonymize"})


def test_missing_extra_is_a_configuration_error_with_the_install_hint() -> None:
    code = (
        "import sys; sys.modules['phonenumbers'] = None\n"
        "from airlock.anonymize import Anonymizer\n"
        "try:\n    Anonymizer(key='k' * 20)\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ConfigurationError")
    assert "pip install 'asgi-airlock[anonymize]'" in out
