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


# Under CI these environment variables turn a skip of that kind into a failure: a missing Azurite, missing
# network-namespace support or a missing browser must never let the suite pass by skipping what it proves.
REQUIRED_SKIP_KINDS: dict[str, tuple[str, ...]] = {
    "REQUIRE_AZURITE": ("storage test skipped",),
    "REQUIRE_KERNEL": ("kernel test skipped", "netns node lab unavailable", "ufw sandbox unavailable"),
    "REQUIRE_BROWSER": ("browser test skipped",),
    "REQUIRE_NODE": ("Adaptive Card validation skipped",),
}


def required_kind(reason: str, env: dict[str, str]) -> str | None:
    """The REQUIRE_* setting that forbids skipping for this reason, if it is set."""
    for setting, prefixes in REQUIRED_SKIP_KINDS.items():
        if env.get(setting) and any(prefix in reason for prefix in prefixes):
            return setting
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    import os

    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2])
    setting = required_kind(reason, dict(os.environ))
    if setting is not None:
        report.outcome = "failed"
        report.longrepr = f"{setting} is set, so this may not skip: {reason}"
