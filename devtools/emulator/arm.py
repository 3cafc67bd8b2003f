"""The local Azure: an ARM endpoint (HTTPS) plus a managed-identity token endpoint, for one scenario.

    with Emulator("devtools/emulator/scenarios/demo.json") as emu:
        os.environ.update(emu.env())          # ARM_ENDPOINT, ARM_SCOPE, IDENTITY_*, REQUESTS_CA_BUNDLE
        ...  # the real azure-identity / azure-mgmt-* clients now talk to the emulator
        emu.stats.calls("ManagedClusters.List"); emu.faults.add(403, operation="NatGateways.Get")
        emu.state.add_nsg_rule(...); emu.throttle.enable()

The identity endpoint is plain HTTP on loopback, as App Service / Functions expose theirs; ARM is HTTPS
with a throwaway CA whose PEM `ca_bundle` names.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from devtools.emulator.certs import make_server_tls
from devtools.emulator.dispatch import ArmDispatcher
from devtools.emulator.faults import FaultInjector
from devtools.emulator.handlers import ArmHandlers
from devtools.emulator.http_types import Request, Response
from devtools.emulator.identity import TokenIssuer
from devtools.emulator.kubeapi import KubeApiService
from devtools.emulator.nodebridge import ExecutorFactory, default_executor_factory, node_state
from devtools.emulator.nodes import NodeState
from devtools.emulator.runcommand import RunCommandService, RunCommandSettings
from devtools.emulator.scenario import Fleet
from devtools.emulator.scenario_load import fleet_from_json, load_scenario
from devtools.emulator.server import HttpServer
from devtools.emulator.state import EmulatorState
from devtools.emulator.stats import CallStats
from devtools.emulator.throttle import TokenBuckets

IDENTITY_PATH = "/msi/token"


class Emulator:
    def __init__(self, scenario: Fleet | Mapping[str, Any] | str | Path, *,
                 executor_factory: ExecutorFactory | None = None, prefer_kernel: bool = True) -> None:
        fleet = _as_fleet(scenario)
        self.state = EmulatorState(fleet)
        self.faults = FaultInjector()
        self.stats = CallStats()
        self.throttle = TokenBuckets()
        self.runcommands = RunCommandService(executor_factory or default_executor_factory(prefer_kernel),
                                             self._runcommand_settings)
        self.state.on_node_state = self._push_node_state
        self._workdir = Path(tempfile.mkdtemp(prefix="aks-arm-emulator-"))
        self._tls = make_server_tls(self._workdir)
        self._arm: HttpServer | None = None
        self._identity: HttpServer | None = None
        self._issuer: TokenIssuer | None = None
        self._dispatcher: ArmDispatcher | None = None
        self.kube: KubeApiService | None = None  # the clusters' Kubernetes API servers (devtools.emulator.kubeapi)

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Emulator:
        arm = HttpServer(self._dispatch_arm, self._tls.context)
        self._issuer = TokenIssuer(audience=arm.base_url)
        handlers = ArmHandlers(self.state, self.runcommands)
        self.kube = KubeApiService(self.state, self.runcommands, self._issuer.resource_of)
        handlers.kube = self.kube
        self._dispatcher = ArmDispatcher(handlers, self._issuer, self.faults, self.throttle, self.stats)
        identity = HttpServer(self._dispatch_identity)
        arm.start()
        identity.start()
        self._arm, self._identity = arm, identity
        return self

    def stop(self) -> None:
        for server in (self._arm, self._identity):
            if server is not None:
                server.stop()
        self._arm = self._identity = None
        if self.kube is not None:
            self.kube.close()
        self.runcommands.close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- what clients need ------------------------------------------------------------------------

    @property
    def arm_endpoint(self) -> str:
        return self._running(self._arm).base_url

    @property
    def arm_scope(self) -> str:
        return f"{self.arm_endpoint}/.default"

    @property
    def identity_endpoint(self) -> str:
        return self._running(self._identity).base_url + IDENTITY_PATH

    @property
    def identity_header(self) -> str:
        return self._running_issuer().header_secret

    @property
    def ca_bundle(self) -> str:
        return str(self._tls.ca_bundle)

    @property
    def tokens_issued(self) -> int:
        return self._running_issuer().issued

    def env(self) -> dict[str, str]:
        """What a client process needs; REQUESTS_CA_BUNDLE replaces certifi's bundle for that process."""
        return {
            "ARM_ENDPOINT": self.arm_endpoint, "ARM_SCOPE": self.arm_scope,
            "IDENTITY_ENDPOINT": self.identity_endpoint, "IDENTITY_HEADER": self.identity_header,
            "REQUESTS_CA_BUNDLE": self.ca_bundle, "SSL_CERT_FILE": self.ca_bundle,
        }

    # --- internals --------------------------------------------------------------------------------

    def _runcommand_settings(self) -> RunCommandSettings:
        settings = self.state.settings
        return RunCommandSettings(latency=settings.run_command_latency, timeout=settings.run_command_timeout,
                                  per_vm_per_minute=settings.run_command_per_vm_per_minute)

    def _push_node_state(self, node_name: str, new_state: NodeState | None) -> None:
        ref = self.state.node_by_name(node_name)
        if ref is None:
            raise KeyError(f"no node {node_name}")
        if new_state is not None:
            if new_state.ip != ref.node.ip:
                raise ValueError(f"node {node_name}: its IP is {ref.node.ip}, a NodeState cannot move it")
            power = "running" if new_state.running else (
                ref.node.power_state if not ref.node.running else "deallocated")
            if power != ref.node.power_state:
                self.state.set_node(node_name, power_state=power)
                ref = self.state.node_by_name(node_name)
                assert ref is not None
        state = new_state or node_state(ref.node)
        self.runcommands.update_node(ref.cluster, state)

    def _dispatch_arm(self, request: Request) -> Response:
        if self._dispatcher is None:
            return Response(503, {"error": {"code": "ServiceUnavailable", "message": "emulator starting"}})
        return self._dispatcher(request)

    def _dispatch_identity(self, request: Request) -> Response:
        if request.path != IDENTITY_PATH or request.method != "GET":
            return Response(404, {"statusCode": 404, "message": "Not found"})
        answer = self._running_issuer().answer(request.query, request.headers)
        return Response(answer.status, answer.body)

    def _running(self, server: HttpServer | None) -> HttpServer:
        if server is None:
            raise RuntimeError("the emulator is not running: use `with Emulator(...)` or call start()")
        return server

    def _running_issuer(self) -> TokenIssuer:
        if self._issuer is None:
            raise RuntimeError("the emulator is not running: use `with Emulator(...)` or call start()")
        return self._issuer


def _as_fleet(scenario: Fleet | Mapping[str, Any] | str | Path) -> Fleet:
    if isinstance(scenario, Fleet):
        return scenario
    if isinstance(scenario, Mapping):
        return fleet_from_json(scenario)
    return load_scenario(scenario)


def with_settings(fleet: Fleet, **changes: Any) -> Fleet:
    """A copy of `fleet` with other behaviour settings (page_size, run_command_latency, ...)."""
    return dataclasses.replace(fleet, settings=dataclasses.replace(fleet.settings, **changes))
