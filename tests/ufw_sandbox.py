"""Run the REAL ufw inside a test network namespace without ever touching the host's ufw.

Isolation, layer by layer:
- netfilter: every ufw call runs under `ip netns exec <ns>`, so iptables/ip6tables (and the per-netns
  sysctls ufw-init applies from /etc/ufw/sysctl.conf) act on the namespace, not the host;
- files: inside a private mount namespace (`unshare --mount --propagation private`), temp copies are
  bind-mounted over everything ufw writes: /etc/ufw (user*.rules, ufw.conf), /etc/default/ufw
  (default policies) and /lib/ufw (ufw's state dir, where `TESTSTATE` moves its lock file instead of
  the host's /run/ufw.lock). The bind mounts die with the short-lived mount namespace.

Each `run()` is one shell in a fresh mount namespace that re-binds the same temp copies, so state
carries over from call to call exactly as on a real host, while the netns keeps the loaded rules.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.netns_lab import Host

# What ufw (0.36, Debian/Ubuntu) reads or writes outside /usr: `dpkg -L ufw` plus its lock file.
_SANDBOXED_DIRS = ("/etc/ufw", "/lib/ufw")
_SANDBOXED_FILES = ("/etc/default/ufw",)
_MARK = "@@ufw-sandbox-step"


@dataclass(frozen=True)
class StepResult:
    """One ufw command's combined output and exit code, as a person at the shell would see it."""

    args: tuple[str, ...]
    returncode: int
    output: str


def ufw_unavailable_reason() -> str | None:
    """Why the real-ufw sandbox cannot run here, or None when it can."""
    for tool in ("ufw", "unshare", "mount", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            return f"missing tool {tool!r}"
    for path in (*_SANDBOXED_DIRS, *_SANDBOXED_FILES):
        if not Path(path).exists():
            return f"ufw installation incomplete: {path} is missing"
    return None


class UfwSandbox:
    """The real ufw bound to one network namespace and to private copies of its configuration."""

    def __init__(self, host: Host, root: Path) -> None:
        self.host = host
        self.root = root
        self.applications_dir = root / "etc_ufw" / "applications.d"

    def _copy_of(self, real_path: str) -> Path:
        return self.root / real_path.strip("/").replace("/", "_")

    def _prepare(self) -> None:
        for d in _SANDBOXED_DIRS:
            shutil.copytree(d, self._copy_of(d), symlinks=True)
        for f in _SANDBOXED_FILES:
            shutil.copy2(f, self._copy_of(f))

    def add_application_profile(self, file_name: str, ini_text: str) -> None:
        """Drop an app profile into the sandbox's private applications.d (never the host's)."""
        (self.applications_dir / file_name).write_text(ini_text)

    def reset(self) -> None:
        """`ufw --force reset`, first dropping earlier resets' backups: ufw names them by the second and
        refuses to overwrite one, so two resets within a second would otherwise fail."""
        for backup in self._copy_of("/etc/ufw").glob("*.rules.[0-9]*_[0-9]*"):
            backup.unlink()
        self.check(["--force", "reset"])

    def run(self, *commands: Sequence[str], timeout: float = 60) -> list[StepResult]:
        """Run ufw commands (each given without the leading `ufw`) in order inside the sandbox."""
        lines = ["set -e"]
        for real in (*_SANDBOXED_DIRS, *_SANDBOXED_FILES):
            lines.append(f"mount --bind {shlex.quote(str(self._copy_of(real)))} {shlex.quote(real)}")
        lines += ["export TESTSTATE=1 LC_ALL=C LANG=C", "set +e"]
        for i, args in enumerate(commands):
            quoted = " ".join(shlex.quote(a) for a in ("ufw", *args))
            lines.append(f"out=$({quoted} 2>&1); rc=$?")
            lines.append(f'printf "%s\\n%s\\n" "$out" "{_MARK} {i} $rc"')
        script = "\n".join(lines) + "\n"
        done = subprocess.run(
            ["ip", "netns", "exec", self.host.netns, "unshare", "--mount", "--propagation", "private",
             "sh", "-c", script],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ufw sandbox shell failed ({done.returncode}): {done.stderr.strip()}")
        return _split_steps(done.stdout, commands)

    def check(self, *commands: Sequence[str]) -> list[StepResult]:
        """As run(), but a failing ufw command is a test error (shows ufw's own message)."""
        steps = self.run(*commands)
        for step in steps:
            if step.returncode != 0:
                raise RuntimeError(f"ufw {' '.join(step.args)} failed ({step.returncode}): {step.output}")
        return steps


def _split_steps(stdout: str, commands: Sequence[Sequence[str]]) -> list[StepResult]:
    results: list[StepResult] = []
    chunk: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(_MARK + " "):
            _, index, rc = line.split(" ")
            results.append(StepResult(tuple(commands[int(index)]), int(rc), "\n".join(chunk) + "\n"))
            chunk = []
        else:
            chunk.append(line)
    if len(results) != len(commands):
        raise RuntimeError(f"ufw sandbox lost output: {len(results)} of {len(commands)} steps reported")
    return results


@contextmanager
def ufw_sandbox(host: Host) -> Iterator[UfwSandbox]:
    """A sandbox for `host`'s namespace; its temp config copies are removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ufw-sandbox-") as tmp:
        box = UfwSandbox(host, Path(tmp))
        box._prepare()
        yield box
