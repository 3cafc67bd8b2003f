"""The fleet page's server side without a browser: page and asset routes (Functions and dev host), their
security headers, the SNAT samples store on a real Azurite, and the outbox counts (no URLs, no secrets)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devtools.devhost import DevHost
from shared.functions import dashboard
from shared.functions.dashboard import Dashboard
from shared.snapshot import ClusterSnapshot, SnatMetrics, Unavailable
from shared.store.connection import Store
from shared.store.outbox import enqueue, list_outbox, mark_dead
from shared.store.snat_samples import (
    DEFAULT_RETENTION_DAYS,
    busiest_backend,
    list_snat_samples,
    record_snat_sample,
    retention_days,
    write_snat_sample,
)
from tests.azurite import isolated_store

SUB = "6b1f1ae4-2c3e-4d6e-9b7a-1a2b3c4d5e6f"
CLUSTER = f"/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.ContainerService/managedClusters/aks-one"
LB = f"/subscriptions/{SUB}/resourceGroups/mc_rg/providers/Microsoft.Network/loadBalancers/kubernetes"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeMonitor:
    """Only what Dashboard reads: a Store, the env and a clock (the real Monitor has the same three)."""

    def __init__(self, store: Store, now: datetime, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.env = env or {}
        self._now = now

    def now(self) -> datetime:
        return self._now


def snapshot(used: dict[str, tuple[float, ...]], allocated: dict[str, tuple[float, ...]], failed: float = 0.0,
             kind: str = "loadBalancer") -> ClusterSnapshot:
    return ClusterSnapshot(
        id=CLUSTER, name="aks-one", subscription_id=SUB, resource_group="rg-web", location="westeurope",
        node_resource_group="mc_rg", private=False, outbound_type="loadBalancer",
        snat=SnatMetrics(source_id=LB, source_kind=kind, window_minutes=15, failed_connections=failed,
                         successful_connections=100.0, used_ports=used, allocated_ports=allocated),
    )


@pytest.fixture
def store(azurite_connection: str) -> Iterator[Store]:
    with isolated_store(azurite_connection, channels=("webhook", "teams")) as s:
        yield s


# ---------------------------------------------------------------- samples


def test_busiest_backend_is_the_highest_ratio_not_the_highest_count() -> None:
    metrics = snapshot({"10.0.0.4": (100.0, 200.0), "10.0.0.5": (60.0, 63.0)},
                       {"10.0.0.4": (1024.0, 1024.0), "10.0.0.5": (64.0, 64.0)}).snat
    assert isinstance(metrics, SnatMetrics)
    assert busiest_backend(metrics) == ("10.0.0.5", 63.0, 64.0)
    only_used = snapshot({"10.0.0.4": (5.0, 9.0)}, {}).snat
    assert isinstance(only_used, SnatMetrics)
    assert busiest_backend(only_used) == ("10.0.0.4", 9.0, None)  # no invented denominator


def test_one_sample_per_check_and_listing_in_time_order(store: Store) -> None:
    for i, used in enumerate((10.0, 20.0, 30.0)):
        at = T0 + timedelta(minutes=5 * i)
        write_snat_sample(store, snapshot({"n": (used,)}, {"n": (64.0,)}, failed=float(i)), at)
    write_snat_sample(store, snapshot({"n": (30.0,)}, {"n": (64.0,)}, failed=2.0), T0 + timedelta(minutes=10))
    samples = list_snat_samples(store, CLUSTER.upper())  # ARM ids are case-insensitive
    assert [s.at for s in samples] == ["2026-12-01T12:00:00Z", "2026-12-01T12:05:00Z", "2026-12-01T12:10:00Z"]
    assert [s.used_ports for s in samples] == [10.0, 20.0, 30.0]
    last = samples[-1].to_json()
    assert last["allocatedPorts"] == 64.0
    assert last["usageRatio"] == pytest.approx(30 / 64)
    assert last["thresholdRatio"] == 0.75
    assert last["thresholdPorts"] == 48.0
    assert last["failedConnections"] == 2.0
    since = list_snat_samples(store, CLUSTER, since=T0 + timedelta(minutes=5))
    assert len(since) == 2


def test_retention_prunes_old_samples(store: Store) -> None:
    env = {"SNAT_SAMPLE_RETENTION_DAYS": "2"}
    write_snat_sample(store, snapshot({"n": (1.0,)}, {"n": (64.0,)}), T0 - timedelta(days=3), env)
    write_snat_sample(store, snapshot({"n": (2.0,)}, {"n": (64.0,)}), T0 - timedelta(days=1), env)
    assert len(list_snat_samples(store, CLUSTER)) == 2
    write_snat_sample(store, snapshot({"n": (3.0,)}, {"n": (64.0,)}), T0, env)
    assert [s.used_ports for s in list_snat_samples(store, CLUSTER)] == [2.0, 3.0]


def test_retention_setting_is_clamped_and_malformed_falls_back() -> None:
    assert retention_days({}) == DEFAULT_RETENTION_DAYS
    assert retention_days({"SNAT_SAMPLE_RETENTION_DAYS": "0"}) == 1
    assert retention_days({"SNAT_SAMPLE_RETENTION_DAYS": "9999"}) == 90
    assert retention_days({"SNAT_SAMPLE_RETENTION_DAYS": "week"}) == DEFAULT_RETENTION_DAYS


def test_no_sample_without_metrics_or_for_other_families(store: Store) -> None:
    missing = ClusterSnapshot(id=CLUSTER, name="aks-one", subscription_id=SUB, resource_group="rg-web",
                              location="", node_resource_group="", private=False, outbound_type="loadBalancer",
                              snat=Unavailable("metrics throttled (429)"))
    assert record_snat_sample(store, missing, T0) is None
    assert record_snat_sample(store, snapshot({"n": (1.0,)}, {"n": (64.0,)}), T0, families=("nsg",)) is None
    assert list_snat_samples(store, CLUSTER) == []


def test_a_storage_failure_only_logs(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;", retry_total=0)
    broken = Store(**{**store.__dict__, "snat_samples": service.get_table_client("tunnelmonSnatSamplesGone")})
    assert record_snat_sample(broken, snapshot({"n": (1.0,)}, {"n": (64.0,)}), T0) is None
    assert "SNAT sample not stored" in caplog.text
    with pytest.raises(Exception):  # noqa: B017 (the unguarded write does raise)
        write_snat_sample(broken, snapshot({"n": (1.0,)}, {"n": (64.0,)}), T0)


def test_snat_route_validates_and_answers_samples(store: Store) -> None:
    write_snat_sample(store, snapshot({"n": (40.0,)}, {"n": (64.0,)}, failed=3.0), T0 - timedelta(hours=1))
    write_snat_sample(store, snapshot({"n": (50.0,)}, {"n": (64.0,)}, failed=5.0), T0 - timedelta(hours=30))
    board = Dashboard(lambda: FakeMonitor(store, T0))
    assert board.snat({}).status == 400
    bad = board.snat({"cluster": "not-an-id"})
    assert bad.status == 400
    assert bad.body["error"]["field"] == "cluster"
    assert board.snat({"cluster": CLUSTER, "hours": "0"}).status == 400
    assert board.snat({"cluster": CLUSTER, "hours": "x"}).status == 400
    everything = board.snat({"cluster": CLUSTER})
    assert everything.status == 200
    assert everything.body["retentionDays"] == DEFAULT_RETENTION_DAYS
    assert [s["usedPorts"] for s in everything.body["samples"]] == [50.0, 40.0]
    day = board.snat({"cluster": CLUSTER, "hours": "24"})
    assert [s["failedConnections"] for s in day.body["samples"]] == [3.0]


# ---------------------------------------------------------------- outbox counts


def test_outbox_counts_never_show_urls_payloads_or_errors(store: Store) -> None:
    secret_url = "https://hooks.example.invalid/services/T000/B000/SECRETTOKEN"
    payload = json.dumps({"url": secret_url, "summary": "x"})
    for n in range(3):
        enqueue(store, "webhook", f"n{n}", payload, finding_id="f1", event="detected", available_at=T0)
    enqueue(store, "teams", "t1", payload, finding_id="f1", event="detected", available_at=T0)
    dead = next(i for i in list_outbox(store, channel="webhook"))
    mark_dead(store, dead, T0, f"410 Gone from {secret_url}")
    answer = Dashboard(lambda: FakeMonitor(store, T0)).outbox()
    assert answer.status == 200
    assert answer.body["pending"] == 3
    assert answer.body["dead"] == 1
    assert {c["channel"]: (c["pending"], c["dead"]) for c in answer.body["channels"]} == {
        "teams": (1, 0), "webhook": (2, 1)}
    text = json.dumps(answer.body)
    assert "SECRETTOKEN" not in text
    assert "hooks.example" not in text


# ---------------------------------------------------------------- page and assets


def test_page_repeats_a_valid_key_on_asset_urls_and_drops_anything_else(tmp_path: Path) -> None:
    board = Dashboard(lambda: None)
    plain = board.page("/api/dashboard", None)
    assert plain.status == 200
    assert plain.content_type.startswith("text/html")
    html = plain.body.decode()
    assert 'src="/api/dashboard/app.js"' in html
    assert 'href="/api/dashboard/app.css"' in html
    keyed = board.page("/api/dashboard", "abc-DEF_123==").body.decode()
    assert 'src="/api/dashboard/app.js?code=abc-DEF_123%3D%3D"' in keyed
    hostile = board.page("/api/dashboard", '"><script>alert(1)</script>').body.decode()
    assert "<script>alert" not in hostile
    assert 'src="/api/dashboard/app.js"' in hostile
    headers = plain.headers
    assert "script-src 'self' 'unsafe-eval';" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["../functions/api.py", "..%2Fapi.py", "/etc/passwd", "app.py", "", ".hidden.js",
                                  "vendor/../../functions/dashboard.py", "APP.JS"])
def test_assets_never_leave_the_web_folder(path: str) -> None:
    assert Dashboard(lambda: None).asset(path).status == 404


def test_assets_have_their_content_types() -> None:
    board = Dashboard(lambda: None)
    assert board.asset("app.js").content_type.startswith("text/javascript")
    assert board.asset("app.css").content_type.startswith("text/css")
    assert b"fleet-table" in board.page("/api/dashboard", None).body


def test_only_get_and_only_read_routes() -> None:
    board = Dashboard(lambda: None)
    assert board.route("POST", "/api/dashboard", {}) is not None
    assert board.route("POST", "/api/dashboard", {}).status == 405  # type: ignore[union-attr]
    assert board.route("GET", "/api/findings", {}) is None  # the documented API stays in api.py
    assert board.route("POST", "/api/snat", {}) is None


def test_functions_routes_serve_page_and_assets() -> None:
    req = func.HttpRequest(method="GET", url="https://app.example.invalid/api/dashboard?code=k1", body=b"",
                           params={"code": "k1"})
    reply = dashboard.dashboard_http(req)
    assert reply.status_code == 200
    assert reply.mimetype == "text/html"
    assert b'/api/dashboard/app.js?code=k1"' in reply.get_body()
    asset = dashboard.dashboard_asset_http(func.HttpRequest(
        method="GET", url="https://app.example.invalid/api/dashboard/app.css", body=b"",
        route_params={"path": "app.css"}))
    assert asset.status_code == 200
    assert asset.mimetype == "text/css"
    escape = dashboard.dashboard_asset_http(func.HttpRequest(
        method="GET", url="https://app.example.invalid/api/dashboard/x", body=b"", route_params={"path": "../api.py"}))
    assert escape.status_code == 404


def test_dev_host_serves_the_page_with_its_content_types(store: Store) -> None:
    host = DevHost(lambda: FakeMonitor(store, T0), 0, timers=False, env={})
    host.start()
    base = f"http://127.0.0.1:{host.port}"
    try:
        with urllib.request.urlopen(f"{base}/api/dashboard", timeout=30) as reply:
            assert reply.headers["Content-Type"].startswith("text/html")
            assert reply.headers["Content-Security-Policy"]
        with urllib.request.urlopen(f"{base}/api/dashboard/app.js", timeout=30) as reply:
            assert reply.headers["Content-Type"].startswith("text/javascript")
        with urllib.request.urlopen(f"{base}/api/outbox", timeout=30) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            body: dict[str, Any] = json.loads(reply.read())
            assert body["pending"] == 0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{base}/api/dashboard/nope.js", timeout=30)
        assert missing.value.code == 404
    finally:
        host.stop()
