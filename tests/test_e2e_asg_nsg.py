"""ASG-scoped NSG rules and partial NSG reads end to end: real SDK clients -> local ARM emulator.

The emulator serves each pool's NICs with `ipConfigurations[].applicationSecurityGroups` (as the VMSS
network interface list does in Azure) and NSG rules with source/destination application security groups.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings
from tests.emulator_fixtures import emulator_fixture  # noqa: F401 (fixture)

SUB = "3f0c7a51-93b6-4b8e-a0c2-5d7e9b1a2c34"
ASG_RG = f"/subscriptions/{SUB}/resourceGroups/rg-pay/providers/Microsoft.Network/applicationSecurityGroups"
ASG_A, ASG_B = f"{ASG_RG}/asg-poola", f"{ASG_RG}/asg-poolb"
POOLB_NSG = f"/subscriptions/{SUB}/resourceGroups/rg-pay/providers/Microsoft.Network/networkSecurityGroups/" \
    "nsg-snet-poolb"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-pay/providers/Microsoft.ContainerService/managedClusters/aks-pay"

DENY_FROM_POOLB: dict[str, Any] = {
    "name": "deny-poolb-kubelet", "priority": 200, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
    "sourceApplicationSecurityGroups": [{"id": ASG_B}], "sourcePortRange": "*",
    "destinationAddressPrefix": "*", "destinationPortRange": "10250",
}


def fleet(rules: list[dict[str, Any]], *, pool_nsgs: bool = False) -> dict[str, Any]:
    subnets: list[dict[str, Any]] = [{"name": "snet-aks", "addressPrefix": "10.20.0.0/22", "nsg": "nsg-snet-aks"}]
    nsgs: list[dict[str, Any]] = [{"name": "nsg-snet-aks", "rules": rules}]
    if pool_nsgs:
        subnets.append({"name": "snet-poolb", "addressPrefix": "10.20.4.0/22", "nsg": "nsg-snet-poolb"})
        nsgs.append({"name": "nsg-snet-poolb", "rules": []})
    return {"subscriptions": [{"id": SUB, "clusters": [{
        "name": "aks-pay", "resourceGroup": "rg-pay", "location": "westeurope",
        "vnet": {"name": "vnet-pay", "addressSpace": ["10.20.0.0/16"], "subnets": subnets},
        "nsgs": nsgs, "nicNsg": False,
        "agentPools": [
            {"name": "poola", "count": 2, "applicationSecurityGroups": [ASG_A]},
            {"name": "poolb", "count": 2, "applicationSecurityGroups": [ASG_B],
             **({"subnet": "snet-poolb"} if pool_nsgs else {})},
        ],
    }]}]}


def run(emu: Emulator) -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": "off"})
    clients = ArmClients(settings)
    try:
        return diagnose(CLUSTER, settings=settings, clients=clients, probes=False)
    finally:
        clients.close()


def nsg_cause(found: Diagnosis) -> dict[str, Any]:
    return next(c for c in found.report["causes"] if c["id"] == "nsg-blocks-10250")


def test_deny_from_asg_poolb_is_detected_then_clears(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([DENY_FROM_POOLB]))
    found = nsg_cause(run(emu))
    assert found["status"] == "detected", found
    assert "deny-poolb-kubelet" in found["summary"]
    assert any("poolb" in e["detail"] and e["resource"].endswith("/securityRules/deny-poolb-kubelet")
               for e in found["evidence"])
    assert any("az network nsg rule create" in r and "--priority 199" in r for r in found["remediation"])
    emu.state.remove_nsg_rule("nsg-snet-aks", "deny-poolb-kubelet", caller="fixer@contoso.com")
    assert nsg_cause(run(emu))["status"] == "clear"


def test_deny_to_asg_poola_from_the_vnet_is_detected(emulator: Callable[..., Emulator]) -> None:
    rule = {**DENY_FROM_POOLB, "name": "deny-to-poola", "sourceApplicationSecurityGroups": [],
            "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": None,
            "destinationApplicationSecurityGroups": [{"id": ASG_A}]}
    rule = {k: v for k, v in rule.items() if v not in (None, [])}
    found = nsg_cause(run(emulator(fleet([rule]))))
    assert found["status"] == "detected", found
    assert "deny-to-poola" in found["summary"]


def test_deny_for_an_asg_no_node_carries_is_clear(emulator: Callable[..., Emulator]) -> None:
    other = {**DENY_FROM_POOLB, "sourceApplicationSecurityGroups": [{"id": f"{ASG_RG}/asg-batch"}]}
    assert nsg_cause(run(emulator(fleet([other]))))["status"] == "clear"


def test_forbidden_nsg_of_one_pool_is_unknown_naming_the_403(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([], pool_nsgs=True))
    emu.faults.add(403, operation="NetworkSecurityGroups.Get", resource=POOLB_NSG, count=100)
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "403" in found["reason"]
    assert {u["subject"] for u in found.get("unchecked", [])} >= {n for n in _node_names(emu) if "poolb" in n}


def test_forbidden_nsg_of_one_pool_beside_a_deny_is_detected_with_unchecked(
        emulator: Callable[..., Emulator]) -> None:
    deny_all = {**DENY_FROM_POOLB, "name": "deny-kubelet", "sourceApplicationSecurityGroups": [],
                "sourceAddressPrefix": "*"}
    deny_all = {k: v for k, v in deny_all.items() if v != []}
    emu = emulator(fleet([deny_all], pool_nsgs=True))
    emu.faults.add(403, operation="NetworkSecurityGroups.Get", resource=POOLB_NSG, count=100)
    found = nsg_cause(run(emu))
    assert found["status"] == "detected", found
    unchecked = {u["subject"]: u["reason"] for u in found["unchecked"]}
    assert {n for n in _node_names(emu) if "poolb" in n} <= set(unchecked)
    assert all("403" in why for why in unchecked.values())


def test_throttled_nic_list_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([DENY_FROM_POOLB]))
    emu.faults.add(429, operation="NetworkInterfaces.ListVirtualMachineScaleSetNetworkInterfaces", count=1000,
                   retry_after=1)
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "429" in found["reason"]


def test_forbidden_avnm_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([]))
    emu.faults.add(403, operation="NetworkManagerEffectiveSecurityAdminRules.List", count=100)
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "403" in found["reason"]


def _node_names(emu: Emulator) -> list[str]:
    return [n.name for c in emu.state.fleet.clusters for n in c.nodes]


def test_forbidden_vnet_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([DENY_FROM_POOLB]))
    emu.faults.add(403, operation="VirtualNetworks.Get", count=None)
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "403" in found["reason"]


def test_every_nsg_forbidden_is_unknown(emulator: Callable[..., Emulator]) -> None:
    emu = emulator(fleet([]))
    emu.faults.add(403, operation="NetworkSecurityGroups.Get", count=None)
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "403" in found["reason"]


def test_unresolvable_service_tag_is_unknown_naming_it(emulator: Callable[..., Emulator]) -> None:
    cloud = {"name": "deny-azurecloud", "priority": 150, "direction": "Inbound", "access": "Deny", "protocol": "Tcp",
             "sourceAddressPrefix": "AzureCloud", "sourcePortRange": "*", "destinationAddressPrefix": "*",
             "destinationPortRange": "10250"}
    emu = emulator(fleet([cloud]))
    found = nsg_cause(run(emu))
    assert found["status"] == "unknown", found
    assert "AzureCloud" in found["reason"]
    assert {u["subject"] for u in found["unchecked"]} == set(_node_names(emu))


def test_unresolvable_tag_for_one_pool_beside_an_asg_deny_is_detected(emulator: Callable[..., Emulator]) -> None:
    cloud_to_a = {"name": "deny-azurecloud-to-a", "priority": 150, "direction": "Inbound", "access": "Deny",
                  "protocol": "Tcp", "sourceAddressPrefix": "AzureCloud", "sourcePortRange": "*",
                  "destinationApplicationSecurityGroups": [{"id": ASG_A}], "destinationPortRange": "10250"}
    deny_to_b = {**cloud_to_a, "name": "deny-to-b", "priority": 160, "sourceAddressPrefix": "VirtualNetwork",
                 "destinationApplicationSecurityGroups": [{"id": ASG_B}]}
    emu = emulator(fleet([cloud_to_a, deny_to_b]))
    found = nsg_cause(run(emu))
    assert found["status"] == "detected", found
    assert "deny-to-b" in found["summary"]
    unchecked = {u["subject"] for u in found["unchecked"]}
    assert unchecked == {n for n in _node_names(emu) if "poola" in n}
