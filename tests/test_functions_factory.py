"""One way to build the Monitor (Functions context, CLI, dev tools), no cli <-> demo import cycle, and
`python -m shared scan` through that path (the ARM emulator and real Azurite)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.emulator.arm import Emulator
from shared.monitor.factory import MonitorSetupError, build_monitor
from tests.emulator_fixtures import DEMO_SCENARIO, emulator_fixture  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_cli_demo_import_cycle() -> None:
    assert not {m for m in imports_of(ROOT / "devtools" / "demo.py") if m.startswith("shared.cli")}
    assert not {m for m in imports_of(ROOT / "shared" / "cli.py") if m.startswith("devtools")}
    loaded = subprocess.run([sys.executable, "-c", "import sys, shared.cli; print(sorted(sys.modules))"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "devtools" not in loaded


def test_every_entry_point_builds_the_monitor_through_the_factory() -> None:
    entry_points = (ROOT / "shared" / "cli.py", ROOT / "shared" / "functions" / "context.py",
                    ROOT / "devtools" / "demo.py")
    for path in entry_points:
        assert "shared.monitor.factory" in imports_of(path), path
        assert "Monitor(" not in path.read_text(), path


def test_factory_names_the_bad_setting_and_never_a_secret() -> None:
    with pytest.raises(MonitorSetupError, match="NODE_PROBES"):
        build_monitor({"NODE_PROBES": "sometimes", "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    with pytest.raises(MonitorSetupError, match="AzureWebJobsStorage"):
        build_monitor({})
    secret = "https://example.invalid/hooks/s3cr3t-token"
    with pytest.raises(MonitorSetupError) as refused:
        build_monitor({"ALERT_WEBHOOK_URL": secret, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert "s3cr3t" not in str(refused.value)


def test_scan_cli_runs_the_fan_out_and_prints_merged_reports(emulator: Callable[..., Emulator], azurite_connection: str,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import functools
    import uuid

    from shared.cli import main
    from shared.store import connection
    from shared.store.tables import DEFAULT_TABLES

    emu = emulator(DEMO_SCENARIO)
    monkeypatch.setenv("AzureWebJobsStorage", azurite_connection)
    monkeypatch.setenv("NODE_PROBES", "off")
    for name in ("ALERT_WEBHOOK_URL", "TEAMS_WEBHOOK_URL", "SLACK_WEBHOOK_URL", "MONITOR_SUBSCRIPTIONS"):
        monkeypatch.delenv(name, raising=False)
    tag = "S" + uuid.uuid4().hex[:8]
    # The CLI's own factory path, on private tables of the shared Azurite.
    monkeypatch.setattr(connection, "open_store", functools.partial(connection.open_store,
                                                                    names=DEFAULT_TABLES.namespaced(tag)))
    try:
        code = main(["scan", "--json"])
    finally:
        from azure.data.tables import TableServiceClient

        service = TableServiceClient.from_connection_string(azurite_connection)
        for name in DEFAULT_TABLES.namespaced(tag).all():
            service.delete_table(name)
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # problems in the demo fleet
    assert len(out["clusters"]) == len(emu.state.fleet.clusters)
    ids = [c["id"] for c in out["clusters"][0]["causes"]]
    assert ids[:5] == ["nsg-blocks-10250", "ufw-blocks-10250", "iptables-blocks-10250",
                       "egress-tunnel-port-blocked", "snat-port-exhaustion"]
    nsg = next(r for r in out["clusters"] if r["cluster"]["name"] == "aks-nsg-deny")
    assert nsg["verdict"] == "problem"
    assert out["opened"] >= 2
