"""Cluster ids are parsed whole: a trailing newline or junk is a usage error, never a silently fixed id."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.azure.ids import InvalidResourceId, parse_cluster_id

SUB = "6b1f1ae4-2c3e-4d6e-9b7a-1a2b3c4d5e6f"
GOOD = f"/subscriptions/{SUB}/resourceGroups/rg-1/providers/Microsoft.ContainerService/managedClusters/aks-1"


def test_a_well_formed_id_in_any_segment_casing_parses() -> None:
    for text in (GOOD, GOOD.replace("resourceGroups", "resourcegroups"), GOOD.lstrip("/"), GOOD.upper()):
        ref = parse_cluster_id(text)
        assert ref.subscription_id == SUB.lower()
        assert ref.name.lower() == "aks-1"


@pytest.mark.parametrize(
    "text",
    [
        GOOD + "\n",
        GOOD + "\r\n",
        GOOD + " ",
        " " + GOOD,
        GOOD + "/",
        GOOD + "/agentPools/np1",
        GOOD + "x\n",
        GOOD + "\nrm -rf /",
        GOOD.replace("aks-1", "aks 1"),
        GOOD.replace(SUB, SUB + "0"),
        GOOD.replace(SUB, SUB[:-1] + "\n"),
        GOOD.replace("rg-1", "rg-1."),
        "/subscriptions//resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks",
        "",
    ],
)
def test_trailing_newline_or_junk_is_invalid(text: str) -> None:
    with pytest.raises(InvalidResourceId):
        parse_cluster_id(text)


@pytest.mark.parametrize("suffix", ["\n", " trailing", "/extra"])
def test_cli_exits_2_with_a_one_line_error(suffix: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARM_")}
    done = subprocess.run([sys.executable, "-m", "shared", "diagnose", GOOD + suffix, "--no-probes"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**env, "NODE_PROBES": "off", "ARM_ENDPOINT": "https://127.0.0.1:9"})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr.strip() != ""
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "cluster" in done.stderr  # names what was wrong
    assert "aks-1" in done.stderr
