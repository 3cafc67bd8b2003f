"""Pytest helpers around the local Azure emulator, for any test that talks to "Azure" through the SDK.

    from tests.emulator_fixtures import emulator_fixture, arm_clients, DEMO_SCENARIO  # noqa: F401 (fixture)

    def test_something(emulator):
        emu = emulator(DEMO_SCENARIO, page_size=2)     # started now, stopped at teardown, env set
        clients = arm_clients(emu, DEMO_SUBSCRIPTION)
        clients.container.managed_clusters.list()

`emulator(...)` sets ARM_ENDPOINT, ARM_SCOPE, IDENTITY_ENDPOINT, IDENTITY_HEADER and REQUESTS_CA_BUNDLE
with monkeypatch (and removes credentials env vars that would steer DefaultAzureCredential elsewhere),
so the real DefaultAzureCredential gets its token from the emulator's managed-identity endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devtools.emulator.arm import Emulator, with_settings
from devtools.emulator.nodebridge import ExecutorFactory
from devtools.emulator.nodes import ApiServerState, NodeState, RunCommandOutcome
from devtools.emulator.scenario import ClusterSpec, Fleet
from devtools.emulator.scenario_load import fleet_from_json, load_scenario

REPO = Path(__file__).resolve().parents[1]
DEMO_SCENARIO = REPO / "devtools" / "emulator" / "scenarios" / "demo.json"
DEMO_SUBSCRIPTION = "6b1f1ae4-2c3e-4d6e-9b7a-1a2b3c4d5e6f"
DEMO_DEV_SUBSCRIPTION = "0c2d5f3a-7b8e-4f90-a1b2-c3d4e5f60718"

# Env vars that would make DefaultAzureCredential pick something other than the emulator's identity.
_CREDENTIAL_ENV = ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_CLIENT_CERTIFICATE_PATH",
                   "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT", "MSI_SECRET",
                   "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_AUTHORITY_HOST")

# Fast defaults for tests: no per-run latency, sub-second LRO polling; override per call.
TEST_SETTINGS: dict[str, Any] = {"run_command_latency": 0.0, "lro_poll_after": 0.05}


def as_fleet(scenario: Fleet | Mapping[str, Any] | str | Path) -> Fleet:
    if isinstance(scenario, Fleet):
        return scenario
    if isinstance(scenario, Mapping):
        return fleet_from_json(scenario)
    return load_scenario(scenario)


@contextmanager
def running_emulator(scenario: Fleet | Mapping[str, Any] | str | Path, monkeypatch: pytest.MonkeyPatch, *,
                     executor_factory: ExecutorFactory | None = None, prefer_kernel: bool = False,
                     **settings: Any) -> Iterator[Emulator]:
    """Start an emulator with test settings and point this process's Azure env at it."""
    fleet = with_settings(as_fleet(scenario), **{**TEST_SETTINGS, **settings})
    with Emulator(fleet, executor_factory=executor_factory, prefer_kernel=prefer_kernel) as emu:
        for name in _CREDENTIAL_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in emu.env().items():
            monkeypatch.setenv(name, value)
        yield emu


@pytest.fixture(name="emulator")
def emulator_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """`emulator(scenario, **settings)` -> a started Emulator, stopped (and env restored) at teardown.

    Node simulation defaults to the in-process responder (fast); pass prefer_kernel=True for the netns lab.
    """
    stack: list[Any] = []

    def start(scenario: Fleet | Mapping[str, Any] | str | Path = DEMO_SCENARIO, **kwargs: Any) -> Emulator:
        manager = running_emulator(scenario, monkeypatch, **kwargs)
        emu = manager.__enter__()
        stack.append(manager)
        return emu

    yield start
    while stack:
        stack.pop().__exit__(None, None, None)


@dataclass
class ArmClientSet:
    """The real SDK clients the monitor uses, pointed at the emulator."""

    subscriptions: Any
    container: Any
    compute: Any
    network: Any
    monitor: Any


def arm_clients(emu: Emulator, subscription_id: str, credential: Any = None, **client_kwargs: Any) -> ArmClientSet:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.containerservice import ContainerServiceClient
    from azure.mgmt.monitor import MonitorManagementClient
    from azure.mgmt.network import NetworkManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    credential = credential or DefaultAzureCredential()
    common = {"base_url": emu.arm_endpoint, "credential_scopes": [emu.arm_scope], **client_kwargs}
    return ArmClientSet(
        subscriptions=SubscriptionClient(credential, **common),
        container=ContainerServiceClient(credential, subscription_id, **common),
        compute=ComputeManagementClient(credential, subscription_id, **common),
        network=NetworkManagementClient(credential, subscription_id, **common),
        monitor=MonitorManagementClient(credential, subscription_id, **common),
    )


@dataclass
class RecordingExecutor:
    """A RunCommandExecutor test double: records every run and answers with `reply(node, script, args)`."""

    reply: Callable[[str, str, Sequence[str]], RunCommandOutcome]
    delay: float = 0.0
    runs: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)
    prepared: list[tuple[tuple[NodeState, ...], ApiServerState]] = field(default_factory=list)
    updates: list[NodeState] = field(default_factory=list)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def prepare(self, nodes: Sequence[NodeState], api: ApiServerState) -> None:
        self.prepared.append((tuple(nodes), api))

    def run(self, node_name: str, script: str, args: Sequence[str]) -> RunCommandOutcome:
        with self._lock:
            self.runs.append((node_name, script, tuple(args)))
        if self.delay:
            threading.Event().wait(self.delay)
        return self.reply(node_name, script, args)

    def update(self, node: NodeState) -> None:
        self.updates.append(node)

    def close(self) -> None:
        self.closed = True


def recording_factory(executor: RecordingExecutor) -> ExecutorFactory:
    """Every cluster shares the one recording executor (prepare is recorded per cluster)."""

    def factory(cluster: ClusterSpec, overrides: Mapping[str, NodeState]) -> RecordingExecutor:
        from devtools.emulator.nodebridge import api_state, node_state

        executor.prepare([overrides.get(n.name) or node_state(n) for n in cluster.nodes], api_state(cluster))
        return executor

    return factory


def echo_reply(node: str, script: str, args: Sequence[str]) -> RunCommandOutcome:
    return RunCommandOutcome(stdout=f"node={node} args={' '.join(args)}\n", stderr="")
