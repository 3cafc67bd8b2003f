"""What the probe's new outcomes mean to the egress cause (issue 8 item 1): on an aks-link cluster a `silent`
UDP 1194 (no answer, no ICMP) proves nothing, so it can never make egress-tunnel-port-blocked clear; only an
OpenVPN server's answer (`ok`) can, and an ICMP refusal is a block."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.causes import egress_tunnel_port_blocked as egress
from shared.causes.base import run_cause
from shared.model import Status
from shared.probe.frame import parse_frame, render_frame
from shared.snapshot import NodeProbe
from tests.builders import snapshot


def _aks_link_with(udp: str) -> Status:
    snap = replace(snapshot(), tunnel="aks-link", probes_mode="all")
    nodes = snap.nodes
    assert isinstance(nodes, tuple)
    probes = {}
    for node in nodes:
        frame = render_frame(host=node.name, containers=("aks-link",), api_host="aks1-abc.hcp.westeurope.azmk8s.io",
                             api_ip="20.50.2.10", egress={"tcp/443": "ok", "tcp/9000": "ok", "udp/1194": udp},
                             reach={}, ufw_status="Status: inactive\n", iptables_rules="*filter\nCOMMIT\n",
                             tls="0 konnectivity CN = ca")
        probe = parse_frame(frame, node.name)
        assert isinstance(probe, NodeProbe)
        probes[node.name] = probe
    return run_cause(egress.CAUSE, replace(snap, probes=probes)).status


@pytest.mark.parametrize(("udp", "allowed"), [
    ("silent", {Status.UNKNOWN}),
    ("error", {Status.UNKNOWN}),
    ("refused", {Status.DETECTED}),
    ("timeout", {Status.DETECTED}),
])
def test_udp_1194_outcomes_on_an_aks_link_cluster(udp: str, allowed: set[Status]) -> None:
    assert _aks_link_with(udp) in allowed


def test_silent_is_never_clear_but_an_openvpn_answer_can_be() -> None:
    assert _aks_link_with("silent") is not Status.CLEAR
    assert _aks_link_with("ok") is Status.CLEAR  # the control: the same cluster with an answer is clear
