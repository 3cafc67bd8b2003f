"""The Functions app as the host sees it: indexed through azure-functions itself, no Core Tools."""

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.devhost import DEFAULT_SCHEDULES, schedules_from_env
from shared.functions import ncrontab

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _indexed() -> tuple[Any, ...]:
    """The host indexes the app once; a second get_functions() on the same app raises duplicates."""
    import function_app

    return tuple(function_app.app.get_functions())


def _functions() -> dict[str, dict[str, Any]]:
    return {f.get_function_name(): json.loads(f.get_function_json()) for f in _indexed()}


def test_functions_have_unique_names_and_expected_triggers() -> None:
    names = [f.get_function_name() for f in _indexed()]
    assert len(names) == len(set(names))
    triggers = {name: spec["bindings"][0]["type"] for name, spec in _functions().items()}
    assert triggers == {
        "snat_timer": "timerTrigger", "nsg_timer": "timerTrigger", "probe_timer": "timerTrigger",
        "outbox_timer": "timerTrigger", "outbox_housekeeping_timer": "timerTrigger",
        "cluster_check_worker": "queueTrigger",
        "cluster_check_poison": "queueTrigger", "diagnose_worker": "queueTrigger", "diagnose_poison": "queueTrigger",
        "diagnose_http": "httpTrigger", "diagnosis_status_http": "httpTrigger", "findings_http": "httpTrigger",
        "finding_history_http": "httpTrigger", "health_http": "httpTrigger", "clusters_http": "httpTrigger",
        "dashboard_http": "httpTrigger", "dashboard_asset_http": "httpTrigger", "snat_samples_http": "httpTrigger",
        "outbox_counts_http": "httpTrigger",
    }


def test_timers_read_their_schedules_from_settings() -> None:
    specs = _functions()
    for name, setting in [("snat_timer", "SNAT_SCHEDULE"), ("nsg_timer", "NSG_SCHEDULE"),
                          ("probe_timer", "PROBE_SCHEDULE"), ("outbox_timer", "OUTBOX_SCHEDULE")]:
        assert specs[name]["bindings"][0]["schedule"] == f"%{setting}%"


def test_http_functions_need_a_function_key() -> None:
    for name, spec in _functions().items():
        if name.endswith("_http"):
            assert spec["bindings"][0]["authLevel"].upper() == "FUNCTION"


def test_queue_triggers_use_the_host_storage_connection() -> None:
    for name, spec in _functions().items():
        binding = spec["bindings"][0]
        if binding["type"] == "queueTrigger":
            assert binding["connection"] == "AzureWebJobsStorage", name


def test_default_schedules_parse_as_six_field_ncrontab() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    parsed = schedules_from_env(example)
    assert set(parsed) == set(DEFAULT_SCHEDULES)
    assert parsed["SNAT_SCHEDULE"].minutes == frozenset(range(0, 60, 5))
    assert parsed["NSG_SCHEDULE"].minutes == frozenset(range(0, 60, 10))
    assert parsed["PROBE_SCHEDULE"].minutes == frozenset({0, 30})


def test_ncrontab_rejects_five_field_cron_and_names_the_setting() -> None:
    with pytest.raises(ncrontab.ScheduleError, match="SNAT_SCHEDULE"):
        schedules_from_env({"SNAT_SCHEDULE": "*/5 * * * *"})


def test_ncrontab_next_firing() -> None:
    from datetime import datetime

    schedule = ncrontab.parse("0 */5 * * * *")
    assert schedule.next_after(datetime(2026, 1, 1, 10, 3, 7)) == datetime(2026, 1, 1, 10, 5, 0)
    weekly = ncrontab.parse("0 0 9 * * Mon")
    assert weekly.next_after(datetime(2026, 11, 27, 12, 0, 0)) == datetime(2026, 11, 30, 9, 0, 0)


def test_importing_the_app_does_not_load_the_management_sdks() -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import function_app"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    loaded = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert not [m for m in loaded if m.startswith("azure.mgmt")]
    assert not [m for m in loaded if m.startswith("azure.identity")]
