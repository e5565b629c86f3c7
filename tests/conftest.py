from __future__ import annotations

import pytest

from helpers import RecordingSink


# Every async test runs on asyncio through anyio's pytest plugin.
@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()
