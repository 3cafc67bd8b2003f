"""Pure tests of the ufw status parser and decider: real captured outputs plus hand-written tricky ones.

Real fixtures (tests/fixtures/ufw/real_*) were captured from the real ufw in a netns; their
`.kernel.json` records what the kernel did to a TCP 10250 connection at capture time, so those
expectations come from the kernel, not from us.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.netrules.errors import ParseError
from shared.netrules.ufw import UfwStatus, decide, parse_ufw_status, remediation

FIXTURES = Path(__file__).parent / "fixtures" / "ufw"
KERNEL_TO_DECISION = {"open": "allow", "timeout": "deny", "refused": "reject"}
REAL_CASES = sorted(p.name.removesuffix(".kernel.json") for p in FIXTURES.glob("real_*.kernel.json"))


def load(name: str) -> UfwStatus:
    return parse_ufw_status((FIXTURES / name).read_text())


# --- real captured outputs ------------------------------------------------------------------------


def test_real_fixtures_are_present() -> None:
    assert len(REAL_CASES) >= 4


@pytest.mark.parametrize("case", REAL_CASES)
@pytest.mark.parametrize("form", ["plain", "verbose", "numbered"])
def test_real_output_decision_matches_what_the_kernel_did(case: str, form: str) -> None:
    meta = json.loads((FIXTURES / f"{case}.kernel.json").read_text())
    status = load(f"{case}_{form}.txt")
    assert status.form == form
    verdict = decide(status, meta["source_ip"], meta["port"], meta["proto"], meta["interface"],
                     dest_ip=meta["dest_ip"])
    expected = KERNEL_TO_DECISION[meta["kernel"]]
    if form == "verbose":
        assert verdict.decision == expected, verdict.reason
    else:
        assert verdict.decision in (expected, "unknown"), verdict.reason


@pytest.mark.parametrize("case", REAL_CASES)
@pytest.mark.parametrize("form", ["plain", "verbose"])
def test_numbers_declared_exact_are_ufws_own(case: str, form: str) -> None:
    """A number derived from a plain/verbose position must be the one `ufw status numbered` shows."""
    numbered = {r.number: r for r in load(f"{case}_numbered.txt").rules}
    exact = [r for r in load(f"{case}_{form}.txt").rules if r.number_exact]
    for rule in exact:
        twin = numbered[rule.number]
        assert (twin.action, twin.direction, twin.ipv6, twin.source.address, twin.to.interface) == (
            rule.action, rule.direction, rule.ipv6, rule.source.address, rule.to.interface), rule.raw
        if not rule.to.app:
            assert twin.to.ports == rule.to.ports, rule.raw


def test_real_range_before_deny_structure() -> None:
    status = load("real_range_before_deny_numbered.txt")
    by_number = {r.number: r for r in status.rules}
    assert by_number[2].to.ports == ((10000, 11000),)
    assert by_number[2].log == "log"
    assert by_number[3].action == "deny"
    assert by_number[3].comment == "my comment"
    assert by_number[3].source.address == "10.250.9.0/24"
    assert by_number[7].direction == "out"
    assert by_number[8].direction == "fwd"
    assert by_number[6].to.app == "Kube Let"
    assert by_number[6].to.ports is None
    assert by_number[9].action == "limit"
    assert by_number[9].log == "log-all"
    assert by_number[11].ipv6
    assert by_number[13].ipv6
    assert by_number[13].to.interface is not None
    plain = load("real_range_before_deny_plain.txt")
    assert not any(r.number_exact for r in plain.rules), "OUT/FWD sections reorder the plain listing"


# --- hand-written tricky outputs -----------------------------------------------------------------


def test_verbose_header_and_rows() -> None:
    status = load("hand_v6_apps_comments_iface_verbose.txt")
    assert status.active
    assert status.form == "verbose"
    assert status.logging == "on (medium)"
    assert status.new_profiles == "skip"
    assert status.defaults is not None
    assert status.defaults.incoming == "reject"
    assert status.defaults.routed == "deny"
    rules = {r.number: r for r in status.rules}
    assert len(rules) == 12
    assert rules[2].to.app == "Apache Full"
    assert rules[2].to.ports == ((80, 80), (443, 443))
    assert rules[2].comment == "web from office"
    assert rules[2].source.address == "192.168.10.0/24"
    assert rules[3].to.interface == "eth0"
    assert rules[3].log == "log"
    assert rules[4].to.address is None
    assert rules[4].to.interface == "eth1"
    assert rules[4].log == "log-all"
    assert rules[5].to.address == "10.224.0.9"
    assert rules[5].to.ports == ((10250, 10250),)
    assert rules[6].action == "limit"
    assert rules[6].comment == "kubelet (rate limited)"
    assert rules[7].ipv6
    assert rules[7].to.app == "OpenSSH"
    long_to = rules[9]
    assert long_to.to.address == "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"
    assert long_to.action == "deny"
    assert long_to.source.address == "2001:db8::/32"
    assert long_to.ipv6
    assert rules[10].direction == "out"
    assert rules[10].log == "log"
    assert rules[11].direction == "fwd"
    assert rules[11].source.interface == "cni0"
    assert not any(r.number_exact for r in status.rules)


def test_interface_rule_applies_only_on_its_interface() -> None:
    status = load("hand_v6_apps_comments_iface_verbose.txt")
    on_eth0 = decide(status, "10.224.0.5", interface="eth0")
    assert on_eth0.decision == "allow"
    assert on_eth0.rule is not None
    assert on_eth0.rule.number == 3
    on_eth1 = decide(status, "10.224.0.5", interface="eth1")
    assert on_eth1.decision == "deny"
    assert on_eth1.rule is not None
    assert on_eth1.rule.number == 4
    blind = decide(status, "10.224.0.5")
    assert blind.decision == "unknown"
    assert blind.blocked is None
    assert "interface" in blind.reason
    assert {"allow", "deny"} <= blind.possible


def test_uncertain_rule_with_the_same_outcome_does_not_make_it_unknown() -> None:
    status = load("hand_v6_apps_comments_iface_verbose.txt")
    verdict = decide(status, "10.224.0.5", interface="eth2")  # rule 5 needs the destination: allow anyway
    assert verdict.decision == "allow"
    assert verdict.rule is not None
    assert verdict.rule.number == 6
    assert [r.number for r in verdict.uncertain_rules] == [5]
    assert "LIMIT" in verdict.reason
    exact = decide(status, "10.224.0.5", interface="eth2", dest_ip="10.224.0.9")
    assert exact.rule is not None
    assert exact.rule.number == 5
    assert not exact.uncertain_rules


def test_default_policy_decides_when_no_rule_matches() -> None:
    status = load("hand_v6_apps_comments_iface_verbose.txt")
    verdict = decide(status, "172.16.0.1", interface="eth0")
    assert verdict.decision == "reject"
    assert verdict.rule is None
    assert verdict.default_policy == "reject"
    assert remediation(verdict, allow_from="10.224.0.0/16") == (
        "sudo ufw allow 10250/tcp",
        "sudo ufw disable  # documented alternative: turns ufw off on this node",
    )


def test_ipv6_source_uses_only_v6_rows() -> None:
    status = load("hand_v6_apps_comments_iface_verbose.txt")
    verdict = decide(status, "2001:db8::5", interface="eth0", dest_ip="2001:db8::1")
    assert verdict.decision == "deny"
    assert verdict.rule is not None
    assert verdict.rule.number == 8
    ipv4_on_eth0 = decide(status, "10.224.0.5", interface="eth0", dest_ip="10.224.0.9")
    assert ipv4_on_eth0.rule is not None
    assert not ipv4_on_eth0.rule.ipv6


def test_opaque_app_profile_makes_a_later_deny_unknown() -> None:
    status = load("hand_app_profiles_plain.txt")
    assert [r.to.app for r in status.rules[:3]] == ["OpenSSH", "Apache Full", "Kube Let"]
    assert status.rules[4].to.app == "OpenSSH"
    assert status.rules[4].ipv6
    verdict = decide(status, "10.224.0.5")
    assert verdict.decision == "unknown"
    assert verdict.possible == {"allow", "deny"}
    assert "Kube Let" in verdict.reason
    assert [r.number for r in verdict.uncertain_rules] == [3]
    assert remediation(verdict) == ()


def test_opaque_app_profile_not_matching_the_source_is_skipped() -> None:
    status = load("hand_app_profiles_plain.txt")
    verdict = decide(status, "10.225.0.5")  # outside Kube Let's 10.224.0.0/16, inside the deny's /12
    assert verdict.decision == "deny"
    assert verdict.rule is not None
    assert verdict.rule.number == 4
    assert remediation(verdict, allow_from="10.224.0.0/12") == (
        "sudo ufw delete 4",
        "sudo ufw insert 1 allow from 10.224.0.0/12 to any port 10250 proto tcp"
        "  # alternative: keeps the blocking rule but allows the VNet before it",
        "sudo ufw disable  # documented alternative: turns ufw off on this node",
    )


def test_well_known_profiles_are_resolved_and_hidden_default_is_unknown() -> None:
    status = load("hand_app_profiles_plain.txt")
    verdict = decide(status, "192.168.10.7")  # Apache Full matches the source but not port 10250
    assert verdict.decision == "unknown"
    assert verdict.rule is None
    assert not verdict.uncertain_rules
    assert "ufw status verbose" in verdict.reason
    ssh = decide(status, "192.168.10.7", port=443)
    assert ssh.decision == "allow"
    assert ssh.rule is not None
    assert ssh.rule.number == 2


def test_port_range_allow_before_deny_wins() -> None:
    status = load("hand_range_before_deny_numbered.txt")
    assert status.form == "numbered"
    assert all(r.number_exact for r in status.rules)
    verdict = decide(status, "10.224.0.5")
    assert verdict.decision == "allow"
    assert verdict.rule is not None
    assert verdict.rule.number == 1
    assert decide(status, "10.224.0.5", port=12000).decision == "unknown"
    udp = decide(status, "10.224.0.5", proto="udp")
    assert udp.decision == "unknown"
    assert udp.rule is None


def test_numbered_deny_remediation_deletes_that_number() -> None:
    status = load("hand_deny_after_iface_numbered.txt")
    verdict = decide(status, "10.224.0.5")
    assert verdict.decision == "deny"
    assert verdict.blocked is True
    assert verdict.rule is not None
    assert verdict.rule.number == 3
    assert verdict.rule.log == "log"
    steps = remediation(verdict)
    assert steps[0] == "sudo ufw delete 3"
    assert steps[1].startswith("sudo ufw insert 1 allow from 10.224.0.5 to any port 10250 proto tcp")
    assert steps[-1].startswith("sudo ufw disable")
    behind_iface = decide(status, "10.10.1.1")
    assert behind_iface.decision == "unknown"
    assert [r.number for r in behind_iface.uncertain_rules] == [2]


def test_plain_listing_remediation_asks_for_the_number_when_rows_were_reordered() -> None:
    text = (FIXTURES / "real_range_before_deny_plain.txt").read_text()
    status = parse_ufw_status(text)
    # From the VNet the opaque "Kube Let" profile (10.0.0.0/8) might cover 1194/udp: unknown.
    assert decide(status, "10.250.9.4", port=1194, proto="udp", interface="eth9").decision == "unknown"
    verdict = decide(status, "192.168.1.1", port=1194, proto="udp", interface="eth9")
    assert verdict.decision == "reject"
    assert verdict.rule is not None
    assert not verdict.rule.number_exact
    steps = remediation(verdict)
    assert steps[0].startswith("sudo ufw status numbered")
    assert "1194/udp" in steps[0]
    assert steps[1] == "sudo ufw delete <that number>"


def test_inactive_allows_and_needs_no_remediation() -> None:
    status = load("hand_inactive.txt")
    verdict = decide(status, "10.0.0.1")
    assert not status.active
    assert verdict.decision == "allow"
    assert not verdict.active
    assert verdict.rule is None
    assert remediation(verdict) == ()


def test_active_without_rules() -> None:
    plain = parse_ufw_status("Status: active\n")
    assert plain.rules == ()
    assert decide(plain, "10.0.0.1").decision == "unknown"
    verbose = parse_ufw_status("Status: active\nLogging: off\n"
                               "Default: deny (incoming), allow (outgoing), disabled (routed)\n"
                               "New profiles: skip\n")
    verdict = decide(verbose, "10.0.0.1")
    assert verdict.decision == "deny"
    assert verdict.rule is None
    assert remediation(verdict)[0] == "sudo ufw allow 10250/tcp"


@pytest.mark.parametrize(("source_cell", "expected"), [
    ("10.0.0.0/8 53/tcp", "allow"),  # port 53 is never an ephemeral source port: rule skipped
    ("10.0.0.0/8 1024:65535/tcp", "reject"),  # covers every ephemeral port
    ("10.0.0.0/8 40000:50000/tcp", "unknown"),  # some ephemeral ports only
    ("10.0.0.0/8 WWW", "allow"),  # well-known source app: port 80
    ("10.0.0.0/8 Some App", "unknown"),  # opaque source app
])
def test_source_port_rules_against_ephemeral_ports(source_cell: str, expected: str) -> None:
    text = ("Status: active\nLogging: off\nDefault: allow (incoming), allow (outgoing), disabled (routed)\n"
            "New profiles: skip\n\nTo                         Action      From\n"
            "--                         ------      ----\n"
            f"{'Anywhere':<26} {'REJECT IN':<12}{source_cell:<26}\n")
    assert decide(parse_ufw_status(text), "10.1.2.3").decision == expected


def test_proto_shown_on_the_from_side_and_proto_less_ports() -> None:
    text = ("Status: active\n\nTo                         Action      From\n"
            "--                         ------      ----\n"
            "Anywhere                   DENY        10.1.0.0/16/udp\n"
            "10250                      REJECT      10.1.0.0/16\n")
    status = parse_ufw_status(text)
    assert status.rules[0].protocol == "udp"
    assert status.rules[1].protocol is None
    verdict = decide(status, "10.1.2.3")
    assert verdict.decision == "reject"
    assert verdict.rule is not None
    assert verdict.rule.number == 2


# --- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "line"), [
    ("", 1),
    ("ERROR: You need to be root to run this script\n", 1),
    ("Estado: activo\n", 1),
    ("Status: inactive\nsomething else\n", 2),
    ("Status: active\nLogging: on (low)\nBogus: yes\n", 3),
    ("Status: active\n\nhello world\n", 3),
    ("Status: active\n\nTo                         Action      From\n22/tcp ALLOW Anywhere\n", 4),
    ("Status: active\n\nTo                         Action      From\n--                         ------      ----\n"
     "22/tcp                     MAYBE       Anywhere\n", 5),
    ("Status: active\n\nTo                         Action      From\n--                         ------      ----\n"
     "99999/tcp                  ALLOW       Anywhere\n", 5),
    ("Status: active\n\n     To                         Action      From\n"
     "     --                         ------      ----\n22/tcp                     ALLOW IN    Anywhere\n", 5),
    ("Status: active\n\nTo                         Action      From\n--                         ------      ----\n"
     "22/tcp                     ALLOW       Anywhere 22\n", 5),
    ("Chain INPUT (policy ACCEPT)\n", 1),
])
def test_not_ufw_output_raises_parse_error_with_line(text: str, line: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse_ufw_status(text)
    assert caught.value.line == line


# --- property: rows in ufw's own layout parse back to what was printed ------------------------------

_to_cells = st.sampled_from([
    ("10250/tcp", None, ((10250, 10250),), "tcp"), ("10000:11000/tcp", None, ((10000, 11000),), "tcp"),
    ("80,443,10240:10259/tcp", None, ((80, 80), (443, 443), (10240, 10259)), "tcp"),
    ("22", None, ((22, 22),), None), ("Anywhere", None, None, None),
    ("10.0.0.5 10250/tcp", "10.0.0.5", ((10250, 10250),), "tcp"),
    ("Very Long Application Profile Name", None, None, None),
])
_from_cells = st.sampled_from([("Anywhere", None), ("10.224.0.0/16", "10.224.0.0/16"),
                               ("192.168.1.1", "192.168.1.1")])


@given(to=_to_cells, source=_from_cells,
       action=st.sampled_from(["ALLOW", "DENY", "REJECT", "LIMIT"]),
       direction=st.sampled_from(["", "IN", "OUT", "FWD"]),
       iface=st.sampled_from(["", "eth0", "enP1s1", "cni+"]),
       log=st.sampled_from(["", "log", "log-all"]),
       comment=st.sampled_from(["", "kubelet", "a # b (log)"]),
       numbered=st.booleans(), number=st.integers(1, 120))
def test_rows_in_ufw_layout_round_trip(*, to: tuple[str, str | None, tuple[tuple[int, int], ...] | None, str | None],
                                       source: tuple[str, str | None], action: str, direction: str,
                                       iface: str, log: str, comment: str, numbered: bool,
                                       number: int) -> None:
    to_text, to_address, to_ports, proto = to
    if iface:
        to_text += f" on {iface}"
    action_text = f"{action} {direction}".strip()
    attr = f" ({log})" if log else ""
    comment_text = f" # {comment}" if comment else ""
    row = f"{to_text:<26} {action_text:<12}{source[0]:<26}{attr}{comment_text}"  # ufw's own layout
    prefix = "     " if numbered else ""
    if numbered:
        row = f"[{number:2d}] {row}"
    text = (f"Status: active\n\n{prefix}To                         Action      From\n"
            f"{prefix}--                         ------      ----\n{row}\n")
    (rule,) = parse_ufw_status(text).rules
    assert rule.action == action.lower()
    assert rule.direction == (direction.lower() or "in")
    assert rule.to.address == to_address
    assert rule.to.ports == to_ports
    assert rule.protocol == proto
    assert rule.to.interface == (iface or None)
    assert rule.source.address == source[1]
    assert rule.log == (log or None)
    assert rule.comment == (comment or None)
    assert rule.number == (number if numbered else 1)
    if to_text.startswith("Very Long"):
        assert rule.to.app == "Very Long Application Profile Name"
