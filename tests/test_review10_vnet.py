"""Review of issue 10: the API-server-subnet check (API Server VNet Integration) must not judge a flow into a
node whose subnet was not collected as if that subnet had no NSG."""

from __future__ import annotations

from dataclasses import replace

from shared.causes import apiserver_subnet
from tests.builders import SUBNET
from tests.test_vnet_integration import integrated


def test_a_node_subnet_not_collected_leaves_its_flows_undecided() -> None:
    snap = integrated()
    snap = replace(snap, subnets={k: v for k, v in snap.subnets.items() if k != SUBNET.lower()})
    found = apiserver_subnet.check(snap)
    assert found is not None
    assert found.reason is None
    assert not found.blocks
    assert set(found.undecided) == {"aks-nodepool1-1-vmss000000", "aks-nodepool1-1-vmss000001",
                                    "aks-nodepool1-1-vmss000002"}  # was: every flow read as allowed
    assert all("was not collected" in why for why in found.undecided.values())
