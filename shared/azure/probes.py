"""Node probes through VMSS action run-command: which nodes, in what order, how many at once.

Run-commands take tens of seconds each, so they are issued concurrently (bounded per scale set, since
the run-command extension serialises per VM and Azure throttles it per VM). Every failure mode becomes
an `Unavailable` for that node with a reason an on-call engineer can act on.

Bounded work: a Prober may be given a `deadline` (monotonic seconds). Waits and 409 back-offs never run
past it, and nodes whose turn comes too late are `Unavailable` with that reason, so a queue worker ends
well inside `functionTimeout` instead of being killed and redelivered. A `ledger` records each node's
run-command while it is in flight: a second attempt (a redelivered message) finds the record and leaves
that node `unknown` instead of starting a second run-command next to the first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

from shared.azure.clients import ArmClients, to_rest
from shared.azure.collect import describe_http_error
from shared.azure.ids import last_name
from shared.logcontext import run_in_context
from shared.probe.frame import parse_run_command_output
from shared.probe.params import MAX_TARGETS, build_parameters, load_script
from shared.progress import Progress
from shared.snapshot import ClusterSnapshot, Node, NodeProbe, Unavailable
from shared.tunnel import TUNNEL_COMPONENT, TUNNEL_CONTAINERS, api_host, tunnel_ports

log = logging.getLogger(__name__)

PER_SCALE_SET = 8
MAX_CONFLICT_RETRIES = 6
RUN_COMMAND_TIMEOUT_S = 300.0
ALL_TUNNEL_CHECKS = ("tcp/443", "tcp/9000", "udp/1194")
MIN_RUN_S = 20.0  # below this much budget left, a run-command is not started (it could not come back in time)


class RunCommandLedger(Protocol):
    """Where in-flight run-commands are recorded (Table storage in the Functions app)."""

    def claim(self, node_key: str) -> str | None:
        """Record that this attempt starts a run-command on the node: None if it may, else why not."""
        ...

    def release(self, node_key: str) -> None:
        """The run-command is over (answered or refused): another attempt may start one."""
        ...


def node_key(node: Node) -> str:
    """The VMSS VM a run-command runs on: the scale set id and the instance id, lower-cased."""
    return f"{node.vmss_id}/virtualMachines/{node.instance_id}".lower()


@dataclass(frozen=True)
class ProbePlan:
    node: Node
    targets: tuple[str, ...]


def choose_nodes(snapshot: ClusterSnapshot, mode: str, per_pool: int, rotation: int) -> list[Node]:
    """Round one: every node (`all`) or a rotating sample per pool, system-looking pools first."""
    if mode == "off" or isinstance(snapshot.nodes, Unavailable):
        return []
    running = [n for n in snapshot.nodes if n.running and n.private_ip]
    if mode == "all":
        return running
    chosen: list[Node] = []
    pools = sorted({n.pool for n in running})
    for pool in pools:
        members = [n for n in running if n.pool == pool]
        start = rotation % len(members)
        rotated = members[start:] + members[:start]
        chosen.extend(rotated[:per_pool])
    return chosen


def plan_targets(probers: list[Node], targets: list[str], spare: list[Node]) -> list[ProbePlan]:
    """Give each prober at most MAX_TARGETS addresses while still covering every node.

    A large cluster needs more probers than the sample: spare nodes are added until the target list,
    cut into MAX_TARGETS slices, has one prober per slice. Extra probers repeat slices round-robin.
    """
    chunks = [tuple(targets[i : i + MAX_TARGETS]) for i in range(0, len(targets), MAX_TARGETS)] or [()]
    chosen = list(probers)
    for node in spare:
        if len(chosen) >= len(chunks):
            break
        if node not in chosen:
            chosen.append(node)
    return [ProbePlan(node, chunks[i % len(chunks)]) for i, node in enumerate(chosen)]


class Prober:
    def __init__(self, clients: ArmClients, *, timeout_s: float = RUN_COMMAND_TIMEOUT_S,
                 connect_timeout_s: int = 3, sleep: Callable[[float], None] = time.sleep,
                 deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
                 ledger: RunCommandLedger | None = None) -> None:
        self.clients = clients
        self.timeout_s = timeout_s
        self.deadline = deadline
        self._clock = clock
        self.ledger = ledger
        self.connect_timeout_s = connect_timeout_s
        self._sleep = sleep
        self._script = load_script()
        self._locks: dict[str, threading.Semaphore] = {}
        self._guard = threading.Lock()
        self.run_commands = 0

    def _bound(self, vmss_id: str) -> threading.Semaphore:
        with self._guard:
            return self._locks.setdefault(vmss_id.lower(), threading.Semaphore(PER_SCALE_SET))

    def probe(self, snapshot: ClusterSnapshot, mode: str, *, per_pool: int = 2, rotation: int | None = None,
              progress: Progress | None = None, must_probe: set[str] | frozenset[str] = frozenset()) -> ClusterSnapshot:
        """Probe, then inspect unreachable nodes that were not probed yet; returns the enriched snapshot.

        `must_probe` names nodes with open node-level findings: they are always probed, so a rotating
        sample can only resolve a finding on a node it actually looked at.
        """
        if mode == "off" or snapshot.unsupported_reason or isinstance(snapshot.nodes, Unavailable):
            return replace(snapshot, probes_mode="off")
        turn = int(time.time() // 1800) if rotation is None else rotation
        first = choose_nodes(snapshot, mode, per_pool, turn)
        forced = {name.lower() for name in must_probe}  # findings store Kubernetes node names; case may differ
        first += [n for n in snapshot.nodes if n.name.lower() in forced and n not in first and n.running]
        all_ips = [n.private_ip for n in snapshot.nodes if n.running and n.private_ip]
        plans = plan_targets(first, all_ips, [n for n in snapshot.nodes if n.running and n.private_ip])
        results = self._run_all(snapshot, plans, progress)
        probed = {n.name for n in first}
        unreachable = {ip for r in results.values() if isinstance(r, NodeProbe)
                       for ip, outcome in r.reachability.items() if outcome != "ok"}
        second = [n for n in snapshot.nodes if n.private_ip in unreachable and n.name not in probed and n.running]
        if second and self._remaining() < MIN_RUN_S:
            results.update({n.name: Unavailable(self._late_reason(n)) for n in second})
            second = []
        if second:
            results.update(self._run_all(snapshot, [ProbePlan(n, ()) for n in second], progress))
        for node in snapshot.nodes:
            if not node.running and node.name in probed:
                results[node.name] = Unavailable("the node is not running (deallocated or stopped)")
        return replace(snapshot, probes=results, probes_mode=mode, tunnel=_tunnel_of(results))

    def _run_all(self, snapshot: ClusterSnapshot, plans: Sequence[ProbePlan],
                 progress: Progress | None) -> dict[str, NodeProbe | Unavailable]:
        results: dict[str, NodeProbe | Unavailable] = {}
        done = 0
        lock = threading.Lock()

        def one(plan: ProbePlan) -> None:
            nonlocal done
            outcome = self.run_on(snapshot, plan)
            with lock:
                results[plan.node.name] = outcome
                done += 1
                if progress is not None:
                    progress(done, len(plans), plan.node.name)

        if not plans:
            return results
        with ThreadPoolExecutor(max_workers=min(32, len(plans)), thread_name_prefix="probe") as pool:
            list(pool.map(run_in_context(one), plans))
        return results

    def _remaining(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self._clock()

    def _late_reason(self, node: Node) -> str:
        return (f"{node.name} was not probed: this run's time budget ran out first (the check stops well "
                "inside the function timeout rather than be killed); it is probed again next cycle")

    def run_on(self, snapshot: ClusterSnapshot, plan: ProbePlan) -> NodeProbe | Unavailable:
        node = plan.node
        try:
            parameters = build_parameters(
                api_host(snapshot) if not api_host(snapshot).startswith("*") else "localhost",
                tunnel_ports(snapshot) if snapshot.private or snapshot.tunnel != "unknown" else ALL_TUNNEL_CHECKS,
                plan.targets,
                10250,
                self.connect_timeout_s,
            )
        except ValueError as exc:
            return Unavailable(f"refused to build probe parameters: {exc}")
        body = {"commandId": "RunShellScript", "script": self._script.splitlines(), "parameters": parameters}
        with self._bound(node.vmss_id):
            if self._remaining() < MIN_RUN_S:
                return Unavailable(self._late_reason(node))
            busy = self.ledger.claim(node_key(node)) if self.ledger is not None else None
            if busy is not None:
                return Unavailable(busy)
            outcome, finished = self._run_with_retries(snapshot, node, body)
            if finished and self.ledger is not None:
                self.ledger.release(node_key(node))
            return outcome

    def _run_with_retries(self, snapshot: ClusterSnapshot, node: Node,
                          body: dict[str, Any]) -> tuple[NodeProbe | Unavailable, bool]:
        """The outcome, and whether the run-command is over (False: it may still be running on the node)."""
        from azure.core.exceptions import AzureError, HttpResponseError

        compute = self.clients.compute(snapshot.subscription_id)
        delay = 5.0
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                self.run_commands += 1
                poller = compute.virtual_machine_scale_set_vms.begin_run_command(
                    snapshot.node_resource_group, last_name(node.vmss_id), node.instance_id, body)
            except HttpResponseError as exc:
                if exc.status_code == 409 and attempt < MAX_CONFLICT_RETRIES and _in_progress(exc):
                    if self._remaining() < delay + MIN_RUN_S:
                        return Unavailable(f"run-command stayed busy on {node.name} (another run-command is in "
                                           "progress) until this run's time budget ran out"), True
                    log.info("run-command busy on %s; retrying in %.0f s", node.name, delay)
                    self._sleep(delay)
                    delay = min(delay * 2, 60)
                    continue
                if exc.status_code == 409:
                    return Unavailable(f"run-command refused on {node.name}: {_message(exc)}"), True
                return Unavailable(describe_http_error(exc, f"run-command on {node.name}")), True
            except AzureError as exc:
                return Unavailable(f"run-command on {node.name} could not be started: {_message(exc)}"), True
            wait = min(self.timeout_s, max(0.0, self._remaining()))
            try:
                poller.wait(wait)
                if not poller.done():
                    late = f"run-command did not finish within {wait:g} s"
                    return Unavailable(_no_output_reason(node, late)), False
                result = to_rest(poller.result())
            except AzureError as exc:  # accepted, then failed or timed out on the node side
                return Unavailable(_no_output_reason(node, f"run-command failed: {_message(exc)}")), True
            return _parse_result(node, result), True
        return Unavailable(f"run-command stayed busy on {node.name} after {MAX_CONFLICT_RETRIES} retries"), True


def _in_progress(exc: Exception) -> bool:
    """Azure's 409 while another run-command runs on the VM: "Run command extension execution is in progress"."""
    return "in progress" in _message(exc).lower()


def _message(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or str(exc)
    return message.splitlines()[0] if message else type(exc).__name__


def _no_output_reason(node: Node, what: str) -> str:
    return (
        f"{what} on {node.name}: no output came back. The run-command extension reports over HTTPS (443), so a node "
        "whose egress on 443 is broken cannot return results; that itself points at egress-tunnel-port-blocked"
    )


def _parse_result(node: Node, result: dict[str, Any]) -> NodeProbe | Unavailable:
    statuses = result.get("value") or []
    if not statuses:
        return Unavailable(f"run-command on {node.name} returned no status")
    status = statuses[0]
    code = str(status.get("code", ""))
    message = str(status.get("message", ""))
    if "failed" in code.lower() and "[stdout]" not in message:
        return Unavailable(f"run-command on {node.name} failed: {message.splitlines()[0] if message else code}")
    return parse_run_command_output(message, node.name)


def _tunnel_of(results: dict[str, NodeProbe | Unavailable]) -> str:
    """The report's tunnel component, from the agent containers crictl saw running."""
    seen = {c for r in results.values() if isinstance(r, NodeProbe) and r.containers for c in r.containers}
    for container in TUNNEL_CONTAINERS:
        if container in seen:
            return TUNNEL_COMPONENT[container]
    return "unknown"
