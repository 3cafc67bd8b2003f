"""Small scenario builders and runners for the Kubernetes API tests (symptom, access, Konnectivity cause)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from devtools.emulator.arm import Emulator
from shared.azure.clients import ArmClients
from shared.diagnose import Diagnosis, diagnose
from shared.settings import Settings

SUB = "3f2a5a3e-1d2c-4b5a-9e8f-7a6b5c4d3e2f"


def fleet(*clusters: dict[str, Any]) -> dict[str, Any]:
    return {"subscriptions": [{"id": SUB, "clusters": list(clusters)}]}


def cluster(name: str, *, count: int = 3, nodes: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    pool: dict[str, Any] = {"name": "nodepool1", "count": count}
    if nodes:
        pool["nodes"] = nodes
    return {"name": name, "resourceGroup": f"rg-{name}", "location": "westeurope", "agentPools": [pool], **extra}


def cluster_id(emu: Emulator, name: str) -> str:
    return next(str(c.id) for c in emu.state.fleet.clusters if c.name == name)


def run(emu: Emulator, name: str, *, probes: bool = False, mode: str = "all") -> Diagnosis:
    settings = Settings.from_env({**os.environ, "NODE_PROBES": mode})
    clients = ArmClients(settings)
    try:
        return diagnose(cluster_id(emu, name), settings=settings, clients=clients, probes=probes)
    finally:
        clients.close()


def cause(found: Diagnosis, cause_id: str) -> dict[str, Any]:
    return next(c for c in found.report["causes"] if c["id"] == cause_id)


def by_node(found: Diagnosis) -> dict[str, dict[str, str]]:
    return {n["node"]: n for n in found.report["symptom"].get("nodes", [])}


def node_names(emu: Emulator, name: str) -> list[str]:
    return [n.name for c in emu.state.fleet.clusters if c.name == name for n in c.nodes]


Start = Callable[..., Emulator]
