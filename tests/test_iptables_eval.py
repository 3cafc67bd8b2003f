"""Evaluating a new TCP connection through filter INPUT: netfilter semantics, unknowns, remediation.

Tables are written in `iptables -S` form. The same semantics are checked against the real kernel in
test_iptables_kernel.py; these tests pin down the details (reported rule, chain path, reasons).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from shared.netrules.iptables import IptablesVerdict, Packet, evaluate, parse_iptables, removal_command

FIXTURES = Path(__file__).parent / "fixtures" / "iptables"
VNET_PEER = Packet("10.224.0.9", "10.224.0.4")  # another node in the VNet -> this node's kubelet


def run(policy: str, *rules: str, chains: tuple[str, ...] = (), packet: Packet = VNET_PEER) -> IptablesVerdict:
    text = "\n".join([f"-P INPUT {policy}", *(f"-N {c}" for c in chains), *rules]) + "\n"
    return evaluate(parse_iptables(text), packet)


def fixture_verdict(name: str, packet: Packet = VNET_PEER) -> IptablesVerdict:
    return evaluate(parse_iptables((FIXTURES / name).read_text()), packet)


# --- policy and plain rules ---------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "verdict"), [("ACCEPT", "accept"), ("DROP", "drop")])
def test_policy_decides_when_nothing_matches(policy: str, verdict: str) -> None:
    got = run(policy, "-A INPUT -p udp -j ACCEPT")
    assert got.verdict == verdict
    assert got.rule is None
    assert got.input_line is None
    assert got.chain_path == ("INPUT",)
    assert got.reason == f"INPUT chain policy {policy}"
    assert removal_command(got) is None


def test_first_matching_rule_in_input_decides() -> None:
    got = run("ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 10250 -j DROP",
              "-A INPUT -j ACCEPT")
    assert got.verdict == "drop"
    assert got.rule is not None
    assert (got.rule.chain, got.rule.index) == ("INPUT", 2)
    assert got.input_line == 2
    assert removal_command(got) == "iptables --delete INPUT 2"


def test_reject_reports_its_kind() -> None:
    got = run("ACCEPT", "-A INPUT -p tcp -j REJECT --reject-with tcp-reset")
    assert (got.verdict, got.reject_with) == ("reject", "tcp-reset")
    assert run("ACCEPT", "-A INPUT -j REJECT").reject_with == "icmp-port-unreachable"


# --- chains: jump, goto, return -----------------------------------------------------------------

def test_drop_reached_through_a_jump_names_the_user_chain_rule() -> None:
    got = run("ACCEPT", "-A INPUT -p udp -j ACCEPT", "-A INPUT -j KUBE-FIREWALL",
              '-A KUBE-FIREWALL -p tcp -m comment --comment "it\'s \\"blocked\\"" -m tcp --dport 10250 -j DROP',
              chains=("KUBE-FIREWALL",))
    assert got.verdict == "drop"
    assert got.chain_path == ("INPUT", "KUBE-FIREWALL")
    assert got.input_line == 2
    assert got.rule is not None
    assert (got.rule.chain, got.rule.index) == ("KUBE-FIREWALL", 1)
    command = removal_command(got)
    assert command is not None
    assert command.startswith("iptables -D KUBE-FIREWALL ")
    # The shell sees exactly the saved spec, comment included.
    assert shlex.split(command)[3:] == ["-p", "tcp", "-m", "comment", "--comment", 'it\'s "blocked"', "-m",
                                        "tcp", "--dport", "10250", "-j", "DROP"]


def test_falling_off_a_user_chain_returns_to_the_caller() -> None:
    got = run("ACCEPT", "-A INPUT -j A", "-A INPUT -j DROP", "-A A -p udp -j ACCEPT", chains=("A",))
    assert (got.verdict, got.input_line, got.chain_path) == ("drop", 2, ("INPUT",))


def test_goto_then_return_skips_the_chain_that_did_the_goto() -> None:
    got = run("ACCEPT", "-A INPUT -j A", "-A INPUT -j REJECT", "-A A -g B", "-A A -j ACCEPT", "-A B -j RETURN",
              chains=("A", "B"))
    assert got.verdict == "reject"
    assert got.rule is not None
    assert (got.rule.chain, got.rule.index) == ("INPUT", 2)


def test_goto_from_input_then_return_means_policy() -> None:
    got = run("DROP", "-A INPUT -g B", "-A INPUT -j ACCEPT", "-A B -p tcp -j RETURN", chains=("B",))
    assert (got.verdict, got.rule, got.input_line) == ("drop", None, None)


def test_chain_path_through_goto() -> None:
    got = run("ACCEPT", "-A INPUT -j A", "-A A -g B", "-A B -j DROP", chains=("A", "B"))
    assert got.chain_path == ("INPUT", "A", "B")
    assert got.input_line == 1


def test_return_in_input_hits_the_policy() -> None:
    assert run("DROP", "-A INPUT -p tcp -j RETURN", "-A INPUT -j ACCEPT").verdict == "drop"


def test_jump_loop_is_unknown_not_a_hang() -> None:
    got = run("ACCEPT", "-A INPUT -j A", "-A A -j B", "-A B -j A", chains=("A", "B"))
    assert got.verdict == "unknown"
    assert got.reason


# --- matches -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("rule", "blocked"), [
    ("-s 10.224.0.0/16", True), ("-s 10.224.0.9", True), ("-s 10.225.0.0/16", False),
    ("! -s 10.225.0.0/16", True), ("! -s 10.224.0.0/12", False), ("-d 10.224.0.4/32", True),
    ("-s 10.224.0.0/255.255.0.0", True), ("-s 0.0.0.0/0", True), ("! -s 0.0.0.0/0", False),
    ("-p tcp", True), ("-p 6", True), ("-p TCP", True), ("-p udp", False), ("! -p udp", True), ("-p all", True),
    ("-i eth0", True), ("-i eth+", True), ("-i eth1", False), ("! -i lo", True), ("! -i eth+", False),
    ("-p tcp --dport 10250", True), ("-p tcp ! --dport 10250", False), ("-p tcp --dport 10000:11000", True),
    ("-p tcp -m multiport --dports 80,443,10250", True), ("-p tcp -m multiport --dports 80,10249:10251", True),
    ("-p tcp -m multiport ! --dports 80,443", True), ("-p tcp -m multiport --ports 10250", True),
    ("-p tcp -m multiport --dports 80,443", False), ("-p udp --dport 10250", False),
    ("-m conntrack --ctstate NEW", True), ("-m conntrack --ctstate RELATED,ESTABLISHED", False),
    ("-m conntrack ! --ctstate INVALID", True), ("-m state --state NEW", True), ("-m state ! --state NEW", False),
    ("-m conntrack --ctstate UNTRACKED", False), ("-m conntrack --ctstate DNAT", False),
    ("-m addrtype --dst-type LOCAL", True), ("-m addrtype ! --dst-type LOCAL", False),
    ("-m addrtype --src-type LOCAL", False), ("-m addrtype --src-type UNICAST", True),
    ("-p tcp --syn", True), ("-p tcp ! --syn", False), ("-p tcp --tcp-flags ACK ACK", False),
    ("-p tcp --tcp-flags SYN,ACK SYN", True), ("-m mark --mark 0x8000/0x8000", False),
    ("-m mark --mark 0x0/0x8000", True), ("-m connmark --mark 0x1", False),
    ("-m comment --comment \"anything\"", True), ("-f", False), ("! -f", True),
    ("-m iprange --src-range 10.224.0.1-10.224.0.20", True), ("-m iprange ! --src-range 10.224.0.1-10.224.0.20", False),
    ("-m pkttype --pkt-type unicast", True), ("-m pkttype --pkt-type broadcast", False),
    ("-p tcp --sport 1024:65535", True), ("-p tcp --sport 1:1023", False), ("-p tcp ! --sport 1:1023", True),
    ("-p tcp -m multiport --sports 32768:60999", True),
])
def test_each_match(rule: str, blocked: bool) -> None:
    got = run("ACCEPT", f"-A INPUT {rule} -j DROP")
    assert got.verdict == ("drop" if blocked else "accept"), got


def test_explicit_source_port_and_established_state() -> None:
    assert run("ACCEPT", "-A INPUT -p tcp --sport 40000 -j DROP",
               packet=Packet("10.224.0.9", "10.224.0.4", source_port=40000)).verdict == "drop"
    established = Packet("10.224.0.9", "10.224.0.4", ct_state="ESTABLISHED")
    assert run("DROP", "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
               packet=established).verdict == "accept"


def test_destination_not_local_when_local_addresses_are_given() -> None:
    pkt = Packet("10.224.0.9", "10.224.0.4", local_addresses=frozenset({"10.224.0.5"}))
    assert run("ACCEPT", "-A INPUT -m addrtype --dst-type LOCAL -j DROP", packet=pkt).verdict == "accept"
    pkt = Packet("10.224.0.9", "10.224.0.4", local_addresses=frozenset({"10.224.0.4"}))
    assert run("ACCEPT", "-A INPUT -m addrtype --dst-type LOCAL -j DROP", packet=pkt).verdict == "drop"


def test_marks_set_on_the_way_are_tracked() -> None:
    got = run("ACCEPT", "-A INPUT -j MARK --set-xmark 0x8000/0x8000", "-A INPUT -j KUBE-FIREWALL",
              "-A KUBE-FIREWALL -m mark --mark 0x8000/0x8000 -j DROP", chains=("KUBE-FIREWALL",))
    assert got.verdict == "drop"
    # CONNMARK save copies the packet mark to the connection, restore copies it back.
    got = run("ACCEPT", "-A INPUT -j MARK --set-mark 0x4", "-A INPUT -j CONNMARK --save-mark",
              "-A INPUT -j MARK --set-mark 0x0", "-A INPUT -m connmark --mark 0x4 -j LOG",
              "-A INPUT -j CONNMARK --restore-mark", "-A INPUT -m mark --mark 0x4 -j REJECT")
    assert got.verdict == "reject"
    assert run("ACCEPT", "-A INPUT -j MARK --or-mark 0x2", "-A INPUT -j MARK --and-mark 0x1",
               "-A INPUT -m mark --mark 0x2/0x2 -j DROP").verdict == "accept"


def test_log_and_other_continuing_targets_do_not_decide() -> None:
    got = run("DROP", "-A INPUT -j LOG --log-prefix \"x: \"", "-A INPUT -j NFLOG --nflog-group 2",
              "-A INPUT -j CLASSIFY --set-class 1:1", "-A INPUT -s 10.0.0.0/8", "-A INPUT -j ACCEPT")
    assert (got.verdict, got.input_line) == ("accept", 5)


# --- unknowns ------------------------------------------------------------------------------------

def test_ipset_match_that_could_decide_is_unknown_with_both_outcomes() -> None:
    got = run("ACCEPT", "-A INPUT -m set --match-set blocked-peers src -j DROP")
    assert got.verdict == "unknown"
    assert got.possible == ("accept", "drop")
    assert got.reason is not None
    assert "--match-set blocked-peers src" in got.reason
    assert got.rule is not None
    assert got.input_line == 1
    assert removal_command(got) is None


def test_unknown_match_on_a_rule_whose_other_matches_fail_is_not_matched() -> None:
    got = run("ACCEPT", "-A INPUT -p udp -m set --match-set x src -j DROP",
              "-A INPUT -s 192.168.0.0/16 -m bpf --bytecode \"1,6 0 0 0\" -j DROP")
    assert got.verdict == "accept"


def test_unknown_match_whose_outcomes_agree_still_decides() -> None:
    assert run("ACCEPT", "-A INPUT -m set --match-set x src -j ACCEPT").verdict == "accept"
    assert run("ACCEPT", "-A INPUT -m limit --limit 3/min -j LOG", "-A INPUT -j DROP").verdict == "drop"
    got = run("DROP", "-A INPUT -m set --match-set x src -j DROP", "-A INPUT -p tcp -j DROP")
    assert got.verdict == "drop"
    assert got.reason is not None
    assert "also drop" in got.reason


def test_partial_ephemeral_source_port_range_is_unknown() -> None:
    got = run("ACCEPT", "-A INPUT -p tcp --sport 40000:50000 -j DROP")
    assert got.verdict == "unknown"
    assert got.possible == ("accept", "drop")
    assert got.reason is not None
    assert "ephemeral" in got.reason


@pytest.mark.parametrize("rule", ["-j NFQUEUE --queue-num 3", "-j SOME-MISSING-CHAIN", "-o eth0 -j DROP",
                                  "-s node1.example.com -j DROP", "-p tcp -m tcp --tcp-option 2 -j DROP"])
def test_targets_and_matches_we_do_not_understand_are_unknown(rule: str) -> None:
    assert run("ACCEPT", f"-A INPUT {rule}").verdict == "unknown"


def test_many_undecidable_jumps_reconverge_without_blowing_up() -> None:
    """40 ipset jumps in a row: 2^40 paths, but they all come back to the same state and the DROP."""
    n = 40
    rules = [f"-A INPUT -m set --match-set s{i} src -j C{i}" for i in range(n)]
    rules += [f"-A C{i} -m set --match-set t{i} src -j RETURN" for i in range(n)]
    rules += [f"-A C{i} -j MARK --set-xmark 0x0/0x1" for i in range(n)]
    rules.append("-A INPUT -p tcp --dport 10250 -j DROP")
    chains = tuple(f"C{i}" for i in range(n))
    got = run("ACCEPT", *rules, chains=chains)
    assert got.verdict == "drop"
    assert got.input_line == n + 1
    rules.insert(0, "-A INPUT -m set --match-set allow src -j ACCEPT")
    assert run("ACCEPT", *rules, chains=chains).verdict == "unknown"


def test_paths_that_never_reconverge_give_up_as_unknown() -> None:
    """Each ipset sets a different mark bit: 2^12 distinct states, more than the walk will explore."""
    n = 12
    rules = [f"-A INPUT -m set --match-set s{i} src -j MARK --set-xmark {1 << i:#x}/{1 << i:#x}" for i in range(n)]
    rules.append("-A INPUT -p tcp --dport 10250 -j DROP")
    got = run("ACCEPT", *rules)
    assert got.verdict == "unknown"
    assert got.reason is not None
    assert "too many" in got.reason


def test_truncated_or_missing_input_is_unknown() -> None:
    no_policy = evaluate(parse_iptables("-A INPUT -p udp -j ACCEPT\n"), VNET_PEER)
    assert no_policy.verdict == "unknown"
    assert no_policy.reason is not None
    assert "policy" in no_policy.reason
    nat_only = evaluate(parse_iptables("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), VNET_PEER)
    assert nat_only.verdict == "unknown"


# --- listings: interfaces hidden without -v -------------------------------------------------------

def test_microsoft_guide_listing_finds_the_drop_rule() -> None:
    got = fixture_verdict("aks-doc.list")
    assert got.verdict == "drop"
    assert got.input_line == 5
    assert removal_command(got) == "iptables --delete INPUT 5"
    assert got.assumptions  # it had to assume the DROP is not limited to some interface


def test_accept_with_hidden_interface_is_not_trusted() -> None:
    """`-i lo -j ACCEPT` prints as `ACCEPT all -- anywhere anywhere` without -v: not a pass for all."""
    got = fixture_verdict("mixed.list")
    assert got.verdict == "unknown"
    # -i lo ACCEPT (rule 1), the goto into LOG-AND-DROP and the final ACCEPT all hide an interface.
    assert set(got.possible) == {"accept", "drop", "reject"}
    assert evaluate(parse_iptables((FIXTURES / "mixed.list-nv").read_text()), VNET_PEER).verdict == "reject"


def test_listing_rule_in_user_chain_is_removed_by_number() -> None:
    got = fixture_verdict("mixed.list-nv")
    assert got.chain_path == ("INPUT", "CUSTOM-BLOCK", "LOG-AND-DROP")
    assert removal_command(got) == "iptables -D LOG-AND-DROP 2"
    exact = fixture_verdict("mixed.save")
    assert removal_command(exact) == "iptables -D LOG-AND-DROP -j REJECT --reject-with icmp-host-prohibited"


# --- real-world tables ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["kube-proxy.save", "calico.save", "cilium.S", "kube-router.save"])
def test_cni_and_kube_proxy_tables_let_kubelet_through(name: str) -> None:
    got = fixture_verdict(name)
    assert got.verdict == "accept", got
    assert not got.in_ufw_chain


def test_calico_workload_interface_takes_the_goto_path() -> None:
    got = fixture_verdict("calico.save", Packet("10.244.1.7", "10.224.0.4", in_interface="cali9f8e7d6c5b4"))
    assert got.verdict == "drop"
    assert got.chain_path == ("INPUT", "cali-INPUT", "cali-wl-to-host", "cali-from-wl-dispatch")
    assert got.rule is not None
    assert "Unknown interface" in got.rule.text


def test_kube_router_pod_traffic_follows_its_marks() -> None:
    got = fixture_verdict("kube-router.save", Packet("10.244.1.7", "10.224.0.4"))
    assert got.verdict == "accept"
    assert got.rule is not None
    assert (got.rule.chain, got.rule.index) == ("KUBE-ROUTER-INPUT", 5)


def test_block_injected_into_calico_input_is_found() -> None:
    text = (FIXTURES / "calico.save").read_text().replace(
        '-A cali-INPUT -m comment --comment "cali:ss8lEMQsXi-s6qYT"',
        "-A cali-INPUT -p tcp -m tcp --dport 10250 -j DROP\n"
        '-A cali-INPUT -m comment --comment "cali:ss8lEMQsXi-s6qYT"')
    got = evaluate(parse_iptables(text), VNET_PEER)
    assert (got.verdict, got.chain_path, got.input_line) == ("drop", ("INPUT", "cali-INPUT"), 1)
    assert removal_command(got) == "iptables -D cali-INPUT -p tcp -m tcp --dport 10250 -j DROP"


@pytest.mark.parametrize("name", ["ufw.save", "ufw.list-nv"])
def test_ufw_decisions_are_flagged(name: str) -> None:
    got = fixture_verdict(name)
    assert got.verdict == "drop"
    assert got.in_ufw_chain
    assert got.rule is not None
    assert got.rule.chain == "ufw-user-input"
    # Another port falls to INPUT's DROP policy, which ufw itself set: still ufw's business.
    other = fixture_verdict(name, Packet("10.224.0.9", "10.224.0.4", 8080))
    assert other.verdict == "drop"
    assert other.rule is None
    assert other.in_ufw_chain


def test_policy_drop_without_ufw_is_not_ufw() -> None:
    assert not run("DROP").in_ufw_chain


def test_legacy_tables_warning_travels_with_an_accept() -> None:
    """iptables-nft-save warns when legacy tables exist: the kernel runs those rules too."""
    got = fixture_verdict("calico.save")
    assert got.verdict == "accept"
    assert any("iptables-legacy" in a for a in got.assumptions)
    assert not fixture_verdict("kube-proxy.save").assumptions
