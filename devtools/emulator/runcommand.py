"""Action run-command on scale-set VMs, with the behaviours that shape a real monitor's design.

Azure runs at most one run-command per VM (a second gets 409 Conflict), throttles each VM to a few
run-commands per minute (429 + Retry-After), refuses deallocated or stopped VMs (409
OperationNotAllowed), takes tens of seconds per run, and never returns output from a VM whose agent
cannot report back: that operation stays InProgress until the run-command timeout and then fails.

Status is computed lazily from timestamps (accepted at, result ready at, timeout), so thousands of
concurrent long "latencies" cost no sleeping threads; only the script itself runs on a worker.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devtools.emulator.nodebridge import ExecutorFactory
from devtools.emulator.nodes import NodeState, RunCommandExecutor
from devtools.emulator.scenario import ClusterSpec, NodeSpec
from shared.probe.frame import wrap_run_command_message

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
MAX_SCRIPT_BYTES = 256 * 1024
THROTTLE_WINDOW = 60.0
TIMEOUT_ERROR = {
    "code": "VMExtensionProvisioningTimeout",
    "message": "Provisioning of VM extension RunCommandLinux has timed out. Extension provisioning has taken too "
               "long to complete. The extension did not report a message. More information on troubleshooting is "
               "available at https://aka.ms/VMExtensionRunCommandLinuxTroubleshoot",
}


class RunCommandRefused(Exception):
    """Azure refuses the POST itself; carries the status, ARM error body and extra headers."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"code": code, "message": message}
        self.headers = headers or {}


@dataclass
class Operation:
    id: str
    subscription_id: str
    location: str
    vm_key: str
    node: str
    accepted_at: float
    accepted_utc: datetime
    latency: float
    timeout: float
    finished_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    ended_utc: datetime | None = field(default=None)

    def status(self, now: float) -> str:
        ready = self.finished_at is not None and now >= max(self.finished_at, self.accepted_at + self.latency)
        if ready and self.error is not None:
            return FAILED
        if ready and self.result is not None:
            return SUCCEEDED
        if now - self.accepted_at >= self.timeout:
            return FAILED
        return IN_PROGRESS

    def failure(self, now: float) -> dict[str, str]:
        if self.error is not None and self.finished_at is not None and now >= self.accepted_at + self.latency:
            return self.error
        return dict(TIMEOUT_ERROR)


@dataclass(frozen=True)
class RunCommandSettings:
    latency: float
    timeout: float
    per_vm_per_minute: int | None


class RunCommandService:
    def __init__(self, factory: ExecutorFactory, settings: Callable[[], RunCommandSettings],
                 clock: Callable[[], float] = time.monotonic, workers: int = 32) -> None:
        self._factory = factory
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._operations: dict[str, Operation] = {}
        self._by_vm: dict[str, str] = {}
        self._starts: dict[str, deque[float]] = {}
        self._executors: dict[str, RunCommandExecutor] = {}
        self._executor_locks: dict[str, threading.Lock] = {}
        self._overrides: dict[str, NodeState] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="runcommand")
        self.executed = 0

    def start(self, cluster: ClusterSpec, node: NodeSpec, vm_key: str, vm_display: str, body: Any) -> Operation:
        """Validate, apply Azure's refusals in Azure's order, then accept and run in the background."""
        script, args = _parse_input(body)
        settings = self._settings()
        if node.power_state != "running":
            state = "deallocated" if node.power_state.startswith("dealloc") else "not running"
            raise RunCommandRefused(409, "OperationNotAllowed",
                                    f"Operation 'RunCommand' is not allowed on VM '{vm_display}' since the VM is "
                                    f"{state}.")
        with self._lock:
            now = self._clock()
            current = self._by_vm.get(vm_key)
            if current is not None and self._operations[current].status(now) == IN_PROGRESS:
                raise RunCommandRefused(409, "Conflict", "Run command extension execution is in progress. Please "
                                                         "wait for completion before invoking a run command.")
            starts = self._starts.setdefault(vm_key, deque())
            while starts and now - starts[0] >= THROTTLE_WINDOW:
                starts.popleft()
            limit = settings.per_vm_per_minute
            if limit is not None and len(starts) >= limit:
                wait = max(1, int(THROTTLE_WINDOW - (now - starts[0])) + 1)
                raise RunCommandRefused(
                    429, "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type - "
                    "Write_RunCommand. For more information, see - https://aka.ms/computethrottling",
                    {"Retry-After": str(wait)})
            starts.append(now)
            operation = Operation(id=str(uuid.uuid4()), subscription_id=cluster.subscription_id,
                                  location=cluster.location, vm_key=vm_key, node=node.name, accepted_at=now,
                                  accepted_utc=datetime.now(UTC), latency=settings.latency,
                                  timeout=settings.timeout)
            self._operations[operation.id] = operation
            self._by_vm[vm_key] = operation.id
        self._pool.submit(self._execute, operation, cluster, node, script, args)
        return operation

    def _execute(self, operation: Operation, cluster: ClusterSpec, node: NodeSpec, script: str,
                 args: Sequence[str]) -> None:
        result: dict[str, Any] | None = None
        error: dict[str, str] | None = None
        try:
            outcome = self._executor(cluster).run(node.name, script, list(args))
            message = wrap_run_command_message(outcome.stdout, outcome.stderr)
            result = {"value": [{"code": "ProvisioningState/succeeded", "level": "Info",
                                 "displayStatus": "Provisioning succeeded", "message": message}]}
        except Exception as err:  # a broken simulation must surface as Azure's extension failure, not hang
            error = {"code": "VMExtensionProvisioningError",
                     "message": f"VM has reported a failure when processing extension 'RunCommandLinux'. "
                                f"Error message: \"{type(err).__name__}: {err}\"."}
        with self._lock:
            self.executed += 1
            if node.output_lost:
                return  # the script ran, but nothing ever reaches Azure: the poller sees InProgress, then timeout
            operation.result, operation.error = result, error
            operation.finished_at = self._clock()

    def _executor(self, cluster: ClusterSpec) -> RunCommandExecutor:
        key = cluster.id.lower()
        with self._lock:
            lock = self._executor_locks.setdefault(key, threading.Lock())
        with lock:  # prepare each cluster once, outside the global lock (netns setup takes a while)
            with self._lock:
                existing = self._executors.get(key)
            if existing is not None:
                return existing
            overrides = {n.name: self._overrides[n.name] for n in cluster.nodes if n.name in self._overrides}
            executor = self._factory(cluster, overrides)
            with self._lock:
                self._executors[key] = executor
            return executor

    def executor_for(self, cluster: ClusterSpec) -> RunCommandExecutor:
        """The cluster's node simulation (built on first use): the emulated Kubernetes API dials through it."""
        return self._executor(cluster)

    def current_state(self, node: NodeSpec) -> NodeState:
        """What is true inside a node now: a state tests pushed, else the scenario's."""
        from devtools.emulator.nodebridge import node_state

        with self._lock:
            pushed = self._overrides.get(node.name)
        return pushed or node_state(node)

    def update_node(self, cluster: ClusterSpec, node_state: NodeState) -> None:
        """Forward a changed NodeState to a live executor, or keep it for when the executor is built."""
        with self._lock:
            self._overrides[node_state.name] = node_state
            executor = self._executors.get(cluster.id.lower())
        if executor is not None:
            executor.update(node_state)

    def operation(self, operation_id: str) -> Operation | None:
        with self._lock:
            return self._operations.get(operation_id)

    def status_of(self, operation: Operation) -> str:
        return operation.status(self._clock())

    def failure_of(self, operation: Operation) -> dict[str, str]:
        return operation.failure(self._clock())

    def now(self) -> float:
        return self._clock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            executors = list(self._executors.values())
            self._executors.clear()
        for executor in executors:
            executor.close()


def _parse_input(body: Any) -> tuple[str, list[str]]:
    if not isinstance(body, dict):
        raise RunCommandRefused(400, "InvalidRequestContent", "The request content was invalid and could not be "
                                                              "deserialized.")
    command = body.get("commandId")
    if not command:
        raise RunCommandRefused(400, "InvalidParameter", "Required parameter 'commandId' is missing (null).")
    if command != "RunShellScript":
        raise RunCommandRefused(409, "Conflict", f"Run command '{command}' is not supported for Linux VMs; use "
                                                 "'RunShellScript'.")
    lines = body.get("script")
    if not isinstance(lines, list) or not lines or not all(isinstance(x, str) for x in lines):
        raise RunCommandRefused(400, "InvalidParameter", "Required parameter 'script' is missing or empty.")
    script = "\n".join(lines)
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise RunCommandRefused(400, "InvalidParameter", "The script exceeds the maximum allowed size of 256 KB.")
    parameters = body.get("parameters") or []
    if not isinstance(parameters, list) or not all(isinstance(p, dict) and "value" in p for p in parameters):
        raise RunCommandRefused(400, "InvalidParameter", "Each run command parameter needs a name and a value.")
    # Linux action run-command passes the values as positional arguments ($1 $2 ...) in list order.
    return script, [str(p["value"]) for p in parameters]
