"""`python -m shared demo`: the whole monitor on the bundled simulated fleet, no Azure account needed.

It starts what is missing (Azurite, the local Azure emulator, a local webhook sink), runs one full cycle
exactly as `scan` does, prints the findings and the alerts that arrived, then serves the API until Ctrl-C,
and stops everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

AZURITE_TABLE_PORT = 10002
DEMO_SECRET = "demo-secret-not-for-production"  # noqa: S105 (public demo value) the sink verifies signatures with it; nothing else uses it
REPO = Path(__file__).resolve().parents[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def azurite() -> Iterator[str]:
    """Azurite on its default ports: the one already running, or a private one we start and stop."""
    if _listening(AZURITE_TABLE_PORT):
        print("storage: using the Azurite already running on 127.0.0.1:10000-10002")
        yield "UseDevelopmentStorage=true"
        return
    binary = shutil.which("azurite") or str(REPO / "node_modules" / ".bin" / "azurite")
    if not Path(binary).exists():
        raise SystemExit("Azurite is not installed: run `npm ci` in the repository (make demo does it)")
    data = Path(tempfile.mkdtemp(prefix="tunnelmon-azurite-"))
    log = (data / "azurite.log").open("w")
    proc = subprocess.Popen([binary, "--silent", "--location", str(data), "--skipApiVersionCheck", "--loose",
                             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if _listening(AZURITE_TABLE_PORT):
                break
            if proc.poll() is not None:
                raise SystemExit(f"Azurite exited: {(data / 'azurite.log').read_text()[-500:]}")
            threading.Event().wait(0.1)
        print(f"storage: started Azurite (pid {proc.pid})")
        yield "UseDevelopmentStorage=true"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


class AlertSink:
    """A local HTTPS receiver for the generic webhook that checks the HMAC signature of each alert."""

    def __init__(self, workdir: Path) -> None:
        import trustme

        from shared.notify.generic import verify

        self.ca = trustme.CA()
        self.received: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                valid = verify(DEMO_SECRET, dict(self.headers.items()), body, now=time.time())
                sink.received.append({"valid": valid, **json.loads(body)})
                self.send_response(200 if valid else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        import ssl

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1").configure_cert(context)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.ca_file = workdir / "sink-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_demo(*, serve: bool = True, port: int = 7071) -> int:
    from devtools.emulator.arm import Emulator

    scenario = resources.files("devtools.emulator") / "scenarios" / "demo.json"
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="tunnelmon-demo-"))
        stack.callback(shutil.rmtree, workdir, True)
        storage = stack.enter_context(azurite())
        emulator = stack.enter_context(Emulator(str(scenario)))
        sink = AlertSink(workdir)
        stack.callback(sink.close)
        bundle = workdir / "ca-bundle.pem"
        bundle.write_text(Path(emulator.ca_bundle).read_text() + sink.ca_file.read_text())
        env = {**emulator.env(), "REQUESTS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": str(bundle),
               "AzureWebJobsStorage": storage, "NODE_PROBES": os.environ.get("NODE_PROBES", "all"),
               "ALERT_WEBHOOK_URL": sink.url, "ALERT_WEBHOOK_SECRET": DEMO_SECRET,
               "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
        os.environ.update(env)
        print(f"azure: local emulator at {emulator.arm_endpoint} (scenario {scenario.name}; "
              f"{'real network namespaces' if os.geteuid() == 0 else 'in-process node responder (not root)'})")
        from shared.monitor.factory import build_monitor
        from shared.monitor.render import cycle_table
        from shared.progress import progress_reporter

        monitor = build_monitor()
        summary = monitor.run_cycle(progress=progress_reporter("checked clusters", every=25))
        print()
        print(cycle_table(summary))
        print()
        from shared.store.findings import list_findings

        print("open findings:")
        for finding in list_findings(monitor.store, "open"):
            print(f"  {finding.cause} on {finding.cluster_name} ({finding.subject.rsplit('/', 1)[-1]}): "
                  f"{finding.summary}")
        print()
        print(f"alerts delivered to the local webhook sink {sink.url} (signature checked):")
        for alert in sink.received:
            print(f"  [{alert['event']}] {alert['cause']['id']} on {alert['cluster']['name']}: "
                  f"{'signature ok' if alert['valid'] else 'BAD SIGNATURE'}")
        if not serve:
            return 0
        from devtools.devhost import DevHost

        host = DevHost(lambda: monitor, port)
        host.start()
        stack.callback(host.stop)
        print()
        print(f"API: http://127.0.0.1:{host.port}/api/findings  /api/health  "
              "/api/diagnose?clusterId=<id>")
        print(f"fleet page: http://127.0.0.1:{host.port}/api/dashboard   (Ctrl-C stops and cleans up)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("\nstopping")
    return 0
