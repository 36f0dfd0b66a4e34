"""Fixtures for the threadswoole.http tests (helpers live in http_fakes)."""

from __future__ import annotations

import pytest
from http_fakes import RecordingTransport


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()
