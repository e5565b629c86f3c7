"""Provider keys: from the environment or a secret file, rotated, never shown."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from airlock.errors import ConfigurationError
from airlock.provider import ProviderKeys, Secret

from fake_upstream import new_provider_key

pytestmark = pytest.mark.anyio


def test_key_from_the_environment() -> None:
    key = new_provider_key()
    keys = ProviderKeys(env=["OPENAI_API_KEY"], environ={"OPENAI_API_KEY": key + "\n"})
    secret = keys.current()
    assert secret is not None
    assert secret.reveal() == key
    assert secret.source == "environment variable OPENAI_API_KEY"


def test_key_from_a_secret_file(tmp_path: Path) -> None:
    key = new_provider_key()
    path = tmp_path / "openai"
    path.write_text(key + "\n")
    keys = ProviderKeys(files=[path])
    assert keys.current() is not None
    assert keys.current().reveal() == key  # type: ignore[union-attr]


def test_missing_or_empty_sources_are_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY is not set"):
        ProviderKeys(env=["OPENAI_API_KEY"], environ={})
    with pytest.raises(ConfigurationError, match="not set or empty"):
        ProviderKeys(env=["OPENAI_API_KEY"], environ={"OPENAI_API_KEY": "  "})
    with pytest.raises(ConfigurationError, match="does not exist"):
        ProviderKeys(files=[tmp_path / "nope"])
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigurationError, match="is empty"):
        ProviderKeys(files=[empty])


def test_a_key_in_place_of_a_variable_name_is_refused_without_echoing_it() -> None:
    key = new_provider_key()
    with pytest.raises(ConfigurationError, match="NAME of an environment variable") as info:
        ProviderKeys(env=[key], environ={})
    assert key not in str(info.value)


def test_a_file_with_more_than_a_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    key = new_provider_key()
    path = tmp_path / "openai"
    path.write_text(f"Bearer {key}\n")
    with pytest.raises(ConfigurationError, match="exactly one provider key") as info:
        ProviderKeys(files=[path])
    assert key not in str(info.value)


def test_secrets_never_show_their_value() -> None:
    key = new_provider_key()
    secret = Secret(key, "environment variable K")
    keys = ProviderKeys(env=["K"], environ={"K": key})
    for text in (repr(secret), str(secret), f"{secret}", repr(keys), str([secret]), repr(vars(keys))):
        assert key not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_rotation_sets_a_refused_key_aside_and_uses_the_next() -> None:
    old, new = new_provider_key(), new_provider_key()
    keys = ProviderKeys(env=["OLD", "NEW"], environ={"OLD": old, "NEW": new}, cooldown=60)
    first = keys.current()
    assert first is not None
    assert first.reveal() == old
    assert keys.refused(first) is True
    second = keys.current()
    assert second is not None
    assert second.reveal() == new
    # Both refused: the one that comes back soonest is tried (never "no key at all").
    assert keys.refused(second) is False
    assert keys.current() is first


def test_scrub_removes_every_configured_key() -> None:
    old, new = new_provider_key(), new_provider_key()
    keys = ProviderKeys(env=["OLD", "NEW"], environ={"OLD": old, "NEW": new})
    text = f"bad key {old} and {new}".encode()
    assert keys.scrub(text) == b"bad key [REDACTED] and [REDACTED]"


async def test_a_rotated_secret_file_is_picked_up_without_restart(tmp_path: Path) -> None:
    path = tmp_path / "openai"
    path.write_text(new_provider_key())
    keys = ProviderKeys(files=[path], reload_interval=0)
    rotated = new_provider_key()
    path.write_text(rotated)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    await keys.refresh()
    assert keys.current().reveal() == rotated  # type: ignore[union-attr]
    # A broken rewrite keeps the last good key.
    path.write_text("")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    await keys.refresh()
    assert keys.current().reveal() == rotated  # type: ignore[union-attr]
