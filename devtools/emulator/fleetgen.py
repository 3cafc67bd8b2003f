"""Synthetic fleets for benchmarks and scale tests: many subscriptions, many clusters, a known mix of faults.

Deterministic for a given seed, so a benchmark can compare runs. Every `problem_every`-th cluster gets
one of the documented causes (in rotation), the rest are healthy; the generated scenario is plain JSON
(`generate_scenario`) so it can also be saved and served with `python -m devtools.emulator`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from devtools.emulator.scenario import Fleet
from devtools.emulator.scenario_load import fleet_from_json

PROBLEMS = ("nsg", "ufw", "iptables", "egress", "snat", "private", "natgw")
LOCATIONS = ("westeurope", "northeurope", "eastus", "eastus2", "westus3", "uksouth")

Json = dict[str, Any]


def generate_scenario(subscriptions: int = 100, clusters_per_subscription: int = 10, *, nodes_per_pool: int = 3,
                      pools_per_cluster: int = 1, problem_every: int = 5, seed: int = 0,
                      settings: Json | None = None) -> Json:
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data, not secrets
    subs = []
    counter = 0
    for s in range(subscriptions):
        sub_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        clusters = []
        for c in range(clusters_per_subscription):
            kind = PROBLEMS[(counter // problem_every) % len(PROBLEMS)] if counter % problem_every == 0 else None
            clusters.append(_cluster(f"aks-{s:03d}-{c:03d}", rng, kind, nodes_per_pool, pools_per_cluster))
            counter += 1
        subs.append({"id": sub_id, "displayName": f"Synthetic {s:03d}", "clusters": clusters})
    return {"settings": settings or {}, "subscriptions": subs}


def generate_fleet(subscriptions: int = 100, clusters_per_subscription: int = 10, *, nodes_per_pool: int = 3,
                   pools_per_cluster: int = 1, problem_every: int = 5, seed: int = 0, settings: Json | None = None,
                   now: datetime | None = None) -> Fleet:
    scenario = generate_scenario(subscriptions, clusters_per_subscription, nodes_per_pool=nodes_per_pool,
                                 pools_per_cluster=pools_per_cluster, problem_every=problem_every, seed=seed,
                                 settings=settings)
    return fleet_from_json(scenario, now=now)


def _cluster(name: str, rng: random.Random, kind: str | None, nodes: int, pools: int) -> Json:
    cluster: Json = {
        "name": name, "resourceGroup": f"rg-{name}", "location": rng.choice(LOCATIONS),
        "agentPools": [{"name": f"pool{p}" if p else "nodepool1", "count": nodes,
                        **({"minCount": nodes, "maxCount": nodes * 2} if rng.random() < 0.5 else {})}
                       for p in range(pools)],
    }
    if kind is not None:
        _PROBLEM_BUILDERS[kind](cluster, rng)
    return cluster


def _first_node(cluster: Json, **facts: Any) -> None:
    cluster["agentPools"][0]["nodes"] = [{"index": 0, **facts}]


def _nsg(cluster: Json, rng: random.Random) -> None:
    octet = rng.randrange(1, 250)
    nsg = f"nsg-{cluster['name']}"  # unique: scenario NSG references resolve by name fleet-wide
    cluster["vnet"] = {"name": f"vnet-{cluster['name']}", "addressSpace": [f"10.{octet}.0.0/16"],
                       "subnets": [{"name": "snet-aks", "addressPrefix": f"10.{octet}.0.0/20", "nsg": nsg}]}
    cluster["nsgs"] = [{"name": nsg, "rules": [
        {"name": "deny-kubelet", "priority": rng.randrange(100, 4000), "direction": "Inbound", "access": "Deny",
         "protocol": "Tcp", "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "*",
         "destinationPortRange": "10250"}]}]
    cluster["activityLog"] = [{"nsg": nsg, "rule": "deny-kubelet", "caller": "ops@contoso.com",
                               "minutesAgo": rng.randrange(5, 600)}]


def _ufw(cluster: Json, rng: random.Random) -> None:
    _first_node(cluster, ufw={"enabled": True, "defaultIncoming": "deny", "rules": ["allow 22/tcp"]})


def _iptables(cluster: Json, rng: random.Random) -> None:
    _first_node(cluster, iptables=["-A INPUT -p tcp -m tcp --dport 10250 -j DROP"])


def _egress(cluster: Json, rng: random.Random) -> None:
    cluster["agentPools"][0]["node"] = {"egressBlocked": ["tcp/443"]}


def _snat(cluster: Json, rng: random.Random) -> None:
    cluster["loadBalancerProfile"] = {"allocatedOutboundPorts": 64}
    cluster["metrics"] = {"loadBalancer": [
        {"name": "SnatConnectionCount", "dimensions": {"BackendIPAddress": "10.224.0.4", "ConnectionState": "failed"},
         "values": [0, 5, 17, 30]},
        {"name": "SnatConnectionCount",
         "dimensions": {"BackendIPAddress": "10.224.0.4", "ConnectionState": "successful"}, "values": [400, 410]},
        {"name": "AllocatedSnatPorts", "dimensions": {"BackendIPAddress": "10.224.0.4"}, "values": [64]},
        {"name": "UsedSnatPorts", "dimensions": {"BackendIPAddress": "10.224.0.4"}, "values": [60, 64]},
    ]}


def _private(cluster: Json, rng: random.Random) -> None:
    cluster["private"] = True


def _natgw(cluster: Json, rng: random.Random) -> None:
    cluster["outboundType"] = "managedNATGateway"


_PROBLEM_BUILDERS: dict[str, Callable[[Json, random.Random], None]] = {
    "nsg": _nsg, "ufw": _ufw, "iptables": _iptables, "egress": _egress, "snat": _snat, "private": _private,
    "natgw": _natgw,
}
