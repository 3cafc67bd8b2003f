"""One progress indicator for long work (probes, fleet scans), on stderr so JSON on stdout stays clean."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[int, int, str], None]


def progress_reporter(label: str, *, every: int, stream: TextIO | None = None, width: int = 30) -> Progress:
    """A bar redrawn in place on a terminal; otherwise a line every `every` items and at the end (logs, CI)."""
    out = stream if stream is not None else sys.stderr
    interactive = out.isatty()

    def show(done: int, total: int, name: str) -> None:
        if interactive:
            filled = int(width * done / max(total, 1))
            out.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name[:30]:<30}")
            if done == total:
                out.write("\n")
        elif done == total or done % every == 0:
            out.write(f"{label}: {done}/{total}\n")
        out.flush()

    return show
