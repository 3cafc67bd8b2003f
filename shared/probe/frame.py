"""The node probe's output frame: parsed into a NodeProbe, or rendered exactly as the script prints it.

Action run-command returns only the last 4,096 bytes of each stream and no exit code, so the frame is
self-checking (BEGIN line, END line with a line count, compressed sections that must decode). Anything
that does not check out becomes `Unavailable` naming what was wrong, never a partial verdict.

`render_frame` follows the script line for line, including its byte budget. The gzip payloads decode to
the same text; their bytes may differ from GNU gzip's because the two deflate implementations differ.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections.abc import Mapping, Sequence
from enum import Enum

from shared.probe.params import TUNNEL_CHECKS
from shared.snapshot import NodeProbe, TlsCheck, Unavailable
from shared.tunnel import TUNNEL_CONTAINERS

BEGIN_LINE = "==AKSPROBE v1 BEGIN=="
END_TEMPLATE = "==AKSPROBE v1 END lines={count}=="
FRAME_LIMIT = 3999  # bytes of the whole frame, trailing newline included
TOOLARGE_RESERVE = 40  # room kept for the iptables line while deciding whether ufw fits
AZURE_STREAM_LIMIT = 4096  # run-command keeps the last 4,096 bytes of stdout and of stderr
REACH_OUTCOMES = ("ok", "timeout", "refused", "noroute", "error")
EGRESS_OUTCOMES = (*REACH_OUTCOMES, "unresolved", "silent")
CLUSTER_CA = "/etc/kubernetes/certs/ca.crt"  # fixed in the script; named here for messages
# How the script's `tls` words read, when no handshake could be judged.
TLS_ERRORS = {
    "absent": "openssl is not installed on the node, so the TLS handshake could not be checked",
    "noca": f"the node holds no cluster CA at {CLUSTER_CA}, so the served certificate could not be verified",
    "unresolved": "the API server host did not resolve on the node, so no TLS handshake was made",
    "error": "the TLS handshake to the API server on 443 gave no certificate (no answer, reset or not TLS)",
}
# X.509 verify codes that mean "this chain does not lead to the cluster CA" (another issuer). Any other
# non-zero code (expired, not yet valid, ...) says nothing about who issued it: verified stays None.
OTHER_ISSUER_CODES = frozenset({2, 7, 18, 19, 20, 21})
TRUNCATED = "probe output was truncated"

_MAX_SECTION_TEXT = 4 * 1024 * 1024  # a 4 KB frame cannot honestly decompress to more than this
_END_RE = re.compile(r"==AKSPROBE v1 END lines=(\d+)==")
_ANY_BEGIN_RE = re.compile(r"==AKSPROBE (v\S+) BEGIN==")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_SECTION_RE = re.compile(r"(absent|error|toolarge (\d+)|gz ([A-Za-z0-9+/=]+))")
_LINE_PATTERNS: dict[str, re.Pattern[str]] = {
    "host": re.compile(r"\S+"),
    "crictl": re.compile(r"absent|error|none|[a-z0-9-]+(?:,[a-z0-9-]+)*"),
    "ctr": re.compile(r"absent|error|none|([a-z0-9-]+:[a-z]+:[0-9]{1,6})(?:,[a-z0-9-]+:[a-z]+:[0-9]{1,6})*"),
    "api": re.compile(rf"(\S+) ({_IPV4}|unresolved)"),
    "tls": re.compile(r"(absent|noca|unresolved|error)|([0-9]{1,3}) ([A-Za-z0-9._/-]+) ?([ -~]{0,100})"),
    "egress": re.compile(rf"({'|'.join(TUNNEL_CHECKS)}) ({'|'.join(EGRESS_OUTCOMES)})"),
    "reach": re.compile(rf"({_IPV4}) ({'|'.join(REACH_OUTCOMES)})"),
    "ufw": _SECTION_RE,
    "iptables": _SECTION_RE,
}
_REQUIRED_KEYS = ("host", "crictl", "api", "ufw", "iptables")


class Missing(Enum):
    """Why a tool's section carries no text: the tool is not installed, or it failed."""

    ABSENT = "absent"
    ERROR = "error"


# ---------------------------------------------------------------- parsing


def parse_run_command_output(message: str, node: str) -> NodeProbe | Unavailable:
    """Turn a run-command instance-view status message into what the probe saw on `node`."""
    streams = split_run_command_message(message)
    if streams is None:
        first = message.strip().splitlines()[0][:200] if message.strip() else "(empty message)"
        return Unavailable(f"run-command returned no [stdout] section: {first}")
    return parse_frame(streams[0], node)


def split_run_command_message(message: str) -> tuple[str, str] | None:
    """(stdout, stderr) from `Enable succeeded: \\n[stdout]\\n...\\n[stderr]\\n...`, or None if absent."""
    marker = "[stdout]\n"
    start = message.find(marker)
    if start < 0:
        return None
    rest = message[start + len(marker):]
    cut = rest.find("\n[stderr]\n")
    if cut < 0:
        return rest, ""
    return rest[:cut], rest[cut + len("\n[stderr]\n"):]


def parse_frame(stdout: str, node: str) -> NodeProbe | Unavailable:
    """Parse the script's stdout; a frame that does not check out is Unavailable with the reason."""
    lines = [line.rstrip("\r") for line in stdout.splitlines()]
    begins = [i for i, line in enumerate(lines) if line.strip() == BEGIN_LINE]
    if not begins:
        other = next((m for line in lines if (m := _ANY_BEGIN_RE.fullmatch(line.strip()))), None)
        if other is not None:
            return Unavailable(f"the node probe speaks protocol {other.group(1)}; this monitor reads v1")
        return Unavailable(f"{TRUNCATED}: the frame's BEGIN line is missing (run-command keeps only the "
                           f"last {AZURE_STREAM_LIMIT:,} bytes of stdout)")
    start = begins[-1]
    end = next((i for i in range(start + 1, len(lines)) if _END_RE.fullmatch(lines[i].strip())), None)
    if end is None:
        return Unavailable(f"{TRUNCATED}: the frame's END line is missing (the script did not finish "
                           "or its output was cut)")
    body = lines[start + 1:end]
    end_match = _END_RE.fullmatch(lines[end].strip())
    assert end_match is not None
    declared = int(end_match.group(1))
    if declared != len(body):
        return Unavailable(f"{TRUNCATED}: the END line counts {declared} lines but {len(body)} arrived")
    return _parse_body(body, node)


def _parse_body(body: Sequence[str], node: str) -> NodeProbe | Unavailable:
    if len(body) == 1 and body[0].startswith("error "):
        return Unavailable(f"the node probe refused to run: {body[0][len('error '):]}")
    found: dict[str, re.Match[str]] = {}
    reach: dict[str, str] = {}
    egress: dict[str, str] = {}
    for number, line in enumerate(body, start=1):
        key, _, value = line.partition(" ")
        pattern = _LINE_PATTERNS.get(key)
        if pattern is None:
            continue  # a later protocol revision may add lines; v1 readers skip them
        match = pattern.fullmatch(value)
        if match is None:
            return Unavailable(f"probe output is malformed: frame line {number}: {line[:80]!r}")
        if key == "reach":
            reach[match.group(1)] = match.group(2)
        elif key == "egress":
            egress[match.group(1)] = match.group(2)
        else:
            found[key] = match
    missing = [k for k in _REQUIRED_KEYS if k not in found]
    if missing:
        return Unavailable(f"probe output is malformed: no {', '.join(missing)} line in the frame")

    ufw = _section_text(found["ufw"], "ufw")
    iptables = _section_text(found["iptables"], "iptables")
    for section in (ufw, iptables):
        if isinstance(section, Unavailable) and section.reason.startswith(TRUNCATED):
            return section  # a corrupted payload means the frame itself cannot be trusted
    ufw_error = _section_error(ufw, "`ufw status verbose`")
    iptables_error = _section_error(iptables, "the iptables filter table")

    crictl = found["crictl"].group(0)
    containers = None if crictl in ("absent", "error") else () if crictl == "none" else tuple(crictl.split(","))
    api_ip = found["api"].group(2)
    tls = _tls_check(found["tls"]) if "tls" in found else None
    return NodeProbe(
        node=node,
        ufw_status=ufw if isinstance(ufw, str) else None,
        # None also for error/toolarge: the iptables cause then answers `unknown`, never a verdict.
        iptables_save=iptables if isinstance(iptables, str) else None,
        ufw_error=ufw_error,
        iptables_error=iptables_error,
        containers=containers,
        reachability=reach,
        egress=egress,
        api_server_ip=None if api_ip == "unresolved" else api_ip,
        tls=tls,
        container_states=_container_states(found["ctr"].group(0)) if "ctr" in found else {},
    )


def _container_states(word: str) -> dict[str, str]:
    """`aks-link:exited:4` -> {"aks-link": "exited restarts=4"}: crictl's state of the newest instance,
    lowercased, then how often the container was restarted when it was."""
    if word in ("absent", "error", "none"):
        return {}
    states: dict[str, str] = {}
    for item in word.split(","):
        name, state, attempt = item.split(":")
        states[name] = state if attempt == "0" else f"{state} restarts={int(attempt)}"
    return states


def _tls_check(match: re.Match[str]) -> TlsCheck:
    """The `tls` line as a TlsCheck; anything that is not a judged handshake carries its reason in `error`."""
    if match.group(1) is not None:
        return TlsCheck(verified=None, alpn=None, error=TLS_ERRORS[match.group(1)])
    code = int(match.group(2))
    alpn = None if match.group(3) == "-" else match.group(3)
    issuer = (match.group(4) or "").strip()
    if code == 0:
        return TlsCheck(verified=True, alpn=alpn, issuer=issuer)
    if code in OTHER_ISSUER_CODES:
        return TlsCheck(verified=False, alpn=alpn, issuer=issuer)
    return TlsCheck(verified=None, alpn=alpn, issuer=issuer,
                    error=f"the served certificate failed verification for another reason than its issuer "
                          f"(X.509 verify code {code})")


def _section_error(section: str | Missing | Unavailable, what: str) -> str | None:
    """Why a section holds no usable text; None when it has text or the tool is simply absent."""
    if isinstance(section, Unavailable):
        return section.reason
    if section is Missing.ERROR:
        return f"the node probe could not read {what} (the command failed, timed out or its output was too large)"
    return None


def _section_text(match: re.Match[str], name: str) -> str | Missing | Unavailable:
    """The decoded text of a ufw/iptables section; Missing when the script had none to give."""
    if match.group(3) is not None:
        return _decode_gz(match.group(3), name)
    if match.group(2) is not None:
        if name == "ufw":
            return Unavailable(f"`ufw status verbose` output ({match.group(2)} bytes) is too large for "
                               f"run-command's {AZURE_STREAM_LIMIT:,}-byte output limit")
        return Missing.ERROR
    return Missing(match.group(1))


def _decode_gz(encoded: str, name: str) -> str | Unavailable:
    try:
        packed = base64.b64decode(encoded, validate=True)
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        raw = inflater.decompress(packed, _MAX_SECTION_TEXT)
        if not inflater.eof or inflater.unconsumed_tail:
            raise zlib.error("incomplete or oversized gzip stream")
    except (binascii.Error, ValueError, zlib.error):
        return Unavailable(f"{TRUNCATED} or corrupted: the {name} section is not valid base64-encoded gzip")
    return raw.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- rendering


def render_frame(*, host: str, containers: Sequence[str] | Missing, api_host: str, api_ip: str | None,
                 egress: Mapping[str, str], reach: Mapping[str, str],
                 ufw_status: str | Missing, iptables_rules: str | Missing,
                 tls: str | None = None,
                 container_states: Mapping[str, tuple[str, int]] | None = None) -> str:
    """What the script prints for these observations.

    `egress` and `reach` are in argument order; `iptables_rules` is the already-filtered text (the
    rules reachable from INPUT), exactly what the script would compress. `tls` is the word(s) after
    `tls ` (`absent`, `noca`, `error` or `<verify code> <alpn or -> <issuer>`; None: as without openssl);
    `container_states` maps a tunnel agent to (state, attempt) of its newest instance (None: every
    running container in `containers` at attempt 0).
    """
    lines = [f"host {_sanitized_host(host)}", f"crictl {_crictl_word(containers)}",
             f"ctr {_ctr_word(containers, container_states)}",
             f"api {api_host} {api_ip or 'unresolved'}",
             f"tls {(tls or 'absent') if api_ip else 'unresolved'}"]
    lines += [f"egress {check} {outcome if api_ip else 'unresolved'}" for check, outcome in egress.items()]
    lines += [f"reach {ip} {outcome}" for ip, outcome in reach.items()]

    used = len(BEGIN_LINE) + 1 + sum(len(line) + 1 for line in lines)
    used += len(END_TEMPLATE.format(count=len(lines) + 2)) + 1
    ufw_line = _section_line("ufw", ufw_status, FRAME_LIMIT - used - TOOLARGE_RESERVE)
    used += len(ufw_line) + 1
    lines += [ufw_line, _section_line("iptables", iptables_rules, FRAME_LIMIT - used)]
    return _framed(lines)


def render_error_frame(reason: str) -> str:
    """The frame the script prints when it refuses its arguments."""
    return _framed([f"error {reason}"])


def wrap_run_command_message(stdout: str, stderr: str) -> str:
    """The instance-view status message as Azure builds it, each stream cut to its last 4,096 bytes."""
    return f"Enable succeeded: \n[stdout]\n{_last_bytes(stdout)}\n[stderr]\n{_last_bytes(stderr)}"


def gzip_base64(text: str) -> str:
    """The script's `gzip -9 -n | base64 -w0` in Python (mtime 0, same header; deflate bytes may differ)."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def _framed(lines: Sequence[str]) -> str:
    body = "".join(f"{line}\n" for line in lines)
    return f"{BEGIN_LINE}\n{body}{END_TEMPLATE.format(count=len(lines))}\n"


def _section_line(name: str, value: str | Missing, room: int) -> str:
    if isinstance(value, Missing):
        return f"{name} {value.value}"
    encoded = gzip_base64(value)
    if len(name) + 4 + len(encoded) + 1 <= room:
        return f"{name} gz {encoded}"
    return f"{name} toolarge {len(value.encode('utf-8'))}"


def _crictl_word(containers: Sequence[str] | Missing) -> str:
    if isinstance(containers, Missing):
        return containers.value
    running = [name for name in TUNNEL_CONTAINERS if name in containers]
    return ",".join(running) or "none"


def _ctr_word(containers: Sequence[str] | Missing,
              states: Mapping[str, tuple[str, int]] | None) -> str:
    if isinstance(containers, Missing):
        return containers.value
    if states is None:
        states = dict.fromkeys(containers, ("running", 0))
    items = [f"{name}:{states[name][0]}:{states[name][1]}" for name in TUNNEL_CONTAINERS if name in states]
    return ",".join(items) or "none"


def _sanitized_host(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "", host)[:64] or "unknown"


def _last_bytes(text: str) -> str:
    raw = text.encode("utf-8")
    return raw[-AZURE_STREAM_LIMIT:].decode("utf-8", errors="ignore")
