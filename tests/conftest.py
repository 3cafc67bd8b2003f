"""Fixtures shared across test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import require_azurite, shared_azurite


@pytest.fixture(scope="session")
def azurite_connection() -> Iterator[str]:
    """One Azurite for the run (the one `make test` started, else a private one); tests isolate by table."""
    require_azurite()
    with shared_azurite() as server:
        yield server.connection_string
