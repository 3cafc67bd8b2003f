"""Action run-command through the REAL compute SDK poller: LRO, 409/429 refusals, timeouts, node execution."""

from __future__ import annotations

import time

import pytest
from azure.core.exceptions import HttpResponseError

from devtools.emulator.nodebridge import node_state
from devtools.emulator.nodes import RunCommandOutcome
from shared.probe.frame import parse_run_command_output, split_run_command_message
from shared.probe.params import build_parameters, load_script
from tests.emulator_fixtures import (  # noqa: F401 - emulator_fixture provides the `emulator` fixture
    DEMO_DEV_SUBSCRIPTION,
    DEMO_SUBSCRIPTION,
    RecordingExecutor,
    arm_clients,
    echo_reply,
    emulator_fixture,
    recording_factory,
)


def _cluster(emu, name):
    return next(c for c in emu.state.fleet.clusters if c.name == name)


def _target(emu, name="aks-healthy", pool_index=0, instance=0):
    cluster = _cluster(emu, name)
    pool = cluster.pools[pool_index]
    return cluster, pool, pool.nodes[instance]


def _body(*values: str) -> dict:
    return {"commandId": "RunShellScript", "script": ["#!/bin/bash", "echo \"$1\" \"$2\""],
            "parameters": [{"name": f"p{i}", "value": v} for i, v in enumerate(values)]}


def _begin(compute, cluster, pool, instance, body):
    return compute.virtual_machine_scale_set_vms.begin_run_command(cluster.node_resource_group, pool.vmss_name,
                                                                   str(instance), body)


def test_lro_completes_with_linux_message_and_positional_args(emulator):
    recorder = RecordingExecutor(echo_reply)
    emu = emulator(executor_factory=recording_factory(recorder), run_command_latency=0.3)
    cluster, pool, node = _target(emu)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    started = time.monotonic()
    result = _begin(compute, cluster, pool, node.instance_id, _body("hello", "world")).result()
    assert time.monotonic() - started >= 0.3  # the configured latency is honoured
    status = result.value[0]
    assert (status.code, status.level, status.display_status) == ("ProvisioningState/succeeded", "Info",
                                                                  "Provisioning succeeded")
    assert status.message == f"Enable succeeded: \n[stdout]\nnode={node.name} args=hello world\n\n[stderr]\n"
    assert recorder.runs == [(node.name, "#!/bin/bash\necho \"$1\" \"$2\"", ("hello", "world"))]
    nodes, api = recorder.prepared[0]
    assert [n.name for n in nodes] == [n.name for n in cluster.nodes]
    assert api.host == cluster.api_server.fqdn
    assert emu.stats.calls("VirtualMachineScaleSetVMs.RunCommand") == 1
    assert emu.stats.calls("ComputeOperations.Get") >= 2  # polled Azure-AsyncOperation, then the Location result


def test_second_run_on_busy_vm_is_409_then_succeeds(emulator):
    recorder = RecordingExecutor(echo_reply)
    emu = emulator(executor_factory=recording_factory(recorder), run_command_latency=1.0)
    cluster, pool, node = _target(emu)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    first = _begin(compute, cluster, pool, node.instance_id, _body("a"))
    with pytest.raises(HttpResponseError) as busy:
        _begin(compute, cluster, pool, node.instance_id, _body("b"))
    assert busy.value.status_code == 409
    assert busy.value.error.code == "Conflict"
    assert "Run command extension execution is in progress" in busy.value.error.message
    other = _begin(compute, cluster, pool, pool.nodes[1].instance_id, _body("c"))  # other VMs are independent
    assert "args=a" in first.result().value[0].message
    assert "args=c" in other.result().value[0].message
    assert "args=b" in _begin(compute, cluster, pool, node.instance_id, _body("b")).result().value[0].message


def test_per_vm_throttle_answers_429_with_retry_after(emulator):
    emu = emulator(executor_factory=recording_factory(RecordingExecutor(echo_reply)), run_command_per_vm_per_minute=2)
    cluster, pool, node = _target(emu)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION, retry_total=0).compute
    for value in ("1", "2"):
        _begin(compute, cluster, pool, node.instance_id, _body(value)).result()
    with pytest.raises(HttpResponseError) as throttled:
        _begin(compute, cluster, pool, node.instance_id, _body("3"))
    assert throttled.value.status_code == 429
    assert 1 <= int(throttled.value.response.headers["Retry-After"]) <= 61
    _begin(compute, cluster, pool, pool.nodes[1].instance_id, _body("x")).result()  # per VM, not per scale set
    assert emu.stats.throttled == 1


def test_deallocated_instance_is_refused(emulator):
    recorder = RecordingExecutor(echo_reply)
    emu = emulator(executor_factory=recording_factory(recorder))
    cluster, pool, node = _target(emu, "aks-iptables", pool_index=1)
    compute = arm_clients(emu, DEMO_DEV_SUBSCRIPTION).compute
    with pytest.raises(HttpResponseError) as refused:
        _begin(compute, cluster, pool, node.instance_id, _body())
    assert refused.value.status_code == 409
    assert refused.value.error.code == "OperationNotAllowed"
    assert "deallocated" in refused.value.error.message
    assert recorder.runs == []
    emu.state.set_node(node.name, power_state="running")
    assert _begin(compute, cluster, pool, node.instance_id, _body()).result().value[0].message


def test_node_that_cannot_report_back_times_out_after_running_the_script(emulator):
    recorder = RecordingExecutor(echo_reply)
    emu = emulator(executor_factory=recording_factory(recorder), run_command_timeout=1.0)
    cluster, pool, node = _target(emu)
    emu.state.set_node(node.name, output_lost=True)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    poller = _begin(compute, cluster, pool, node.instance_id, _body("lost"))
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert "VMExtensionProvisioningTimeout" in str(failed.value)
    assert [r[0] for r in recorder.runs] == [node.name]  # it did run on the node


def test_simulation_failure_becomes_extension_error(emulator):
    def broken(node: str, script: str, args) -> RunCommandOutcome:
        raise RuntimeError("lab exploded")

    emu = emulator(executor_factory=recording_factory(RecordingExecutor(broken)))
    cluster, pool, node = _target(emu)
    with pytest.raises(HttpResponseError) as failed:
        _begin(arm_clients(emu, DEMO_SUBSCRIPTION).compute, cluster, pool, node.instance_id, _body()).result()
    assert "VMExtensionProvisioningError" in str(failed.value)
    assert "lab exploded" in str(failed.value)


def test_bad_request_bodies_are_refused(emulator):
    emu = emulator(executor_factory=recording_factory(RecordingExecutor(echo_reply)))
    cluster, pool, node = _target(emu)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    with pytest.raises(HttpResponseError) as no_script:
        _begin(compute, cluster, pool, node.instance_id, {"commandId": "RunShellScript", "script": []})
    assert no_script.value.status_code == 400
    with pytest.raises(HttpResponseError) as missing_vm:
        _begin(compute, cluster, pool, 42, _body())
    assert missing_vm.value.status_code == 404


def test_update_node_reaches_the_executor_and_the_power_state(emulator):
    recorder = RecordingExecutor(echo_reply)
    emu = emulator(executor_factory=recording_factory(recorder))
    cluster, pool, node = _target(emu)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    _begin(compute, cluster, pool, node.instance_id, _body()).result()  # builds the cluster's executor
    changed = node_state(node).__class__(**{**node_state(node).__dict__, "kubelet_listening": False})
    emu.state.update_node(changed)
    assert recorder.updates == [changed]
    stopped = changed.__class__(**{**changed.__dict__, "running": False})
    emu.state.update_node(stopped)
    assert emu.state.node_by_name(node.name).node.power_state == "deallocated"
    with pytest.raises(HttpResponseError) as refused:
        _begin(compute, cluster, pool, node.instance_id, _body())
    assert refused.value.status_code == 409


@pytest.mark.parametrize("kernel", [False, True], ids=["responder", "netns-lab"])
def test_real_probe_script_through_the_node_simulation(emulator, kernel):
    """End to end: the repo's probe script, run by the node simulation, parsed back from the SDK result."""
    from devtools.emulator.nodelab import lab_unavailable_reason

    if kernel and lab_unavailable_reason() is not None:
        pytest.skip(f"netns node lab unavailable: {lab_unavailable_reason()}")
    emu = emulator(prefer_kernel=kernel)
    cluster, pool, node = _target(emu, "aks-ufw", instance=1)
    compute = arm_clients(emu, DEMO_SUBSCRIPTION).compute
    targets = [n.ip for n in cluster.nodes if n.name != node.name]
    body = {"commandId": "RunShellScript", "script": load_script().splitlines(),
            "parameters": build_parameters(cluster.api_server.fqdn, ["tcp/443"], targets, timeout=1)}
    result = _begin(compute, cluster, pool, node.instance_id, body).result()
    message = result.value[0].message
    stdout_stderr = split_run_command_message(message)
    assert stdout_stderr is not None, message
    probe = parse_run_command_output(message, node.name)
    assert not hasattr(probe, "reason"), probe
    assert probe.ufw_status is not None
    assert "Status: active" in probe.ufw_status
    assert set(probe.reachability) == set(targets)
    assert all(v == "ok" for v in probe.reachability.values())
    assert probe.egress == {"tcp/443": "ok"}
    assert probe.containers == ("konnectivity-agent",)


@pytest.mark.parametrize("kernel", [False, True], ids=["responder", "netns-lab"])
def test_probe_sees_iptables_drop_on_a_peer(emulator, kernel):
    from devtools.emulator.nodelab import lab_unavailable_reason

    if kernel and lab_unavailable_reason() is not None:
        pytest.skip(f"netns node lab unavailable: {lab_unavailable_reason()}")
    emu = emulator(prefer_kernel=kernel)
    cluster, pool, node = _target(emu, "aks-iptables", instance=0)
    blocked = pool.nodes[2]
    body = {"commandId": "RunShellScript", "script": load_script().splitlines(),
            "parameters": build_parameters(cluster.api_server.fqdn, ["tcp/9000"], [pool.nodes[1].ip, blocked.ip],
                                           timeout=1)}
    result = _begin(arm_clients(emu, DEMO_DEV_SUBSCRIPTION).compute, cluster, pool, node.instance_id, body).result()
    probe = parse_run_command_output(result.value[0].message, node.name)
    assert probe.reachability == {pool.nodes[1].ip: "ok", blocked.ip: "timeout"}
    assert probe.containers == ("tunnel-front",)
