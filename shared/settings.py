"""Settings from environment variables (= Function App settings). Names and defaults: DESIGN.md."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.azure.ids import is_guid

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
PROBE_MODES = ("off", "sample", "all")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the setting, never a secret value."""


@dataclass(frozen=True)
class Settings:
    subscriptions: tuple[str, ...]  # empty = every subscription the identity can list
    arm_endpoint: str
    arm_scope: str
    node_probes: str
    snat_window_minutes: int
    activity_window_hours: int
    reminder_hours: float
    probe_sample_per_pool: int
    reads_per_second: float
    read_burst: int
    # Delivered and dead outbox rows are purged this many days after they finished (OUTBOX_RETENTION_DAYS).
    outbox_retention_days: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        subs = tuple(s.strip().lower() for s in env.get("MONITOR_SUBSCRIPTIONS", "").split(",") if s.strip())
        bad = [s for s in subs if not is_guid(s)]
        if bad:
            raise SettingsError(f"MONITOR_SUBSCRIPTIONS: not a subscription id: {bad[0]!r}")
        endpoint = env.get("ARM_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ARM_ENDPOINT
        if not endpoint.startswith("https://"):
            raise SettingsError("ARM_ENDPOINT must be an https:// URL")
        scope = env.get("ARM_SCOPE", "").strip() or f"{endpoint}/.default"
        probes = env.get("NODE_PROBES", "sample").strip().lower() or "sample"
        if probes not in PROBE_MODES:
            raise SettingsError(f"NODE_PROBES must be one of {', '.join(PROBE_MODES)}, not {probes!r}")
        return cls(
            subscriptions=subs,
            arm_endpoint=endpoint,
            arm_scope=scope,
            node_probes=probes,
            snat_window_minutes=_int(env, "SNAT_WINDOW_MINUTES", 15, 1, 1440),
            activity_window_hours=_int(env, "ACTIVITY_WINDOW_HOURS", 24, 1, 24 * 90),
            reminder_hours=float(_int(env, "REMINDER_HOURS", 24, 1, 24 * 30)),
            probe_sample_per_pool=_int(env, "PROBE_SAMPLE_PER_POOL", 2, 1, 100),
            reads_per_second=float(_int(env, "ARM_READS_PER_SECOND", 20, 1, 1000)),
            read_burst=_int(env, "ARM_READ_BURST", 200, 1, 10000),
            outbox_retention_days=_int(env, "OUTBOX_RETENTION_DAYS", 7, 1, 3650),
        )


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise SettingsError(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)
