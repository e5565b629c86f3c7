"""Policy: validated once at start-up, merged per route, frozen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airlock import ClientAddress, ConfigurationError, Context, Policy
from airlock.errors import PROBLEM_CODES, Rejection


@pytest.mark.parametrize(
    "options",
    [
        {"max_body_bytes": -1},
        {"max_body_bytes": 1.5},
        {"max_body_bytes": True},
        {"body_timeout": 0},
        {"body_timeout": "10"},
        {"json": "yes"},
        {"max_json_depth": 0},
        {"identity": "alice"},
        {"audit": object()},
        {"admit": [1]},
        {"request_id_header": ""},
    ],
)
def test_invalid_options_raise_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Policy(**options)


def test_merged_changes_only_what_it_names() -> None:
    async def stage(ctx: Context) -> None:
        return None

    base = Policy(max_body_bytes=100, admit=stage)
    route = base.merged({"max_body_bytes": 5})
    assert route.max_body_bytes == 5
    assert route.admit == (stage,)
    assert base.merged(None) is base
    with pytest.raises(ConfigurationError, match="unknown policy option"):
        base.merged({"max_body": 5})


def test_policy_is_frozen_and_defaults_are_safe() -> None:
    policy = Policy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_body_bytes = 5  # type: ignore[misc]
    assert policy.max_body_bytes == 1024 * 1024
    assert isinstance(policy.identity, ClientAddress)
    assert policy.request_id_header == "x-request-id"


def test_problem_codes_are_unique_and_stable() -> None:
    codes = [cls.code for cls in PROBLEM_CODES.values()]
    assert len(codes) == len(set(codes))
    for code, cls in PROBLEM_CODES.items():
        assert issubclass(cls, Rejection)
        assert code == code.lower()
        assert 400 <= cls.status <= 599
        assert repr(cls()) == f"{cls.__name__}(code={code!r}, status={cls.status})"


def test_stage_classes_load_lazily_from_the_top_level() -> None:
    import subprocess
    import sys

    code = (
        "import sys, airlock\n"
        "assert 'airlock.anonymize' not in sys.modules and 'airlock.throttle' not in sys.modules\n"
        "from airlock import Anonymize, AuditLog, RateLimit, Sanitize, TokenBudget, Validate\n"
        "assert Validate.__module__.startswith('airlock.validation')\n"
        "assert 'airlock.anonymize' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import airlock

    with pytest.raises(AttributeError):
        airlock.NoSuchThing
    assert "RateLimit" in dir(airlock)
