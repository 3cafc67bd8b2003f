"""The run-command parameters for the node probe, validated before anything is sent to a node.

The script validates its arguments again (docs/probe-protocol.md), but checking here first means a bad
value is reported by the monitor with the value named, instead of costing a run-command round trip and
coming back as an error frame. `validate_arguments` is the Python mirror of the script's own checks, so
the in-process responder refuses exactly what the real script refuses.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from shared.tunnel import KUBELET_PORT

PROTOCOL_VERSION = "1"
PARAMETER_NAMES = ("protocol", "apiHost", "tunnelChecks", "targets", "kubeletPort", "timeout")
TUNNEL_CHECKS = ("tcp/443", "tcp/9000", "udp/1194")
MAX_TARGETS = 32
CONCURRENT_CHECKS = 8
NONE_MARKER = "-"

# A DNS name: dot-separated labels of letters, digits and inner hyphens (stricter than the script,
# which only insists on the protocol's character set; both refuse anything that could be an option).
_HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")

# The script's own patterns, mirrored for `validate_arguments`.
_SCRIPT_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_SCRIPT_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_SCRIPT_IPV4_RE = re.compile(rf"{_SCRIPT_OCTET}\.{_SCRIPT_OCTET}\.{_SCRIPT_OCTET}\.{_SCRIPT_OCTET}")
_SCRIPT_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_SCRIPT_TIMEOUT_RE = re.compile(r"[1-9]|10")

# Reasons exactly as the script prints them in its error frame.
REASON_ARG_COUNT = "expected 6 arguments, got {count}"
REASON_PROTOCOL = "unsupported protocol version (this script speaks 1)"
REASON_HOST = "invalid apiHost (expected at most 253 characters from [A-Za-z0-9.-])"
REASON_CHECKS = "invalid tunnelChecks (expected a comma list of tcp/443, tcp/9000, udp/1194 or -)"
REASON_TARGETS = "invalid targets (expected a comma list of distinct IPv4 addresses or -)"
REASON_TOO_MANY = f"too many targets (at most {MAX_TARGETS})"
REASON_PORT = "invalid kubeletPort (expected 1-65535)"
REASON_TIMEOUT = "invalid timeout (expected 1-10 seconds)"


@dataclass(frozen=True)
class ProbeArguments:
    """The script's positional arguments after validation."""

    api_host: str
    tunnel_checks: tuple[str, ...]
    targets: tuple[str, ...]
    kubelet_port: int
    timeout: int


class ProbeArgumentError(ValueError):
    """Arguments the script would refuse; `reason` is the text of its error frame."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def build_arguments(api_host: str, tunnel_checks: Sequence[str], targets: Sequence[str],
                    kubelet_port: int = KUBELET_PORT, timeout: int = 3) -> list[str]:
    """The positional argument values, in order; raises ValueError naming the first bad value."""
    if not isinstance(api_host, str) or not _HOSTNAME_RE.fullmatch(api_host):
        raise ValueError(f"api_host {api_host!r} is not a DNS host name (letters, digits, '-', '.'; "
                         "at most 253 characters)")
    if api_host.endswith("."):
        api_host = api_host[:-1]
    checks = _checked_unique("tunnel check", tunnel_checks, _tunnel_check)
    ips = _checked_unique("target", targets, _ipv4)
    if len(ips) > MAX_TARGETS:
        raise ValueError(f"{len(ips)} targets given; the probe takes at most {MAX_TARGETS} per run")
    if isinstance(kubelet_port, bool) or not isinstance(kubelet_port, int) or not 1 <= kubelet_port <= 65535:
        raise ValueError(f"kubelet_port {kubelet_port!r} is not a TCP port (1-65535)")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 10:
        raise ValueError(f"timeout {timeout!r} must be a whole number of seconds from 1 to 10")
    return [
        PROTOCOL_VERSION,
        api_host,
        ",".join(checks) or NONE_MARKER,
        ",".join(ips) or NONE_MARKER,
        str(kubelet_port),
        str(timeout),
    ]


def build_parameters(api_host: str, tunnel_checks: Sequence[str], targets: Sequence[str],
                     kubelet_port: int = KUBELET_PORT, timeout: int = 3) -> list[dict[str, str]]:
    """The run-command `parameters` list; Linux run-command passes the values positionally in this order."""
    values = build_arguments(api_host, tunnel_checks, targets, kubelet_port, timeout)
    return [{"name": name, "value": value} for name, value in zip(PARAMETER_NAMES, values, strict=True)]


def time_bound_seconds(target_count: int, timeout: int) -> float:
    """How long the script may take at most: checks run 8 at a time, local tools in parallel with them."""
    return (target_count / CONCURRENT_CHECKS + 3) * timeout


def validate_arguments(args: Sequence[str]) -> ProbeArguments:
    """The script's own validation, in Python; raises ProbeArgumentError with the script's reason."""
    if len(args) != len(PARAMETER_NAMES):
        raise ProbeArgumentError(REASON_ARG_COUNT.format(count=len(args)))
    protocol, host, checks_arg, targets_arg, port_arg, timeout_arg = args
    if protocol != PROTOCOL_VERSION:
        raise ProbeArgumentError(REASON_PROTOCOL)
    if len(host) > 253 or not _SCRIPT_HOST_RE.fullmatch(host):
        raise ProbeArgumentError(REASON_HOST)
    checks = _script_list(checks_arg, 64, TUNNEL_CHECKS.__contains__, REASON_CHECKS)
    targets = _script_list(targets_arg, 1024, lambda t: _SCRIPT_IPV4_RE.fullmatch(t) is not None,
                           REASON_TARGETS)
    if len(targets) > MAX_TARGETS:
        raise ProbeArgumentError(REASON_TOO_MANY)
    if not _SCRIPT_PORT_RE.fullmatch(port_arg) or int(port_arg) > 65535:
        raise ProbeArgumentError(REASON_PORT)
    if not _SCRIPT_TIMEOUT_RE.fullmatch(timeout_arg):
        raise ProbeArgumentError(REASON_TIMEOUT)
    return ProbeArguments(host, checks, targets, int(port_arg), int(timeout_arg))


def load_script() -> str:
    """The probe script text, read from the installed package so that it ships with it."""
    return resources.files("shared.probe").joinpath("node_probe.sh").read_text(encoding="utf-8")


def _tunnel_check(value: str) -> str:
    if value not in TUNNEL_CHECKS:
        raise ValueError(f"tunnel check {value!r} is not one of {', '.join(TUNNEL_CHECKS)}")
    return value


def _ipv4(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except (ipaddress.AddressValueError, ValueError, TypeError):
        raise ValueError(f"target {value!r} is not an IPv4 address") from None
    if str(address) != value:
        raise ValueError(f"target {value!r} is not an IPv4 address in dotted-decimal form")
    return value


def _checked_unique(kind: str, values: Sequence[str], check: Callable[[str], str]) -> list[str]:
    if isinstance(values, str):
        raise ValueError(f"{kind}s must be a list, not the string {values!r}")
    seen: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"{kind} {value!r} is not a string")
        checked = check(value)
        if checked in seen:
            raise ValueError(f"{kind} {value!r} is given twice")
        seen.append(checked)
    return seen


def _script_list(arg: str, max_chars: int, valid: Callable[[str], bool], reason: str) -> tuple[str, ...]:
    if arg == NONE_MARKER:
        return ()
    items = arg.split(",")
    if len(arg) > max_chars or any(not valid(item) for item in items) or len(set(items)) != len(items):
        raise ProbeArgumentError(reason)
    return tuple(items)
