"""The egress cause on a 1,000-node cluster behind a Firewall Policy of 2,000 rules (parent + child).

Run from the repo root: `.venv/bin/python -m bench.bench_firewall`.
Target (printed, never asserted): the whole egress cause (every node, all three tunnel ports, probes off,
so each node is judged through NSG-less route + firewall) in under 2 s. The naive reference evaluator
(tests/firewall_reference.py) is timed on a subset of the same flows and must agree with it there.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from typing import Any

from shared.causes import egress_tunnel_port_blocked as egress
from shared.causes.base import run_cause
from shared.netrules.firewall import Packet, evaluate_firewall
from shared.netrules.firewall_types import Firewall, FirewallRule
from shared.snapshot import Node
from tests.builders import SUBNET, routed_snapshot
from tests.firewall_reference import ref_evaluate

NODES = 1000
RULES = 2000
TARGET_S = 2.0
SEED = 443


def _rules(rng: random.Random) -> tuple[FirewallRule, ...]:
    rules: list[FirewallRule] = []
    for i in range(RULES):
        layer = 0 if i < RULES // 4 else 1
        common: dict[str, Any] = {"layer": layer, "group": f"g{i % 7}", "group_priority": 100 + (i % 7) * 100,
                  "collection_id": f"/policy/ruleCollectionGroups/g{i % 7}",
                  "source_addresses": (f"10.{rng.randrange(30, 250)}.0.0/16",)}
        if i % 3:
            rules.append(FirewallRule(f"c{i % 40}", 100 + i % 40, rng.choice(["Allow", "Deny"]), f"net{i}", "network",
                                      (rng.choice(["TCP", "UDP"]),), destination_addresses=("*",),
                                      destination_ports=(str(rng.randrange(1, 65000)),), **common))
        else:
            rules.append(FirewallRule(f"a{i % 40}", 100 + i % 40, "Allow", f"app{i}", "application", ("Https:443",),
                                      destination_fqdns=(f"site{i}.example.com",), **common))
    rules.append(FirewallRule("aks", 4000, "Allow", "aks", "application", ("Https:443",), layer=1,
                              group="aks", group_priority=4000, fqdn_tags=("AzureKubernetesService",),
                              source_addresses=("10.224.0.0/16",)))
    return tuple(rules)


def main() -> None:
    rng = random.Random(SEED)
    firewall = Firewall("/subscriptions/s/resourceGroups/hub/providers/Microsoft.Network/azureFirewalls/fw",
                        "10.0.1.4", _rules(rng), policy_id="/policy")
    nodes = tuple(Node(f"aks-pool-{i:06d}", "pool", f"10.224.{i // 250}.{4 + i % 250}", SUBNET) for i in range(NODES))
    snap = replace(routed_snapshot(firewall, tunnel="unknown"), nodes=nodes)
    started = time.perf_counter()
    result = run_cause(egress.CAUSE, snap)
    elapsed = time.perf_counter() - started
    print(f"egress cause, {NODES} nodes x 3 ports, {RULES + 1} firewall rules: {elapsed:.2f} s "
          f"(target {TARGET_S:.1f} s) -> {result.status}")
    flows = [Packet(n.private_ip or "", p, port, "aks.hcp.westeurope.azmk8s.io", None, tls=port == 443)
             for n in nodes[:20] for p, port in (("TCP", 443), ("TCP", 9000), ("UDP", 1194))]
    started = time.perf_counter()
    ref = [ref_evaluate(firewall, f) for f in flows]
    ref_s = (time.perf_counter() - started) / len(flows)
    started = time.perf_counter()
    got = [evaluate_firewall(firewall, f) for f in flows]
    got_s = (time.perf_counter() - started) / len(flows)
    agree = all(g.allowed == r.allowed for g, r in zip(got, ref, strict=True))
    print(f"per flow: evaluator {got_s * 1000:.2f} ms (compiling each time), reference {ref_s * 1000:.2f} ms; "
          f"agree on {len(flows)} flows: {agree}")


if __name__ == "__main__":
    main()
