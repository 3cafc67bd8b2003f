"""The fleet monitor on the API-server-access fleet (real Azurite + the ARM emulator): the timers' check
families open one finding per misconfigured cluster for authorized-ip-ranges-exclude-egress (subject:
the cluster, whose authorized ranges are the thing to fix) and one for the API-server-subnet NSG rule,
and resolve them once fixed; an unreadable egress IP keeps the finding open."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.emulator.arm import Emulator
from shared.monitor.cycle import Monitor
from shared.monitor.families import family_of
from shared.settings import Settings
from shared.store.findings import list_findings
from tests.azurite import isolated_store
from tests.emulator_fixtures import REPO, emulator_fixture  # noqa: F401 (fixture)

ACCESS_SCENARIO = REPO / "devtools" / "emulator" / "scenarios" / "access.json"
CAUSE = "authorized-ip-ranges-exclude-egress"


@pytest.fixture
def world(emulator: Callable[..., Emulator], azurite_connection: str,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Emulator, Monitor, Any]]:
    emu = emulator(ACCESS_SCENARIO)
    with isolated_store(azurite_connection) as store:
        env = {**emu.env(), "NODE_PROBES": "off", "AzureWebJobsStorage": azurite_connection}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield emu, Monitor(Settings.from_env(env), store, env=env), store


def cluster_id(emu: Emulator, name: str) -> str:
    return next(str(c.id) for c in emu.state.fleet.clusters if c.name == name)


def open_for(store: Any, cause: str) -> dict[str, str]:
    return {f.cluster_name: f.subject for f in list_findings(store, "open", cause=cause)}


def test_findings_open_per_cluster_and_resolve_after_the_fix(world: tuple[Emulator, Monitor, Any]) -> None:
    emu, monitor, store = world
    family = family_of(CAUSE)
    assert family is not None, "no check family owns the cause: the timers would never check it"
    first = monitor.run_cycle((family,))
    assert not first.errors, first.errors
    found = open_for(store, CAUSE)
    assert set(found) == {"aks-lb-missing", "aks-prefix-partial", "aks-nat", "aks-udr"}
    assert found["aks-lb-missing"].lower() == cluster_id(emu, "aks-lb-missing").lower()

    (egress_ip,) = emu.state.egress_addresses(cluster_id(emu, "aks-lb-missing"))
    emu.state.set_authorized_ip_ranges(cluster_id(emu, "aks-lb-missing"), ["73.140.245.0/24", f"{egress_ip}/32"])
    emu.faults.add(403, operation="PublicIPAddresses.Get", resource=_nat_pip(emu), count=None)
    second = monitor.run_cycle((family,))
    assert second.resolved == 1, second
    assert set(open_for(store, CAUSE)) == {"aks-prefix-partial", "aks-nat", "aks-udr"}  # aks-nat unread: open


def test_api_server_subnet_rule_is_a_finding_of_the_nsg_family(world: tuple[Emulator, Monitor, Any]) -> None:
    emu, monitor, store = world
    emu.state.add_nsg_rule("nsg-aks", {"name": "deny-apiserver", "properties": {
        "priority": 300, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
        "sourceAddressPrefix": "10.30.4.0/28", "sourcePortRange": "*", "destinationAddressPrefix": "*",
        "destinationPortRange": "10250"}})
    first = monitor.run_cycle(("nsg",))
    assert not first.errors, first.errors
    findings = open_for(store, "nsg-blocks-10250")
    assert findings.get("aks-vnet-int", "").endswith("/securityRules/deny-apiserver")
    emu.state.remove_nsg_rule("nsg-aks", "deny-apiserver")
    monitor.run_cycle(("nsg",))
    assert "aks-vnet-int" not in open_for(store, "nsg-blocks-10250")


def _nat_pip(emu: Emulator) -> str:
    return next(p.id for p in emu.state.fleet.public_ips if "natgw" in p.name)
