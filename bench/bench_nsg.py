"""Decide 10,000 flows across AVNM + a subnet NSG + a NIC NSG of 1,000 custom rules each.

Run from the repo root: `.venv/bin/python -m bench.bench_nsg`.
Target (printed, never asserted): one path evaluation <= 1 ms. The baseline is the naive reference
evaluator from tests/nsg_reference.py, timed in the same run on a subset of the same flows and scaled,
so the speed-up ratio means something even on a busy machine. Both must also agree on that subset.
"""

from __future__ import annotations

import random
import statistics
import time

from shared.netrules.nsg import evaluate_path
from shared.netrules.nsg_types import AddressContext, AdminRule, Flow, NetworkSecurityGroup, SecurityRule
from tests.nsg_reference import ref_evaluate_path, reference_path_matches

TARGET_S = 0.001
RULES_PER_NSG = 1000
FLOWS = 10_000
REFERENCE_FLOWS = 200
SEED = 10250

ASGS = [
    f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/applicationSecurityGroups/asg{i}" for i in range(8)
]
CONTEXT = AddressContext(
    vnet_prefixes=("10.0.0.0/16", "10.50.0.0/16"),
    asg_members={asg.lower(): frozenset(f"10.0.{i}.{j}" for j in range(4, 40)) for i, asg in enumerate(ASGS)},
)


def random_prefix(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(["VirtualNetwork", "Internet", "AzureLoadBalancer", "*"])
    first = rng.choice([10, 10, 10, 20, 52, 100, 172, 192])
    length = rng.choice([8, 12, 16, 20, 24, 28, 32])
    address = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return address if length == 32 else f"{address}/{length}"


def random_ports(rng: random.Random) -> tuple[str, ...]:
    def one() -> str:
        start = rng.randrange(1, 60000)
        return str(start) if rng.random() < 0.6 else f"{start}-{start + rng.randrange(1, 2000)}"

    return tuple(one() for _ in range(rng.choice([1, 1, 1, 2, 4])))


def random_rule(rng: random.Random, name: str, priority: int) -> SecurityRule:
    use_asg = rng.random() < 0.1
    return SecurityRule(
        name=name,
        priority=priority,
        direction=rng.choice(["Inbound", "Inbound", "Inbound", "Outbound"]),
        access=rng.choice(["Allow", "Deny"]),
        protocol=rng.choice(["Tcp", "Tcp", "Udp", "*"]),
        source_prefixes=tuple(random_prefix(rng) for _ in range(rng.choice([1, 1, 3]))),
        destination_prefixes=() if use_asg else tuple(random_prefix(rng) for _ in range(rng.choice([1, 1, 2]))),
        destination_ports=random_ports(rng),
        destination_asgs=(rng.choice(ASGS),) if use_asg else (),
    )


def build_nsg(rng: random.Random, label: str) -> NetworkSecurityGroup:
    priorities = rng.sample(range(100, 4097), RULES_PER_NSG)
    rules = tuple(random_rule(rng, f"{label}-{i}", p) for i, p in enumerate(priorities))
    return NetworkSecurityGroup(id=f"/subscriptions/s/resourceGroups/rg/providers/nsg/{label}", name=label, rules=rules)


def build_admin_rules(rng: random.Random) -> tuple[AdminRule, ...]:
    return tuple(
        AdminRule(
            f"admin-{i}",
            i + 1,
            "Inbound",
            rng.choice(["Allow", "Deny"]),
            "Tcp",
            sources=(random_prefix(rng),),
            destination_ports=random_ports(rng),
        )
        for i in range(20)
    )


def random_flow(rng: random.Random) -> Flow:
    source = rng.choice([f"10.0.{rng.randrange(8)}.{rng.randrange(256)}", f"52.{rng.randrange(256)}.1.2"])
    return Flow(
        rng.choice(["Inbound", "Outbound"]),
        rng.choice(["Tcp", "Tcp", "Udp"]),
        source,
        rng.randrange(1024, 65536),
        f"10.0.{rng.randrange(8)}.{rng.randrange(4, 40)}",
        rng.choice([10250, 443, 9000, rng.randrange(1, 65536)]),
    )


def main() -> None:
    rng = random.Random(SEED)
    subnet, nic = build_nsg(rng, "subnet-nsg"), build_nsg(rng, "nic-nsg")
    admin = build_admin_rules(rng)
    flows = [random_flow(rng) for _ in range(FLOWS)]

    def path_of(flow: Flow) -> list[NetworkSecurityGroup | None]:
        return [subnet, nic] if flow.direction == "Inbound" else [nic, subnet]

    started = time.perf_counter()
    evaluate_path(flows[0], path_of(flows[0]), context=CONTEXT, admin_rules=admin)  # compiles and caches
    compile_s = time.perf_counter() - started

    per_flow: list[float] = []
    verdicts = {True: 0, False: 0, None: 0}
    started = time.perf_counter()
    for flow in flows:
        t0 = time.perf_counter()
        decision = evaluate_path(flow, path_of(flow), context=CONTEXT, admin_rules=admin)
        per_flow.append(time.perf_counter() - t0)
        verdicts[decision.allowed] += 1
    total_s = time.perf_counter() - started

    subset = flows[:REFERENCE_FLOWS]
    started = time.perf_counter()
    expected = [ref_evaluate_path(f, path_of(f), CONTEXT, admin) for f in subset]
    reference_s = time.perf_counter() - started
    disagreements = sum(
        not reference_path_matches(evaluate_path(f, path_of(f), context=CONTEXT, admin_rules=admin), e)
        for f, e in zip(subset, expected, strict=True)
    )

    mean_s = total_s / FLOWS
    p99_s = sorted(per_flow)[int(0.99 * len(per_flow))]
    reference_mean_s = reference_s / REFERENCE_FLOWS
    print(f"path: AVNM ({len(admin)} admin rules) + 2 NSGs x {RULES_PER_NSG} custom rules; {FLOWS} flows")
    print(f"verdicts: allowed={verdicts[True]} denied={verdicts[False]} unknown={verdicts[None]}")
    print(f"compile (first call, both NSGs + admin rules): {compile_s * 1e3:.1f} ms")
    print(
        f"compiled evaluator: total {total_s * 1e3:.1f} ms, mean {mean_s * 1e6:.1f} us, "
        f"median {statistics.median(per_flow) * 1e6:.1f} us, p99 {p99_s * 1e6:.1f} us per evaluation"
    )
    print(
        f"naive reference:    {reference_mean_s * 1e6:.1f} us per evaluation "
        f"({REFERENCE_FLOWS} flows, {reference_s:.2f} s; ~{reference_mean_s * FLOWS:.1f} s scaled to {FLOWS})"
    )
    print(f"speed-up vs reference: {reference_mean_s / mean_s:.0f}x")
    print(f"agreement with reference on {REFERENCE_FLOWS} flows: {REFERENCE_FLOWS - disagreements}/{REFERENCE_FLOWS}")
    met = "MET" if mean_s <= TARGET_S and p99_s <= TARGET_S else "NOT MET"
    print(f"target one evaluation <= {TARGET_S * 1e3:.0f} ms (mean and p99): {met}")


if __name__ == "__main__":
    main()
