"""Azure's official REST examples (copied into tests/fixtures/azure-rest-api-specs), the ground truth for shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SPECS = Path(__file__).resolve().parent / "fixtures" / "azure-rest-api-specs"


def example(relative: str, status: str = "200") -> Any:
    path = SPECS / relative
    if not path.exists():
        pytest.fail(f"official REST example missing from the repo: {path}")
    return json.loads(path.read_text(encoding="utf-8"))["responses"][status]["body"]
