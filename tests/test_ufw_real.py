"""Ground truth for the ufw parser/decider: the REAL ufw configures a netns, the kernel decides.

For each configuration, ufw (sandboxed, see tests/ufw_sandbox.py) loads rules into the server
namespace; we capture `ufw status`, `status verbose` and `status numbered`, then make real TCP
connections to 10250 from three client source addresses. decide(parse(output)) must agree with the
kernel (open -> allow, timeout -> deny, refused -> reject); plain/numbered output may say "unknown"
only when it genuinely lacks the information (default policy or an opaque app profile).
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.netrules.ufw import UfwStatus, UfwVerdict, decide, parse_ufw_status, remediation
from tests.netns_lab import Host, host_pair, require_netns, run, tcp_listener
from tests.ufw_sandbox import UfwSandbox, ufw_sandbox, ufw_unavailable_reason

pytestmark = pytest.mark.kernel

OCTET = 61
NET = f"10.250.{OCTET}"
SOURCES = (f"{NET}.4", f"{NET}.77", f"{NET}.200")  # .4 is the lab's client address, the others are added
KERNEL_TO_DECISION = {"open": "allow", "timeout": "deny", "refused": "reject"}
PROFILES = {
    "kube.ini": "[Kube Let]\ntitle=kubelet\ndescription=kubelet API\nports=10250/tcp|1194/udp\n",
    "other.ini": "[Other App]\ntitle=other\ndescription=not kubelet\nports=8443/tcp\n",
}


@dataclass(frozen=True)
class Config:
    name: str
    commands: tuple[tuple[str, ...], ...]
    enable: bool = True


def _c(name: str, *commands: str, enable: bool = True) -> Config:
    """Commands as ufw argument strings; `|` separates arguments that contain spaces (app names)."""
    return Config(name, tuple(tuple(c.split("|")) if "|" in c else tuple(c.split()) for c in commands),
                  enable)


HAND_WRITTEN = (
    _c("inactive-with-deny", "default deny incoming", "deny 10250/tcp", enable=False),
    _c("default-deny-empty", "default deny incoming"),
    _c("default-reject-empty", "default reject incoming"),
    _c("default-allow-empty", "default allow incoming"),
    _c("range-allow-before-deny", "default deny incoming", "allow 10000:11000/tcp", "deny 10250/tcp"),
    _c("insert-deny-before-allow", "default allow incoming", "allow 10250/tcp",
       "insert 1 deny from {net}.0/25 to any port 10250 proto tcp"),
    _c("limit-then-deny-default", "default deny incoming", "limit 10250/tcp"),
    _c("from-cidr-excludes-some", "default reject incoming",
       "allow from {net}.64/26 to any port 10250 proto tcp", "deny from {net}.0/24"),
    _c("on-other-interface", "default deny incoming", "allow in on eth9 to any port 10250 proto tcp"),
    _c("on-our-interface", "default deny incoming", "allow in on {iface} to any port 10250 proto tcp",
       "reject 10250/tcp"),
    _c("app-profile-with-10250", "default deny incoming", "allow|Kube Let", "deny 10250/tcp"),
    _c("app-profile-without-10250", "default reject incoming", "allow|WWW Full", "allow|Other App"),
    _c("out-and-route-only", "default allow incoming", "deny out 10250/tcp", "route deny 10250/tcp"),
    _c("port-list-comment-log", "default deny incoming",
       "allow log-all proto tcp from {net}.128/25 to any port 80,443,10250 comment kubelet-api",
       "reject log from {net}.77"),
    _c("udp-only-and-proto-less", "default deny incoming", "allow 10250/udp", "reject 10250"),
    _c("destination-address", "default deny incoming", "allow from any to {server} port 10250 proto tcp",
       "deny from any to {net}.99 port 10250 proto tcp"),
    _c("source-port-rules", "default deny incoming", "allow from {net}.0/24 port 53 proto tcp",
       "reject from {net}.0/24 port 1024:65535 proto tcp"),
    _c("v6-deny-v4-allow", "default reject incoming", "deny from 2001:db8::/32 to any port 10250",
       "allow 10240:10259/tcp"),
)


def _random_config(rng: random.Random, index: int) -> Config:
    """A seeded random ufw configuration drawn from the syntax real admins use."""
    sources = ["any", "{net}.0/24", "{net}.0/25", "{net}.128/25", "{net}.77", "{net}.64/26",
               "192.168.0.0/16", "10.0.0.0/8"]
    actions = ["allow", "deny", "reject", "limit"]
    simple_ports = ["10250/tcp", "10250", "10000:11000/tcp", "80,443/tcp", "10250:10260/tcp", "22/tcp",
                    "10250/udp", "10251/tcp", "9000:10249/tcp"]
    commands: list[str] = [f"default {rng.choice(['deny', 'allow', 'reject'])} incoming"]
    for n in range(rng.randint(1, 5)):
        kind = rng.random()
        action = rng.choice(actions)
        if kind < 0.3:
            log = rng.choice(["", "log ", "log-all "])
            commands.append(f"{action} {log}{rng.choice(simple_ports)}")
            continue
        if kind < 0.4:
            app = rng.choice(["Kube Let", "WWW Full", "SSH", "Other App"])
            commands.append(f"{action}|from|{rng.choice(sources).format(net=NET)}|to|any|app|{app}")
            continue
        if kind < 0.45:
            commands.append(f"{action} out 10250/tcp")
            continue
        insert = "insert 1 " if n > 0 and rng.random() < 0.3 else ""
        iface = rng.choice(["", "", "", "in on {iface} ", "in on eth9 "])
        port, proto = rng.choice([("10250", "tcp"), ("10250", ""), ("10000:11000", "tcp"),
                                  ("80,10250", "tcp"), ("10251", "tcp"), ("", "tcp"), ("10250", "udp")])
        spec = (f" port {port}" if port else "") + (f" proto {proto}" if proto else "")
        if not port and not proto:
            spec = ""
        commands.append(f"{insert}{action} {iface}from {rng.choice(sources)} to any{spec}")
    return _c(f"random-{index}", *commands)


RANDOM = tuple(_random_config(random.Random(20261127 + i), i) for i in range(16))


def _host_firewall_state() -> str:
    """Digest of the host's (root namespace) firewall and ufw files, to prove the tests left them alone."""
    parts = [run(["iptables", "-S"], check=False).stdout, run(["ip6tables", "-S"], check=False).stdout]
    for path in [*sorted(Path("/etc/ufw").rglob("*")), Path("/etc/default/ufw")]:
        if path.is_file():
            parts.append(f"{path}:{hashlib.sha256(path.read_bytes()).hexdigest()}")
    parts.append(f"lock:{Path('/run/ufw.lock').exists()}")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def host_untouched() -> Iterator[None]:
    require_netns("iptables", "ip6tables", "ufw", "unshare")
    reason = ufw_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    before = _host_firewall_state()
    yield
    assert _host_firewall_state() == before, "the host's firewall or ufw files changed during the ufw tests"


def kernel_outcomes(client: Host, server_ip: str, port: int = 10250, timeout_s: float = 0.5) -> dict[str, str]:
    """Connect from every source address at once (threads), as the kernel decides: open/refused/timeout.

    A timeout is the one answer load can fake (a first SYN that waited on neighbour resolution is only
    retransmitted after 1 s), so the sources that timed out are asked once more with a wait longer than
    that retransmission; a real drop still times out.
    """
    first = _connect_all(client, server_ip, port, timeout_s, SOURCES)
    slow = [src for src, outcome in first.items() if outcome == "timeout"]
    if slow:
        first.update(_connect_all(client, server_ip, port, max(timeout_s, 3.0), slow))
    return first


def _connect_all(client: Host, server_ip: str, port: int, timeout_s: float,
                 sources: Sequence[str]) -> dict[str, str]:
    code = (
        "import socket,sys,threading\n"
        "dst, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]); out = {}\n"
        "def go(src):\n"
        " s = socket.socket(); s.settimeout(t); s.bind((src, 0))\n"
        " try: s.connect((dst, port)); out[src] = 'open'\n"
        " except ConnectionRefusedError: out[src] = 'refused'\n"
        " except (TimeoutError, socket.timeout): out[src] = 'timeout'\n"
        " except OSError as e: out[src] = 'error:' + str(e.errno)\n"
        " finally: s.close()\n"
        "ts = [threading.Thread(target=go, args=(a,)) for a in sys.argv[4:]]\n"
        "[x.start() for x in ts]; [x.join() for x in ts]\n"
        "print(' '.join(f'{k}={v}' for k, v in out.items()))\n"
    )
    done = client.exec(sys.executable, "-c", code, server_ip, str(port), str(timeout_s), *sources,
                       timeout=timeout_s + 20)
    return dict(item.split("=", 1) for item in done.stdout.split())


@dataclass(frozen=True)
class Captured:
    outputs: dict[str, str]  # form -> ufw output
    kernel: dict[str, str]  # source ip -> open/refused/timeout


def _apply(box: UfwSandbox, config: Config, server: Host, client: Host) -> Captured:
    values = {"net": NET, "iface": server.iface, "server": server.ip}
    rule_commands = [tuple(arg.format(**values) for arg in c) for c in config.commands]
    box.reset()
    steps = box.run(*rule_commands)
    failed = [s for s in steps if s.returncode != 0]
    assert len(failed) <= len(steps) // 2, f"ufw rejected most commands: {failed}"
    box.check(["--force", "enable"] if config.enable else ["disable"])
    forms = box.check(["status"], ["status", "verbose"], ["status", "numbered"])
    outputs = dict(zip(("plain", "verbose", "numbered"), (s.output for s in forms), strict=True))
    with tcp_listener(server):
        kernel = kernel_outcomes(client, server.ip)
    return Captured(outputs, kernel)


@pytest.fixture
def lab(host_untouched: None) -> Iterator[tuple[Host, Host, UfwSandbox]]:
    with host_pair(OCTET) as (client, server):
        for extra in SOURCES[1:]:
            run(["ip", "-n", client.netns, "addr", "add", f"{extra}/24", "dev", client.iface])
        with ufw_sandbox(server) as box:
            for name, text in PROFILES.items():
                box.add_application_profile(name, text)
            yield client, server, box


def _explain(config: Config, captured: Captured, source: str, form: str, verdict: UfwVerdict) -> str:
    return (f"{config.name}: source {source} kernel={captured.kernel[source]} but {form} -> "
            f"{verdict.decision} ({verdict.reason})\ncommands={config.commands}\n{captured.outputs[form]}")


def _unknown_is_justified(status: UfwStatus, verdict: UfwVerdict) -> bool:
    """Plain/numbered output may be inconclusive only for what it cannot show."""
    hidden_default = status.defaults is None and verdict.rule is None
    opaque_app = any(r.to.app or r.source.app for r in verdict.uncertain_rules)
    return hidden_default or opaque_app


def _check_config(config: Config, lab: tuple[Host, Host, UfwSandbox]) -> Captured:
    client, server, box = lab
    captured = _apply(box, config, server, client)
    assert set(captured.kernel) == set(SOURCES), captured.kernel
    for source in SOURCES:
        expected = KERNEL_TO_DECISION.get(captured.kernel[source])
        assert expected is not None, f"{config.name}: unexpected kernel outcome {captured.kernel}"
        numbered_rule_number: int | None = None
        for form, text in captured.outputs.items():
            status = parse_ufw_status(text)
            assert status.active == config.enable
            verdict = decide(status, source, 10250, "tcp", server.iface, dest_ip=server.ip)
            if form == "verbose" or not config.enable:
                assert verdict.decision == expected, _explain(config, captured, source, form, verdict)
            else:
                assert verdict.decision in (expected, "unknown"), _explain(config, captured, source, form, verdict)
                if verdict.decision == "unknown":
                    assert _unknown_is_justified(status, verdict), _explain(config, captured, source, form,
                                                                            verdict)
            if form == "numbered" and verdict.rule is not None and verdict.decision != "unknown":
                numbered_rule_number = verdict.rule.number
            # Without knowing the interface or destination, the answer may only get less certain.
            blind = decide(status, source)
            assert blind.decision in (expected, "unknown"), _explain(config, captured, source, form, blind)
        # A position-derived number must be the number ufw itself shows for that rule.
        verbose_verdict = decide(parse_ufw_status(captured.outputs["verbose"]), source, 10250, "tcp",
                                 server.iface, dest_ip=server.ip)
        if (verbose_verdict.rule is not None and verbose_verdict.rule.number_exact
                and numbered_rule_number is not None):
            assert verbose_verdict.rule.number == numbered_rule_number, config.name
    return captured


@pytest.mark.parametrize("config", HAND_WRITTEN, ids=[c.name for c in HAND_WRITTEN])
def test_hand_written_configuration_matches_kernel(config: Config,
                                                   lab: tuple[Host, Host, UfwSandbox]) -> None:
    _check_config(config, lab)


@pytest.mark.parametrize("config", RANDOM, ids=[c.name for c in RANDOM])
def test_random_configuration_matches_kernel(config: Config, lab: tuple[Host, Host, UfwSandbox]) -> None:
    _check_config(config, lab)


def test_lab_produces_every_kernel_outcome(lab: tuple[Host, Host, UfwSandbox]) -> None:
    """Guards the ground truth itself: one configuration, three sources, open + timeout + refused."""
    config = next(c for c in HAND_WRITTEN if c.name == "port-list-comment-log")
    kernel = _apply(lab[2], config, lab[1], lab[0]).kernel
    assert kernel == {f"{NET}.4": "timeout", f"{NET}.77": "refused", f"{NET}.200": "open"}


@pytest.mark.parametrize("config", [HAND_WRITTEN[5], HAND_WRITTEN[1], HAND_WRITTEN[14]],
                         ids=["insert-deny", "default-deny", "proto-less-reject"])
def test_remediation_commands_really_open_the_port(config: Config,
                                                   lab: tuple[Host, Host, UfwSandbox]) -> None:
    """Run our remediation (as ufw args) in the sandbox; the kernel must then let the blocked source in."""
    client, server, box = lab
    captured = _apply(box, config, server, client)
    blocked_source = next(s for s in SOURCES if captured.kernel[s] != "open")
    verdict = decide(parse_ufw_status(captured.outputs["numbered"]), blocked_source, 10250, "tcp", None,
                     dest_ip=server.ip)
    if verdict.decision == "unknown":  # numbered output hides the default policy: the verbose one tells
        verdict = decide(parse_ufw_status(captured.outputs["verbose"]), blocked_source, dest_ip=server.ip)
    steps = remediation(verdict, allow_from=f"{NET}.0/24")
    assert verdict.blocked is True
    assert steps[-1].startswith("sudo ufw disable")
    fix = steps[0].split("#")[0].split()[2:]  # drop "sudo ufw", keep the arguments
    if fix[0] == "delete":
        before = [r.raw.split("] ", 1)[1] for r in parse_ufw_status(captured.outputs["numbered"]).rules]
        box.check(["--force", *fix])
        after_text = box.check(["status", "numbered"])[0].output
        after = [r.raw.split("] ", 1)[1] for r in parse_ufw_status(after_text).rules]
        assert after == before[: int(fix[1]) - 1] + before[int(fix[1]):], "deleted the wrong rule number"
        # The alternative keeps every rule and must open the port on its own.
        captured = _apply(box, config, server, client)
        insert = next(s for s in steps if "insert 1" in s).split("#")[0].split()[2:]
        box.check(insert)
    else:
        box.check(fix)
    with tcp_listener(server):
        assert kernel_outcomes(client, server.ip)[blocked_source] == "open"
