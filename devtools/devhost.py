"""`python -m shared serve`: the HTTP routes under /api/... and the timers, for laptops without Core Tools.

The routes call the same `Api` (and the fleet page's `Dashboard`) as the Functions blueprints; the timers
run the same fan-out as the Functions app (plan the family's cycle, check every cluster, settle) in-process,
on the same NCRONTAB schedules. Function keys are not checked here: the host binds to loopback only.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from shared.functions import ncrontab
from shared.functions.api import Api, ApiResponse
from shared.functions.dashboard import Dashboard, WebResponse

log = logging.getLogger(__name__)

DEFAULT_SCHEDULES: Mapping[str, str] = {
    "SNAT_SCHEDULE": "0 */5 * * * *",
    "NSG_SCHEDULE": "0 */10 * * * *",
    "PROBE_SCHEDULE": "0 */30 * * * *",
    "OUTBOX_SCHEDULE": "30 */2 * * * *",
}
FAMILY_OF_SCHEDULE = {"SNAT_SCHEDULE": "snat", "NSG_SCHEDULE": "nsg", "PROBE_SCHEDULE": "probe"}


def schedules_from_env(env: Mapping[str, str]) -> dict[str, ncrontab.Schedule]:
    """Every timer's schedule, validated; a bad expression names its setting."""
    parsed: dict[str, ncrontab.Schedule] = {}
    for name, default in DEFAULT_SCHEDULES.items():
        expression = env.get(name, "").strip() or default
        try:
            parsed[name] = ncrontab.parse(expression)
        except ncrontab.ScheduleError as exc:
            raise ncrontab.ScheduleError(f"{name}: {exc}") from None
    return parsed


def _handler(api: Api, dashboard: Dashboard) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "tunnelmon-devhost"

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = dict(parse_qsl(url.query))
            try:
                page = dashboard.route(method, url.path, query)
                result = page or WebResponse.from_api(api.route(method, url.path, query, body))
            except Exception as exc:  # the host must keep serving
                log.exception("request failed")
                result = WebResponse.from_api(
                    ApiResponse(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}}))
            payload = result.body
            self.send_response(result.status)
            self.send_header("Content-Type", result.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in result.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return Handler


class TimerLoop:
    """Fires each timer at its next NCRONTAB time; one cycle at a time per timer (no overlap)."""

    def __init__(self, schedules: Mapping[str, ncrontab.Schedule], fire: Callable[[str], None]) -> None:
        self._schedules = schedules
        self._fire = fire
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for name, schedule in self._schedules.items():
            thread = threading.Thread(target=self._run, args=(name, schedule), name=f"timer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, name: str, schedule: ncrontab.Schedule) -> None:
        while not self._stop.is_set():
            now = datetime.now(UTC)
            due = schedule.next_after(now)
            if self._stop.wait((due - now).total_seconds()):
                return
            try:
                self._fire(name)
            except Exception:
                log.exception("timer %s failed", name)

    def stop(self) -> None:
        self._stop.set()


class DevHost:
    def __init__(self, monitor_factory: Callable[[], Any], port: int, *, timers: bool = True,
                 env: Mapping[str, str] | None = None) -> None:
        self.api = Api(monitor_factory)
        self.dashboard = Dashboard(monitor_factory)
        self._factory = monitor_factory
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self.api, self.dashboard))
        self.port = self.server.server_address[1]
        schedules = schedules_from_env(os.environ if env is None else env)
        self.timers = TimerLoop(schedules, self._fire) if timers else None
        self._thread: threading.Thread | None = None

    def _fire(self, name: str) -> None:
        monitor = self._factory()
        if name == "OUTBOX_SCHEDULE":
            monitor.deliver_notifications()
            return
        summary = monitor.run_cycle((FAMILY_OF_SCHEDULE[name],))
        log.info("%s cycle: %d clusters, %d opened, %d resolved", name, summary.clusters, summary.opened,
                 summary.resolved)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, name="devhost", daemon=True)
        self._thread.start()
        if self.timers:
            self.timers.start()

    def stop(self) -> None:
        if self.timers:
            self.timers.stop()
        self.server.shutdown()
        self.server.server_close()
