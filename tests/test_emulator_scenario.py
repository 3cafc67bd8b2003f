"""Scenario loading, AKS naming, IP allocation, the synthetic fleet generator and the CLI."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
import requests

from devtools.emulator import naming
from devtools.emulator.fleetgen import PROBLEMS, generate_fleet, generate_scenario
from devtools.emulator.scenario_load import ScenarioError, fleet_from_json, load_scenario
from tests.emulator_fixtures import DEMO_SCENARIO, REPO


def _one_cluster(**cluster: object) -> dict:
    base = {"name": "aks1", "resourceGroup": "rg1", "agentPools": [{"name": "nodepool1", "count": 3}]}
    return {"subscriptions": [{"id": "00000000-0000-0000-0000-000000000001", "clusters": [{**base, **cluster}]}]}


def test_demo_fleet_covers_every_cause_with_distinct_node_ips():
    fleet = load_scenario(DEMO_SCENARIO)
    assert len(fleet.subscriptions) == 2
    by_name = {c.name: c for c in fleet.clusters}
    assert by_name["aks-private"].private
    assert any(r["access"] == "Deny" and r["destinationPortRange"] == "10250"
               for n in fleet.nsgs if n.name == "nsg-snet-aks" for r in n.rules)
    assert by_name["aks-nsg-deny"].activity[0].caller == "jane.doe@contoso.com"
    assert any(n.sim.get("ufw") for n in by_name["aks-ufw"].nodes)
    assert any("DROP" in str(n.sim.get("iptables")) for n in by_name["aks-iptables"].nodes)
    assert all(n.sim.get("egressBlocked") == ["tcp/443"] for n in by_name["aks-egress-fw"].nodes)
    assert by_name["aks-egress-fw"].outbound_type == "userDefinedRouting"
    assert any(s.dimensions.get("ConnectionState") == "failed" and max(s.values) > 0
               for s in by_name["aks-snat"].lb_metrics)
    assert by_name["aks-legacy-as"].pools[0].type == "AvailabilitySet"
    for cluster in fleet.clusters:
        ips = [n.ip for n in cluster.nodes]
        assert len(set(ips)) == len(ips)
        network = ipaddress.IPv4Network(cluster.vnet.subnets[0].prefix).supernet(new_prefix=16)
        assert all(ipaddress.IPv4Address(ip) in network for ip in ips)
        assert ipaddress.IPv4Address(cluster.api_server.ip) not in network


def test_aks_names_follow_aks_conventions():
    assert naming.computer_name("nodepool1", "12345678", 0) == "aks-nodepool1-12345678-vmss000000"
    assert naming.computer_name("nodepool1", "12345678", 37) == "aks-nodepool1-12345678-vmss000011"
    assert naming.vm_name("nodepool1", "12345678", 37) == "aks-nodepool1-12345678-vmss_37"
    assert naming.node_resource_group("rg", "aks", "eastus") == "MC_rg_aks_eastus"
    assert re.fullmatch(r"\d{8}", naming.cluster_hash("/subscriptions/x/resourcegroups/rg/providers/p/aks"))


def test_scenario_mistakes_fail_at_load():
    with pytest.raises(ScenarioError, match="used twice"):
        fleet_from_json(_one_cluster(agentPools=[{"name": "p", "count": 2, "nodes": [
            {"index": 0, "ip": "10.224.0.9"}, {"index": 1, "ip": "10.224.0.9"}]}]))
    with pytest.raises(ScenarioError, match="outside subnet"):
        fleet_from_json(_one_cluster(agentPools=[{"name": "p", "count": 1, "node": {"ip": "192.168.0.4"}}]))
    with pytest.raises(ScenarioError, match="unknown node keys"):
        fleet_from_json(_one_cluster(agentPools=[{"name": "p", "count": 1, "node": {"ufwz": {}}}]))
    with pytest.raises(ScenarioError, match="tunnel"):
        fleet_from_json(_one_cluster(tunnel="ssh"))


def test_pinned_ips_are_skipped_by_automatic_allocation():
    fleet = fleet_from_json(_one_cluster(agentPools=[{"name": "p", "count": 3, "nodes": [
        {"index": 2, "ip": "10.224.0.4"}]}]))
    assert [n.ip for n in fleet.clusters[0].nodes] == ["10.224.0.5", "10.224.0.6", "10.224.0.4"]


def test_generated_fleet_is_deterministic_and_mixes_problems():
    first = generate_scenario(4, 7, seed=3)
    assert first == generate_scenario(4, 7, seed=3)
    fleet = generate_fleet(subscriptions=4, clusters_per_subscription=7, problem_every=2, seed=3)
    assert len(fleet.clusters) == 28
    assert len({c.id for c in fleet.clusters}) == 28
    assert len({s.id for s in fleet.subscriptions}) == 4
    kinds = Counter()
    for cluster in fleet.clusters:
        kinds["private"] += cluster.private
        kinds["natgw"] += cluster.outbound_type == "managedNATGateway"
        kinds["ufw"] += any(n.sim.get("ufw") for n in cluster.nodes)
        assert len({n.ip for n in cluster.nodes}) == len(cluster.nodes)
    assert all(kinds[k] >= 1 for k in ("private", "natgw", "ufw")), kinds
    assert len(PROBLEMS) == 7


def test_default_size_fleet_builds():
    fleet = generate_fleet()
    assert len(fleet.subscriptions) == 100
    assert len(fleet.clusters) == 1000


def test_cli_prints_env_and_serves(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "devtools.emulator", str(DEMO_SCENARIO), "--responder",
                             "--page-size", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    try:
        exports = {}
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            if line.startswith("#"):
                break
            name, _, value = line.removeprefix("export ").strip().partition("=")
            exports[name] = value.strip("'")
        wanted = {"ARM_ENDPOINT", "ARM_SCOPE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE"}
        assert wanted <= set(exports)
        token = requests.get(exports["IDENTITY_ENDPOINT"], headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]},
                             params={"api-version": "2019-08-01", "resource": exports["ARM_ENDPOINT"]},
                             timeout=5).json()["access_token"]
        page = requests.get(exports["ARM_ENDPOINT"] + "/subscriptions", params={"api-version": "2022-12-01"},
                            headers={"Authorization": f"Bearer {token}"}, verify=exports["REQUESTS_CA_BUNDLE"],
                            timeout=5).json()
        assert len(page["value"]) == 1
        assert "nextLink" in page
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    bad = subprocess.run([sys.executable, "-m", "devtools.emulator", str(tmp_path / "missing.json")],
                         capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert bad.returncode == 2
    assert "cannot load scenario" in bad.stderr
