"""Bridge from scenario nodes (ARM-side `NodeSpec`) to the node simulation (`devtools.emulator.nodes`).

A scenario spells in-node facts in camelCase JSON (`iptables`, `ufw`, `kubeletListening`, `containers`,
`egressBlocked`); the simulation wants `NodeState`. Converting at scenario load time also validates every
node early, so a typo in a scenario fails at load and not in the middle of a probe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from devtools.emulator.nodes import ApiServerState, NodeState, RunCommandExecutor, UfwConfig, make_executor
from devtools.emulator.scenario import ClusterSpec, NodeSpec

SIM_KEYS = frozenset({"iptables", "ufw", "kubeletListening", "containers", "egressBlocked"})

# Builds a prepared executor for one cluster; `overrides` maps node names to NodeStates that tests pushed
# with `EmulatorState.update_node` before the cluster's executor existed.
ExecutorFactory = Callable[[ClusterSpec, Mapping[str, NodeState]], RunCommandExecutor]


def node_state(spec: NodeSpec) -> NodeState:
    sim = spec.sim
    unknown = set(sim) - SIM_KEYS
    if unknown:
        raise ValueError(f"node {spec.name}: unknown node keys {sorted(unknown)} (known: {sorted(SIM_KEYS)})")
    iptables = sim.get("iptables")
    if isinstance(iptables, list):
        iptables = "\n".join(str(line) for line in iptables)
    containers = sim.get("containers", ["konnectivity-agent"])
    return NodeState(
        name=spec.name, ip=spec.ip, iptables_rules=iptables, ufw=_ufw(sim.get("ufw")),
        kubelet_listening=bool(sim.get("kubeletListening", True)),
        containers=None if containers is None else tuple(str(c) for c in containers),
        egress_blocked=frozenset(str(e) for e in sim.get("egressBlocked", ())),
        running=spec.running,
    )


def _ufw(raw: Any) -> UfwConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"ufw must be an object like {{'enabled': true, 'rules': [...]}}, not {raw!r}")
    return UfwConfig(enabled=bool(raw.get("enabled", True)), default_incoming=str(raw.get("defaultIncoming", "deny")),
                     rules=tuple(str(r) for r in raw.get("rules", ())))


def api_state(cluster: ClusterSpec) -> ApiServerState:
    """The name nodes resolve for the API server: the private FQDN on private clusters."""
    host = cluster.api_server.private_fqdn if cluster.private and cluster.api_server.private_fqdn \
        else cluster.api_server.fqdn
    return ApiServerState(host=host, ip=cluster.api_server.ip)


def default_executor_factory(prefer_kernel: bool = True) -> ExecutorFactory:
    """One executor per cluster (its nodes are simulated together), built on its first run-command."""

    def factory(cluster: ClusterSpec, overrides: Mapping[str, NodeState]) -> RunCommandExecutor:
        executor = make_executor(prefer_kernel)
        states = [overrides.get(n.name) or node_state(n) for n in cluster.nodes]
        try:
            executor.prepare(states, api_state(cluster))
        except BaseException:
            executor.close()
            raise
        return executor

    return factory
