"""Each detector: values it must find, look-alikes it must leave alone, and evasion tricks."""

from __future__ import annotations

import re

import pytest

from airlock.anonymize import Anonymizer, PatternDetector
from airlock.errors import ConfigurationError

KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def anonymizer() -> Anonymizer:
    return Anonymizer(key=KEY)


def found(anonymizer: Anonymizer, text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in anonymizer.detect(text)]


POSITIVES = [
    ("EMAIL", "jane.doe@example.com"),
    ("EMAIL", "o'brien+billing@mail.example.co.uk"),
    ("EMAIL", "müller@beispiel.de"),
    ("PHONE", "+1 415-555-2671"),
    ("PHONE", "(415) 555-2671"),
    ("PHONE", "415.555.2671"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "020 7946 0958"),
    ("PHONE", "+49 30 12345678"),
    ("PHONE", "030 12345678"),
    ("PHONE", "01 23 45 67 89"),
    ("PHONE", "0044 20 7946 0958"),
    ("PHONE", "+91 98765 43210"),
    ("CREDIT_CARD", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "4111-1111-1111-1111"),
    ("CREDIT_CARD", "5500000000000004"),
    ("CREDIT_CARD", "3782 822463 10005"),
    ("CREDIT_CARD", "6011000990139424"),
    ("CREDIT_CARD", "4222222222222"),
    ("IBAN", "DE89370400440532013000"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "gb82 west 1234 5698 7654 32"),
    ("IBAN", "FR1420041010050500013M02606"),
    ("IP_ADDRESS", "192.168.1.20"),
    ("IP_ADDRESS", "8.8.8.8"),
    ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ("IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    ("US_SSN", "536-90-4399"),
    ("US_SSN", "536 90 4399"),
]


@pytest.mark.parametrize(("entity", "value"), POSITIVES)
def test_finds_value_in_a_sentence(anonymizer: Anonymizer, entity: str, value: str) -> None:
    text = f"Hi, here it is: {value}. Thanks!"
    assert found(anonymizer, text) == [(entity, value)]


SECRETS = [
    "sk-" + "Ab1" * 16,
    "sk-proj-" + "Xy9_-Qw3" * 15,
    "sk-svcacct-" + "Ab3dEf9hIj" * 5,
    "sk-ant-api03-" + "aB3_" * 23 + "AA",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_" + "a1B2c3D4e5" * 3 + "F6g7H8",
    "github_pat_11ABCDEFG0" + "abcdefghij1234567890" * 3,
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_finds_provider_keys_and_tokens(anonymizer: Anonymizer, secret: str) -> None:
    text = f"my key is {secret} please help"
    assert found(anonymizer, text) == [("SECRET", secret)]


def test_aws_secret_key_after_its_name(anonymizer: Anonymizer) -> None:
    value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = f"aws_secret_access_key = {value}\n"
    assert found(anonymizer, text) == [("SECRET", value)]


def test_password_in_url_only_the_password(anonymizer: Anonymizer) -> None:
    text = "connect to postgres://app:S3cr3t!pw@db.internal:5432/prod now"
    assert found(anonymizer, text) == [("SECRET", "S3cr3t!pw")]


def test_pem_private_key_block(anonymizer: Anonymizer) -> None:
    block = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234567890abcdef\n"
        "QWERTYuiop0987654321zz==\n-----END RSA PRIVATE KEY-----"
    )
    text = f"key:\n{block}\nthanks"
    assert found(anonymizer, text) == [("SECRET", block)]


def test_truncated_pem_block_is_still_found(anonymizer: Anonymizer) -> None:
    text = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAAABAAABlwAAAAdzc2gtcn\n"
    )
    ((entity, value),) = found(anonymizer, text)
    assert entity == "SECRET"
    assert "AAAAAAAABAAABlwAAAAdzc2gtcn" in value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("password: hunter2!", "hunter2!"),
        ('"api_key": "a8F3kQ9zLm2XvB7nR4tY"', "a8F3kQ9zLm2XvB7nR4tY"),
        ("the token is Zx81Kq0PmWn3Vb6Tr9Ys", "Zx81Kq0PmWn3Vb6Tr9Ys"),
        ("Authorization: Bearer abcDEF123456ghiJKL789", "abcDEF123456ghiJKL789"),
    ],
)
def test_generic_secret_next_to_key_like_word(anonymizer: Anonymizer, text: str, value: str) -> None:
    assert ("SECRET", value) in found(anonymizer, text)


HARD_NEGATIVES = [
    "Parcel 4111 1111 1111 1112 is late.",  # Luhn-invalid
    "Reference 1234567890123456 is not a card.",
    "The old account DE89370400440532013001 was closed.",  # mod-97 fails
    "Request 123e4567-e89b-12d3-a456-426614174000 failed.",  # UUID
    "ISBN 978-3-16-148410-0 is out of print.",
    "Started at 2024-01-15 10:30:00 and 2024-01-15T10:30:00Z.",
    "Epoch 1700000000 and 1700000000123 in ms.",
    "Upgrade to v2.14.3, then 10.2.1-rc.1.",
    "SSN-like 000-12-3456, 666-12-3456 and 900-12-3456 are never issued.",
    "Order #12345678 shipped in 3 boxes.",
    "We use sk-learn and scikit-learn-intelex here.",
    "The password field must not be empty and the token expires after an hour.",
    "Commit 3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a reverted it.",
    "std::vector and a::b are C++ names, 10:30:00 is a time.",
    "Price 1,234,567.89 EUR, pi is 3.14159265358979.",
    "email at example dot com, or user@localhost",
    "max_tokens=4096 temperature=0.7",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives_are_left_alone(anonymizer: Anonymizer, text: str) -> None:
    assert found(anonymizer, text) == []


def test_nine_bare_digits_are_an_ssn_only_after_a_context_word(anonymizer: Anonymizer) -> None:
    assert found(anonymizer, "order 536904399 shipped") == []
    assert found(anonymizer, "my SSN: 536904399") == [("US_SSN", "536904399")]


def test_two_numbers_side_by_side_are_not_glued(anonymizer: Anonymizer) -> None:
    text = "cards 4111 1111 1111 1111 5500 0000 0000 0004 end"
    assert found(anonymizer, text) == [
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("CREDIT_CARD", "5500 0000 0000 0004"),
    ]


def test_phone_regions_are_configurable() -> None:
    text = "ruf an: 030 12345678"
    assert found(Anonymizer(key=KEY, phone_regions=["US"]), text) == []
    assert found(Anonymizer(key=KEY, phone_regions=["DE"]), text) == [("PHONE", "030 12345678")]
    with pytest.raises(ConfigurationError):
        Anonymizer(key=KEY, phone_regions=["XX"])


def test_entity_selection() -> None:
    only_email = Anonymizer(key=KEY, entities=["EMAIL"])
    assert found(only_email, "a@example.com 4111 1111 1111 1111") == [("EMAIL", "a@example.com")]
    with pytest.raises(ConfigurationError):
        Anonymizer(key=KEY, entities=["PASSPORT"])


def test_custom_detector_with_validator() -> None:
    detector = PatternDetector("EMPLOYEE_ID", r"\bEMP-(\d{6})\b", group=1, validator=lambda v: v[0] != "0")
    anonymizer = Anonymizer(key=KEY, detectors=[detector])
    assert found(anonymizer, "ids EMP-123456 and EMP-012345") == [("EMPLOYEE_ID", "123456")]
    with pytest.raises(ConfigurationError):
        PatternDetector("employee", r"x")
    with pytest.raises(ConfigurationError):
        PatternDetector("EMPLOYEE_ID", r"(")


def test_allow_and_deny_lists() -> None:
    anonymizer = Anonymizer(
        key=KEY, allow=["support@example.com"], deny={"PROJECT": ["Blue Harbor", "Falcon"]}
    )
    text = "Write to SUPPORT@example.com or jane@example.com about blue harbor (not Falconry) and FALCON."
    assert found(anonymizer, text) == [
        ("EMAIL", "jane@example.com"),
        ("PROJECT", "blue harbor"),
        ("PROJECT", "FALCON"),
    ]
    plain = Anonymizer(key=KEY, deny=["Falcon"])
    assert found(plain, "Falcon") == [("DENY_LIST", "Falcon")]


def test_overlaps_resolve_to_one_finding(anonymizer: Anonymizer) -> None:
    # The URL's password is a secret; the e-mail-looking "pw@db.example.com" is not reported on top.
    text = "https://bob:pw1234@db.example.com/x"
    assert found(anonymizer, text) == [("SECRET", "pw1234")]


EVASIONS = [
    ("EMAIL", "ja\u200bne@exa\u200cmple.com"),  # zero-width space / non-joiner
    ("EMAIL", "jane\u2060.doe@example\ufeff.com"),  # word joiner, BOM
    ("EMAIL", "\uff4a\uff41\uff4e\uff45@example.com"),  # fullwidth letters
    (
        "CREDIT_CARD",
        "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
    ),
    ("CREDIT_CARD", "4111\u00a01111\u00a01111\u00a01111"),  # no-break spaces
    ("CREDIT_CARD", "4111\u20131111\u20141111\u22121111"),  # en dash, em dash, minus
    ("CREDIT_CARD", "4111\u00ad1111\u00ad1111\u00ad1111"),  # soft hyphens
    ("CREDIT_CARD", "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"),  # digit spacing
    ("US_SSN", "\u0665\u0663\u0666-\u0669\u0660-\u0664\u0663\u0669\u0669"),  # Arabic-Indic digits
    ("US_SSN", "536\u00a090\u00a04399"),
    ("US_SSN", "536\u00ad-90-\u200b4399"),
    ("PHONE", "+\uff14\uff14 20 7946 0958"),
    ("IBAN", "DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000"),
    ("IP_ADDRESS", "\uff11\uff19\uff12.168.1.20"),
]


@pytest.mark.parametrize(("entity", "value"), EVASIONS)
def test_evasion_tricks_are_caught_and_replaced_on_the_original_characters(
    anonymizer: Anonymizer, entity: str, value: str
) -> None:
    text = f"see: {value} ok"
    assert found(anonymizer, text) == [(entity, value)]
    result = anonymizer.anonymize(text)
    assert result.text.startswith("see: [")
    assert result.text.endswith("] ok")
    assert re.fullmatch(r"see: \[[A-Z_]+(?:_[0-9a-f]{8})?\] ok", result.text)


def test_finding_repr_and_result_repr_show_no_value(anonymizer: Anonymizer) -> None:
    marker = "uniquemarker7731@example.com"
    result = anonymizer.anonymize(f"mail {marker}")
    assert "uniquemarker" not in repr(result)
    assert "uniquemarker" not in repr(result.findings)
    assert "uniquemarker" not in repr(result.vault)
    assert "uniquemarker" not in str(result.findings[0])
