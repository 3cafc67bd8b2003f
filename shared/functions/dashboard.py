"""The fleet page: one HTML page and its static assets, plus the two small JSON reads only it needs.

GET /api/dashboard               the page (shared/web/index.html)
GET /api/dashboard/{*path}       its assets (shared/web/*: app.js, app.css, ...), nothing outside that folder
GET /api/snat?cluster=<id>       the cluster's stored SNAT samples (shared/store/snat_samples.py)
GET /api/outbox                  notification outbox counts per channel and status (never URLs or payloads)

Everything else the page shows comes from the documented JSON routes (/api/clusters, /api/findings,
/api/findings/{id}/history, /api/health). Every route here is a GET that reads storage: nothing on the
page can act on Azure. Auth is the same function key as the other HTTP functions; because a browser
cannot add a header to `<script src>`, the page is opened with `?code=<key>` and that key (validated,
URL-encoded) is repeated on its asset URLs, and the page's scripts pass it on to the API calls.
Responses carry a strict Content-Security-Policy and `Referrer-Policy: no-referrer`, so the key in the
URL never leaves in a Referer header.

Like shared.functions.api, the logic is plain functions (request values in, `WebResponse` out) that the
Functions blueprint and the local dev host both call.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import azure.functions as func

from shared.functions.api import ApiResponse, error

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
# No inline script or style, no other origin. 'unsafe-eval' is there only so browser automation (Playwright's
# wait_for_function, used by checks that watch the page) can evaluate its predicates: the page's own code never
# evaluates strings, and without inline scripts no injected markup can run.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-eval'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Function keys are base64url-like; anything else is not repeated into the page.
_KEY = re.compile(r"^[A-Za-z0-9_\-=+/.]{1,256}$")
_ASSET = re.compile(r"^[a-z0-9][a-z0-9_\-]*(/[a-z0-9][a-z0-9_\-.]*)*\.[a-z0-9]+$")
MAX_SAMPLE_HOURS = 24 * 90


@dataclass(frozen=True)
class WebResponse:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, result: ApiResponse) -> WebResponse:
        return cls(result.status, result.json_bytes(), "application/json", dict(result.headers))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class Dashboard:
    """`context` builds the Monitor lazily, as for `Api`; the page and assets never need it."""

    def __init__(self, context: Callable[[], Any], web_dir: Path = WEB_DIR) -> None:
        self._context = context
        self._web = web_dir.resolve()

    # ------------------------------------------------------------ page and assets

    def page(self, base: str, key: str | None) -> WebResponse:
        """index.html with its asset URLs under `base` (e.g. /api/dashboard) and the function key, if any."""
        template = (self._web / "index.html").read_text(encoding="utf-8")
        query = f"?code={quote(key, safe='')}" if key and _KEY.match(key) else ""
        body = (template.replace("{{BASE}}", html.escape(base.rstrip("/"), quote=True))
                .replace("{{QUERY}}", html.escape(query, quote=True)))
        return WebResponse(200, body.encode("utf-8"), CONTENT_TYPES[".html"],
                           {**SECURITY_HEADERS, "Cache-Control": "no-store"})

    def asset(self, path: str) -> WebResponse:
        """A file under shared/web, by a conservative name pattern, never outside that folder."""
        name = path.strip("/")
        if not name or name == "index.html":
            return self._not_found(path)
        if not _ASSET.match(name) or ".." in name:
            return self._not_found(path)
        target = (self._web / name).resolve()
        if not target.is_relative_to(self._web) or not target.is_file():
            return self._not_found(path)
        content_type = CONTENT_TYPES.get(target.suffix.lower())
        if content_type is None:
            return self._not_found(path)
        return WebResponse(200, target.read_bytes(), content_type,
                           {**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    @staticmethod
    def _not_found(path: str) -> WebResponse:
        return WebResponse.from_api(error(404, f"no dashboard asset {path[:80]!r}"))

    # ------------------------------------------------------------ JSON reads the page needs

    def snat(self, query: Mapping[str, str]) -> ApiResponse:
        """Stored SNAT samples of one cluster over the last `hours` (default: the whole retention)."""
        from shared.azure.ids import InvalidResourceId, parse_cluster_id
        from shared.store.snat_samples import list_snat_samples, retention_days

        cluster = query.get("cluster", "").strip()
        if not cluster:
            return error(400, "cluster is required (a managed cluster resource id)", field_name="cluster")
        try:
            parse_cluster_id(cluster)
        except InvalidResourceId as exc:
            return error(400, str(exc), field_name="cluster")
        monitor = self._context()
        retention = retention_days(getattr(monitor, "env", None))
        hours_text = query.get("hours", "").strip()
        hours = retention * 24
        if hours_text:
            if not hours_text.isdigit() or not 1 <= int(hours_text) <= MAX_SAMPLE_HOURS:
                return error(400, f"hours must be a whole number from 1 to {MAX_SAMPLE_HOURS}", field_name="hours")
            hours = int(hours_text)
        now = monitor.now() if callable(getattr(monitor, "now", None)) else datetime.now(UTC)
        since = now - timedelta(hours=hours)
        samples = [s.to_json() for s in list_snat_samples(monitor.store, cluster, since=since)]
        return ApiResponse(200, {"cluster": cluster, "retentionDays": retention, "since": _iso(since),
                                 "count": len(samples), "samples": samples})

    def outbox(self) -> ApiResponse:
        """Notification rows waiting or given up, per channel: counts only (no URLs, payloads or errors)."""
        from shared.store.outbox import DEAD, PENDING

        store = self._context().store
        counts: dict[str, dict[str, int]] = {}
        oldest: dict[str, str] = {}
        rows = store.outbox.query_entities(
            f"status eq '{PENDING}' or status eq '{DEAD}'", select=["PartitionKey", "status", "created_at"])
        for row in rows:
            status = str(row.get("status"))
            channel = str(row.get("PartitionKey"))
            per = counts.setdefault(channel, {PENDING: 0, DEAD: 0})
            per[status] = per.get(status, 0) + 1
            created = row.get("created_at")
            if status == PENDING and created and (channel not in oldest or str(created) < oldest[channel]):
                oldest[channel] = str(created)
        return ApiResponse(200, {
            "pending": sum(c[PENDING] for c in counts.values()),
            "dead": sum(c[DEAD] for c in counts.values()),
            "channels": [{"channel": name, "pending": c[PENDING], "dead": c[DEAD],
                          "oldestPending": oldest.get(name)} for name, c in sorted(counts.items())],
            "configuredChannels": sorted(getattr(store, "channels", ()) or ()),
        })

    # ------------------------------------------------------------ routing (local dev host)

    def route(self, method: str, path: str, query: Mapping[str, str]) -> WebResponse | None:
        """The response for one of this module's routes, or None when the path is not one of them."""
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts[:1] != ["api"] or len(parts) < 2:
            return None
        if parts[1] == "dashboard":
            if method != "GET":
                return WebResponse.from_api(error(405, "the fleet page is read-only: GET only"))
            if len(parts) == 2 or parts[2:] == ["index.html"]:
                return self.page("/" + "/".join(parts[:2]), query.get("code"))
            return self.asset("/".join(parts[2:]))
        if parts[1:] == ["snat"] and method == "GET":
            return WebResponse.from_api(self.snat(query))
        if parts[1:] == ["outbox"] and method == "GET":
            return WebResponse.from_api(self.outbox())
        return None


# ---------------------------------------------------------------- Functions blueprint

bp = func.Blueprint()  # type: ignore[no-untyped-call]


def _dashboard() -> Dashboard:
    from shared.functions.context import get_monitor

    return Dashboard(get_monitor)


def _respond(result: WebResponse) -> func.HttpResponse:
    return func.HttpResponse(result.body, status_code=result.status, headers=result.headers,
                             mimetype=result.content_type.split(";", 1)[0],
                             charset="utf-8")


def _base(req: func.HttpRequest) -> str:
    """The page's own path up to `/dashboard` (the host's route prefix may differ from `api`)."""
    from urllib.parse import urlsplit

    path = urlsplit(req.url).path
    index = path.lower().find("/dashboard")
    return path[: index + len("/dashboard")] if index >= 0 else "/api/dashboard"


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(_dashboard().page(_base(req), req.params.get("code")))


@bp.route(route="dashboard/{*path}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def dashboard_asset_http(req: func.HttpRequest) -> func.HttpResponse:
    path = req.route_params.get("path", "")
    if path.strip("/") in ("", "index.html"):
        return _respond(_dashboard().page(_base(req), req.params.get("code")))
    return _respond(_dashboard().asset(path))


@bp.route(route="snat", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def snat_samples_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(WebResponse.from_api(_dashboard().snat(dict(req.params))))


@bp.route(route="outbox", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def outbox_counts_http(req: func.HttpRequest) -> func.HttpResponse:
    return _respond(WebResponse.from_api(_dashboard().outbox()))

