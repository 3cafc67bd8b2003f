"""REQUIRE_* settings turn the matching skips into failures (CI must not pass by skipping what it proves)."""

from __future__ import annotations

import pytest

from tests.conftest import required_kind


def test_a_required_kind_is_found_by_its_skip_reason() -> None:
    env = {"REQUIRE_AZURITE": "1", "REQUIRE_KERNEL": "1"}
    assert required_kind("storage test skipped: node is not installed", env) == "REQUIRE_AZURITE"
    assert required_kind("kernel test skipped: not root", env) == "REQUIRE_KERNEL"
    assert required_kind("netns node lab unavailable: no ip", env) == "REQUIRE_KERNEL"


def test_without_the_setting_a_skip_stays_a_skip() -> None:
    assert required_kind("storage test skipped: node is not installed", {}) is None
    assert required_kind("browser test skipped: chromium is absent", {"REQUIRE_KERNEL": "1"}) is None


def test_unrelated_skips_are_untouched() -> None:
    assert required_kind("official example missing", {"REQUIRE_AZURITE": "1", "REQUIRE_KERNEL": "1"}) is None


def test_the_hook_really_fails_a_required_skip(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a tiny suite with the real hook: the skip must be reported as a failure."""
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile("import pytest\n"
                        "def test_x():\n"
                        "    pytest.skip('kernel test skipped: no netns here')\n")
    monkeypatch.setenv("REQUIRE_KERNEL", "1")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
    monkeypatch.delenv("REQUIRE_KERNEL")
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=1)
