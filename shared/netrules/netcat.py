"""netcat-openbsd (`nc -v -w N`, `nc -z -v`) output -> one typed result per target tested.

nc prints one line per connection attempt (a name resolving to several addresses gives several
attempts, a port range one target per port). The outcome is what the kernel reported to nc, so
"timeout" means packets were silently dropped, "refused" that something answered with a reset (or
ICMP port unreachable), "no_route" an ICMP host/net unreachable or no route at all.

UDP caveats: `nc -u` has no handshake, so a UDP "succeeded" only means no ICMP error came back in time;
and a UDP probe that *did* get an ICMP port-unreachable under `-z` exits 1 silently, printing no line
at all (netcat-openbsd 1.219), so a script must record nc's exit code next to its output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from shared.netrules.errors import ParseError

Outcome = Literal["succeeded", "timeout", "refused", "no_route", "unresolved", "unknown"]
Protocol = Literal["tcp", "udp"]

_SUCCEEDED = re.compile(
    r"(?:^|\s)Connection to (?P<host>\S+)(?: \((?P<addr>[^)\s]+)\))? (?P<port>\d+) port "
    r"\[(?P<proto>tcp|udp)/(?P<service>[^\]]*)\] succeeded!"
)
_CONNECT = re.compile(
    r"(?:^|\s)nc: connect to (?P<host>\S+)(?: \((?P<addr>[^)\s]+)\))? port (?P<port>\d+) "
    r"\((?P<proto>tcp|udp)\) (?P<how>failed|timed out): (?P<message>.+?)\s*$"
)
_GETADDRINFO = re.compile(
    r'(?:^|\s)nc: getaddrinfo(?: for host "(?P<host>[^"]*)" port (?P<port>\S+))?: (?P<message>.+?)\s*$'
)
_OTHER_NC = re.compile(r"(?:^|\s)nc: (?P<message>.+?)\s*$")

# errno strings (glibc) -> outcome. ETIMEDOUT appears when nc runs without -w and the kernel gives up.
_CONNECT_OUTCOMES: dict[str, Outcome] = {
    "Connection refused": "refused",
    "Operation now in progress": "timeout",
    "Connection timed out": "timeout",
    "No route to host": "no_route",
    "Network is unreachable": "no_route",
    "Host is down": "no_route",
}
_LOCAL_REFUSAL = ("Permission denied", "Operation not permitted")
_NOT_A_NAME_PROBLEM = ("Servname not supported", "ai_socktype", "Bad value for ai_flags")

UDP_SUCCESS_NOTE = ("UDP has no handshake: 'succeeded' only means no ICMP error came back, not that anything "
                    "is listening or that replies get through")


@dataclass(frozen=True)
class NetcatResult:
    """What nc reported for one target (host, port, protocol).

    `line` is the line the outcome was decided from (the last attempt); `attempts` every line for this
    target, e.g. one per address a name resolved to. `detail` is nc's error text, `address` the IP nc
    printed next to a host name.
    """

    outcome: Outcome
    host: str | None
    port: int | None
    protocol: Protocol | None
    line: str
    line_number: int
    address: str | None = None
    detail: str | None = None
    attempts: tuple[str, ...] = ()
    note: str | None = None

    @property
    def conclusive(self) -> bool:
        """False when the outcome proves little: unknown, or a UDP "succeeded"."""
        return self.outcome != "unknown" and not (self.protocol == "udp" and self.outcome == "succeeded")


def parse_netcat_all(text: str) -> tuple[NetcatResult, ...]:
    """Every target nc reported on, in order. Lines that are not nc's (prompts, data, run-command
    headers) are ignored; a text with no nc line at all raises ParseError."""
    results: list[NetcatResult] = []
    first_content: tuple[int, str] | None = None
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if first_content is None:
            first_content = (number, line)
        result = _parse_line(line, number)
        if result is None:
            continue
        previous = results[-1] if results else None
        if previous is not None and _same_target(previous, result):
            result = _with_attempts(result, (*previous.attempts, line))
            results[-1] = result
        else:
            results.append(_with_attempts(result, (line,)))
    if not results:
        number, line = first_content if first_content else (1, "<empty input>")
        raise ParseError(number, "a netcat-openbsd line ('Connection to ... succeeded!' or 'nc: ...')", line)
    return tuple(results)


def parse_netcat(text: str) -> NetcatResult:
    """The one target in `text`; several targets are ambiguous here (use parse_netcat_all)."""
    results = parse_netcat_all(text)
    if len(results) > 1:
        extra = results[1]
        raise ParseError(extra.line_number, "output for a single nc target (parse_netcat_all reads several)",
                         extra.line)
    return results[0]


def _same_target(previous: NetcatResult, current: NetcatResult) -> bool:
    """A further attempt at the same target: nc moves on to the next address only after a failure."""
    return (previous.outcome != "succeeded" and previous.host is not None
            and (previous.host, previous.port, previous.protocol) == (current.host, current.port, current.protocol))


def _with_attempts(result: NetcatResult, attempts: tuple[str, ...]) -> NetcatResult:
    return NetcatResult(result.outcome, result.host, result.port, result.protocol, result.line,
                        result.line_number, result.address, result.detail, attempts, result.note)


def _parse_line(line: str, number: int) -> NetcatResult | None:
    if match := _SUCCEEDED.search(line):
        proto = _protocol(match.group("proto"))
        note = UDP_SUCCESS_NOTE if proto == "udp" else None
        return NetcatResult("succeeded", match.group("host"), int(match.group("port")), proto, line, number,
                            match.group("addr"), None, (), note)
    if match := _CONNECT.search(line):
        message = match.group("message")
        outcome: Outcome = "timeout" if match.group("how") == "timed out" else _CONNECT_OUTCOMES.get(
            message, "unknown")
        detail = message
        if message in _LOCAL_REFUSAL:
            detail = (f"{message}: this host refused to send (a local OUTPUT firewall rule or a prohibit "
                      "route), so the target was never tested")
        return NetcatResult(outcome, match.group("host"), int(match.group("port")),
                            _protocol(match.group("proto")), line, number, match.group("addr"), detail)
    if match := _GETADDRINFO.search(line):
        message = match.group("message")
        port_text = match.group("port")
        port = int(port_text) if port_text and port_text.isdigit() else None
        outcome = "unknown" if any(s in message for s in _NOT_A_NAME_PROBLEM) else "unresolved"
        return NetcatResult(outcome, match.group("host"), port, None, line, number, None, message)
    if match := _OTHER_NC.search(line):
        return NetcatResult("unknown", None, None, None, line, number, None, match.group("message"))
    return None


def _protocol(text: str) -> Protocol:
    return "udp" if text == "udp" else "tcp"
