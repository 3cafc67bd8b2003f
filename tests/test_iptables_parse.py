"""Parsing iptables-save, `iptables -S` and `iptables --list` output (fixtures are real or realistic dumps).

The mixed.* and ufw.* fixtures were printed by the real iptables 1.8.9 (nf_tables) in a scratch network
namespace (ufw.* after the real `ufw enable` in a sandbox); kube-proxy, Calico, Cilium, kube-router and
the Microsoft-guide listing are hand-written in the exact format those tools produce.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from shared.netrules.errors import ParseError
from shared.netrules.iptables import Packet, detect_format, evaluate, parse_iptables
from shared.netrules.iptables_parse import split_args

FIXTURES = Path(__file__).parent / "fixtures" / "iptables"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(("name", "fmt"), [
    ("kube-proxy.save", "save"), ("calico.save", "save"), ("kube-router.save", "save"), ("ufw.save", "save"),
    ("mixed.save", "save"), ("cilium.S", "spec"), ("mixed.S", "spec"), ("aks-doc.list", "listing"),
    ("mixed.list", "listing"), ("mixed.list-n", "listing"), ("mixed.list-nv", "listing"),
    ("mixed.list-v", "listing"), ("ufw.list-nv", "listing"),
])
def test_format_is_detected(name: str, fmt: str) -> None:
    assert detect_format(fixture(name).splitlines()) == fmt
    assert parse_iptables(fixture(name)).source_format == fmt


@pytest.mark.parametrize(("name", "chains", "input_rules"), [
    ("kube-proxy.save", {"KUBE-FIREWALL", "KUBE-NODEPORTS", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES",
                         "KUBE-PROXY-FIREWALL"}, 4),
    ("calico.save", {"cali-INPUT", "cali-wl-to-host", "cali-from-wl-dispatch", "cali-fw-cali1a2b3c4d5e6"}, 5),
    ("cilium.S", {"CILIUM_INPUT", "KUBE-FIREWALL"}, 2),
    ("kube-router.save", {"KUBE-ROUTER-INPUT", "KUBE-POD-FW-3UJ5WXVIJOFEQO4X", "KUBE-NWPLCY-DEFAULT"}, 2),
    ("ufw.save", {"ufw-before-input", "ufw-user-input", "ufw-reject-input", "ufw-after-input",
                  "ufw-logging-deny", "ufw-not-local", "ufw-skip-to-policy-input"}, 6),
    ("ufw.list-nv", {"ufw-before-input", "ufw-user-input", "ufw-logging-deny"}, 6),
    ("aks-doc.list", {"KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-KUBELET-CANARY"}, 5),
])
def test_real_world_dumps_parse(name: str, chains: set[str], input_rules: int) -> None:
    rs = parse_iptables(fixture(name))
    assert chains <= set(rs.chains)
    assert len(rs.chains["INPUT"]) == input_rules
    assert rs.policies["INPUT"] in ("ACCEPT", "DROP")
    # Rules are numbered per chain from 1, as `iptables -L --line-numbers` and `-D CHAIN n` count them.
    for rules in rs.chains.values():
        assert [r.index for r in rules] == list(range(1, len(rules) + 1))


def test_only_the_filter_table_is_kept() -> None:
    rs = parse_iptables(fixture("kube-proxy.save"))
    # *nat also has a KUBE-SERVICES chain (with DNAT jumps); only filter's single REJECT rule counts.
    assert [r.target.kind for r in rs.chains["KUBE-SERVICES"]] == ["reject"]
    assert "KUBE-MARK-MASQ" not in rs.chains
    assert "cali-PREROUTING" not in parse_iptables(fixture("calico.save")).chains  # from *raw


def test_kube_proxy_rule_text_and_exact_args_survive() -> None:
    rs = parse_iptables(fixture("kube-proxy.save"))
    rule = rs.chains["KUBE-FIREWALL"][0]
    assert rule.text.startswith("-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment")
    assert rule.args is not None
    assert "block incoming localnet connections" in rule.args
    assert rule.args[:4] == ("!", "-s", "127.0.0.0/8", "-d")


def test_listing_rows_are_understood() -> None:
    rs = parse_iptables(fixture("mixed.list-nv"))
    input_rules = rs.chains["INPUT"]
    assert input_rules[0].text == "-A INPUT -i lo -j ACCEPT"
    assert input_rules[4].text == "-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 10250 -j CUSTOM-BLOCK"
    goto = rs.chains["CUSTOM-BLOCK"][1]
    assert goto.target.goto
    assert goto.target.name == "LOG-AND-DROP"
    assert rs.chains["LOG-AND-DROP"][1].target.reject_with == "icmp-host-prohibited"
    assert rs.interfaces_visible
    assert not parse_iptables(fixture("mixed.list")).interfaces_visible


def test_listing_with_names_resolves_services_and_networks() -> None:
    """`iptables -L` without -n prints `ssh,https`, `domain`, `loopback/8`: same meaning as numbers."""
    named, numeric = parse_iptables(fixture("mixed.list-v")), parse_iptables(fixture("mixed.list-nv"))
    for src, port in (("10.224.0.9", 10250), ("192.168.1.1", 22), ("192.168.1.1", 443), ("192.168.1.1", 23),
                      ("127.0.0.5", 10250)):
        pkt = Packet(src, "10.224.0.4", port)
        a, b = evaluate(named, pkt), evaluate(numeric, pkt)
        assert (a.verdict, a.chain_path, a.input_line) == (b.verdict, b.chain_path, b.input_line)
        assert (a.rule and (a.rule.chain, a.rule.index)) == (b.rule and (b.rule.chain, b.rule.index))


LISTING_EDGE_CASES = """\
Chain INPUT (policy DROP 12 packets, 3400 bytes)
num   pkts bytes target     prot opt in     out     source               destination
1     1234  98K            0    --  *      *       10.0.0.0/8           0.0.0.0/0
2        0     0 ACCEPT     6    --  eth+   *       0.0.0.0/0            0.0.0.0/0            tcp dpt:10250 state NEW
3        0     0 LOG        0    --  *      *       0.0.0.0/0            0.0.0.0/0     LOG flags 0 level 4 prefix "dr: "
"""


def test_listing_blank_target_numeric_protocol_and_counters() -> None:
    rs = parse_iptables(LISTING_EDGE_CASES)
    first, second, third = rs.chains["INPUT"]
    assert first.target.kind == "continue"
    assert first.text == "-A INPUT -s 10.0.0.0/8"
    assert second.text == "-A INPUT -i eth+ -p tcp -m tcp --dport 10250 -m state --state NEW -j ACCEPT"
    assert third.target.name == "LOG"
    assert evaluate(rs, Packet("10.1.1.1", "10.2.2.2", in_interface="eth0")).verdict == "accept"
    assert evaluate(rs, Packet("10.1.1.1", "10.2.2.2", in_interface="ens5")).verdict == "drop"


def test_listing_without_line_numbers() -> None:
    text = "Chain INPUT (policy ACCEPT)\ntarget     prot opt source               destination\n" \
           "DROP       tcp  --  anywhere             anywhere             tcp dpt:10250\n"
    rs = parse_iptables(text)
    assert rs.chains["INPUT"][0].index == 1
    assert evaluate(rs, Packet("10.0.0.1", "10.0.0.2")).verdict == "drop"


def test_counters_prefix_of_iptables_save_c() -> None:
    text = "*filter\n:INPUT ACCEPT [10:2000]\n[5:300] -A INPUT -p tcp -m tcp --dport 10250 -j DROP\nCOMMIT\n"
    rs = parse_iptables(text)
    assert rs.chains["INPUT"][0].text == "-A INPUT -p tcp -m tcp --dport 10250 -j DROP"


def test_iptables_save_and_S_of_the_same_rules_give_the_same_rules() -> None:
    save, spec = parse_iptables(fixture("mixed.save")), parse_iptables(fixture("mixed.S"))
    assert save.policies["INPUT"] == spec.policies["INPUT"] == "DROP"
    assert {c: [r.text for r in rules] for c, rules in save.chains.items()} == \
        {c: [r.text for r in rules] for c, rules in spec.chains.items()}


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("", 1, "iptables-save"),
    ("hello world\n", 1, "iptables-save"),
    ("*filter\n:INPUT ACCEPT [0:0]\nthis is not a rule\nCOMMIT\n", 3, "a chain line"),
    ("# Generated by iptables-save\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\n", 5, "COMMIT"),
    ("*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n", 2, ":CHAIN POLICY"),
    ("*filter\n-A INPUT -p tcp bogus -j DROP\nCOMMIT\n", 2, "an iptables option"),
    ("*filter\n-A INPUT -p\nCOMMIT\n", 2, "a value after -p"),
    ("*filter\n-A INPUT -p tcp -j\nCOMMIT\n", 2, "a target after -j"),
    ('*filter\n-A INPUT -m comment --comment "open -j DROP\nCOMMIT\n', 2, 'a closing "'),
    ("*filter\n*nat\nCOMMIT\n", 2, "COMMIT to close *filter"),
    ("COMMIT\n", 1, "iptables-save"),
    ("-P INPUT ACCEPT\n-X whatever\n", 2, "an `iptables -S` line"),
    ("Chain INPUT (policy ACCEPT)\nnum target prot opt source destination\n1 ACCEPT\n", 3, "a rule row"),
    ("Chain INPUT (whatever)\n", 1, "a chain header"),
    ("Chain INPUT (policy ACCEPT)\n1 2 3\n", 2, "the column header"),
])
def test_garbage_raises_parse_error_with_line(text: str, line: int, expected: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_iptables(text)
    assert err.value.line == line
    assert expected in err.value.expected


@pytest.mark.parametrize("text", [
    '-m comment --comment "a \\"quoted\\" x" -j ACCEPT',
    "-m comment --comment 'single quoted' -j ACCEPT",
    '-j LOG --log-prefix "[UFW BLOCK] "',
    "-p tcp --dport 22 -j ACCEPT",
    '-m comment --comment "" -j ACCEPT',
    '-m comment --comment x"y z"w -j DROP',
])
def test_split_args_matches_the_shell(text: str) -> None:
    assert split_args(text, 1) == shlex.split(text)


def test_unknown_modules_and_targets_still_parse() -> None:
    text = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m bpf --bytecode \"4,48 0 0 9\" -j DROP\n"
            "-A INPUT -m set --match-set cali40all-ipam-pools src -j NFQUEUE --queue-num 1\n"
            "-A INPUT -m statistic --mode random --probability 0.5 -j KUBE-SEP-X\nCOMMIT\n")
    rs = parse_iptables(text)
    assert len(rs.chains["INPUT"]) == 3
    assert rs.chains["INPUT"][1].target.kind == "unknown"


def test_twenty_thousand_rules_parse() -> None:
    from tests.iptables_gen import large_ruleset

    rs = parse_iptables(large_ruleset(20_000))
    assert sum(len(r) for r in rs.chains.values()) >= 20_000


def test_numeric_verbose_listing_rebuilds_iptables_save_text() -> None:
    """From `-L -n -v` the rebuilt `-A` lines are exactly what iptables-save printed for the same table."""
    save, listing = parse_iptables(fixture("mixed.save")), parse_iptables(fixture("mixed.list-nv"))
    assert {c: [r.text for r in rules] for c, rules in listing.chains.items()} == \
        {c: [r.text for r in rules] for c, rules in save.chains.items()}


def test_nft_save_that_only_warns_about_legacy_tables_is_a_parse_error() -> None:
    with pytest.raises(ParseError) as err:
        parse_iptables("# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n")
    assert err.value.line == 1
    assert "iptables-legacy-save" in err.value.expected
