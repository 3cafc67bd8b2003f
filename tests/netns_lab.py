"""Real network namespaces for kernel-truth tests: two hosts joined by a veth pair.

Traffic only ever goes between the namespaces a test creates here (10.250.x.y addresses that exist
nowhere else) or to loopback. Everything is torn down on exit, even when the test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest


def netns_unavailable_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can (root + `ip netns` + the tools)."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"probe{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def require_netns(*tools: str) -> None:
    """Skip (never fake a pass) when the kernel lab cannot be built."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kernel test skipped: {reason}")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"kernel test skipped: missing tools {missing} (make test installs them as root)")


def run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check, timeout=timeout,
                          input=input_text)


@dataclass(frozen=True)
class Host:
    netns: str
    ip: str
    iface: str

    def exec(self, *cmd: str, check: bool = True, timeout: float = 30,
             input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.netns, *cmd], check=check, timeout=timeout,
                   input_text=input_text)

    def popen(self, *cmd: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@contextmanager
def host_pair(subnet_octet: int = 0) -> Iterator[tuple[Host, Host]]:
    """A client and a server namespace on 10.250.<octet>.0/24 joined by a veth pair."""
    tag = uuid.uuid4().hex[:6]
    client = Host(f"cl{tag}", f"10.250.{subnet_octet}.4", f"vc{tag}")
    server = Host(f"sv{tag}", f"10.250.{subnet_octet}.5", f"vs{tag}")
    try:
        for h in (client, server):
            run(["ip", "netns", "add", h.netns])
            run(["ip", "-n", h.netns, "link", "set", "lo", "up"])
        run(["ip", "link", "add", client.iface, "type", "veth", "peer", "name", server.iface])
        for h in (client, server):
            run(["ip", "link", "set", h.iface, "netns", h.netns])
            run(["ip", "-n", h.netns, "addr", "add", f"{h.ip}/24", "dev", h.iface])
            run(["ip", "-n", h.netns, "link", "set", h.iface, "up"])
            # REJECT answers with ICMP, which the kernel rate-limits per peer (1 s): back-to-back rejects
            # would then look like drops. The sysctl is per namespace, so only the lab changes.
            run(["ip", "netns", "exec", h.netns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0"])
        yield client, server
    finally:
        for h in (client, server):
            run(["ip", "netns", "del", h.netns], check=False)


def tcp_connect(client: Host, ip: str, port: int, timeout_s: float = 1.0) -> str:
    """Real TCP connect from `client`: 'open', 'refused' or 'timeout' (as the kernel decided)."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
        "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except (TimeoutError, socket.timeout): print('timeout')\n"
        "except OSError as e: print('error:'+str(e.errno))\n"
    )
    import sys

    out = client.exec(sys.executable, "-c", code, ip, str(port), str(timeout_s), timeout=timeout_s + 10)
    return out.stdout.strip()


@contextmanager
def tcp_listener(server: Host, port: int = 10250) -> Iterator[None]:
    """A real listener on `port` in the server namespace (python, so no extra tool is needed)."""
    import sys
    import time

    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(64); print('ready', flush=True)\n"
        "while True:\n c,_=s.accept(); c.close()\n"
    )
    proc = server.popen(sys.executable, "-c", code, str(port))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"listener did not start: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.01)
        yield
    finally:
        proc.kill()
        proc.wait(timeout=5)
