"""One TOML loader (airlock._toml.load_toml) for the gateway config and the keys file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airlock import ConfigurationError, KeyStore
from airlock.gateway.config import load_config

MARKER = "ak_TOMLMARKER_5e1d0c"
LOADERS = [(load_config, "config"), (KeyStore.from_file, "keys file")]


@pytest.mark.parametrize(("load", "what"), LOADERS, ids=["config", "keys"])
def test_broken_toml_is_named_without_its_content(
    tmp_path: Path, load: Callable[[Path], Any], what: str
) -> None:
    path = tmp_path / "broken.toml"
    # An unterminated string: exactly where a pasted key would sit.
    path.write_text(f'[keys]\nalice = "{MARKER}\n', encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{what} {str(path)!r} is not valid TOML: ")
    assert "line 2" in message
    assert MARKER not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # no parser exception chained into tracebacks


@pytest.mark.parametrize(("load", "what"), LOADERS, ids=["config", "keys"])
def test_a_missing_file_is_named(tmp_path: Path, load: Callable[[Path], Any], what: str) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigurationError) as info:
        load(path)
    assert str(info.value) == f"cannot read {what} {str(path)!r}: No such file or directory"
