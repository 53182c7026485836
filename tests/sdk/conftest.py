from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.fake_hub import FakeHub


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A fake hub on a free port of 127.0.0.1, stopped after the test."""
    server = FakeHub().start()
    yield server
    server.stop()
