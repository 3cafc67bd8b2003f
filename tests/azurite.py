"""A private Azurite (table + queue + blob) for storage tests, on free loopback ports.

Data lives in a temporary directory rather than `--inMemoryPersistence` so that `restart()` keeps it:
the crash-and-rerun tests need the emulator to come back with exactly what was committed before it
went away. Ports stay the same across a restart so the clients' connection string remains valid.

When `AZURITE_CONNECTION_STRING` is set, `shared_azurite()` reuses that emulator instead of starting
one (tests that must stop/restart the emulator still start their own).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared.store.connection import Store, store_from_service
from shared.store.tables import DEFAULT_TABLES

# Azurite's well-known development account; it is public (documented by Microsoft), not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ENV_CONNECTION_STRING = "AZURITE_CONNECTION_STRING"

_REPO = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 40.0
_STOP_TIMEOUT_S = 15.0


def azurite_binary() -> str | None:
    """The azurite launcher: $AZURITE_BIN, the repo's node_modules, or one on PATH."""
    candidates = [os.environ.get("AZURITE_BIN"), str(_REPO / "node_modules" / ".bin" / "azurite"),
                  shutil.which("azurite")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def azurite_unavailable_reason() -> str | None:
    """Why a private Azurite cannot be started here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed (Azurite runs on Node.js)"
    if azurite_binary() is None:
        return "azurite is not installed (run `npm ci` in the repo root, or set AZURITE_BIN)"
    return None


def require_azurite() -> None:
    """Skip (never fake a pass) when neither an external nor a private Azurite is possible."""
    if os.environ.get(ENV_CONNECTION_STRING):
        return
    reason = azurite_unavailable_reason()
    if reason is not None:
        pytest.skip(f"storage test skipped: {reason}")


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT};"
    )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held open together so the kernel cannot hand out one twice)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class AzuriteServer:
    """One Azurite process we own: start, stop (graceful, so it flushes its data) and restart."""

    data_dir: Path
    blob_port: int
    queue_port: int
    table_port: int
    external: bool = False
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_path: Path | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        binary = azurite_binary()
        if binary is None:
            raise RuntimeError("azurite binary not found")
        self._log_path = self.data_dir / "azurite.log"
        cmd = [
            binary, "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            "--location", str(self.data_dir),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]
        with self._log_path.open("ab") as log:
            # Own session: stop() signals exactly this process group, never anything by name.
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                                          start_new_session=True)
        deadline = time.monotonic() + _START_TIMEOUT_S
        ports = (self.blob_port, self.queue_port, self.table_port)
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"azurite exited with {self._proc.returncode}: {self._log_tail()}")
            if all(_accepts(p) for p in ports):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"azurite did not open ports {ports} within {_START_TIMEOUT_S}s: {self._log_tail()}")

    def stop(self) -> None:
        """SIGTERM lets Azurite save its table database; SIGKILL only if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=_STOP_TIMEOUT_S)
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while time.monotonic() < deadline and _accepts(self.table_port):
            time.sleep(0.05)

    def restart(self) -> None:
        if self.external:
            raise RuntimeError("an external Azurite (AZURITE_CONNECTION_STRING) cannot be restarted")
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        return self._log_path.read_text(errors="replace")[-2000:]


@contextmanager
def private_azurite() -> Iterator[AzuriteServer]:
    """A fresh Azurite with its own data directory, always stopped and removed afterwards."""
    reason = azurite_unavailable_reason()
    if reason is not None:
        pytest.skip(f"storage test skipped: {reason}")
    data_dir = Path(tempfile.mkdtemp(prefix="azurite-"))
    blob, queue, table = _free_ports(3)
    server = AzuriteServer(data_dir=data_dir, blob_port=blob, queue_port=queue, table_port=table)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass(frozen=True)
class ExternalAzurite:
    """An emulator someone else runs; we only know how to reach it."""

    connection_string: str
    external: bool = True


@contextmanager
def shared_azurite() -> Iterator[AzuriteServer | ExternalAzurite]:
    """The emulator named by AZURITE_CONNECTION_STRING when set, else a private one."""
    given = os.environ.get(ENV_CONNECTION_STRING)
    if given:
        yield ExternalAzurite(given)
        return
    with private_azurite() as server:
        yield server


@contextmanager
def isolated_store(connection: str, channels: tuple[str, ...] = (), **client_options: Any) -> Iterator[Store]:
    """A Store on its own freshly named tables (so tests never see each other's rows), dropped after."""
    service = TableServiceClient.from_connection_string(connection, **client_options)
    names = DEFAULT_TABLES.namespaced("T" + uuid.uuid4().hex[:10])
    store = store_from_service(service, names=names, channels=channels)
    try:
        yield store
    finally:
        for name in names.all():
            with suppress(Exception):
                service.delete_table(name)
