"""`python -m devtools.emulator SCENARIO.json`: serve a scenario and print the env a client must export.

Runs until interrupted (Ctrl-C / SIGTERM). Example:

    python -m devtools.emulator devtools/emulator/scenarios/demo.json --latency 0 > /tmp/emu.env &
    source /tmp/emu.env  # after the first lines appear
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from devtools.emulator.arm import Emulator, with_settings
from devtools.emulator.scenario_load import ScenarioError, load_scenario


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("scenario", help="scenario JSON file (see devtools/emulator/scenario_load.py)")
    parser.add_argument("--latency", type=float, help="seconds per run-command (Azure: ~20-40)")
    parser.add_argument("--page-size", type=int, help="items per list page (forces nextLink paging)")
    parser.add_argument("--throttle", action="store_true", help="enable ARM's per-subscription token bucket")
    parser.add_argument("--responder", action="store_true",
                        help="use the in-process node responder even as root (no network namespaces)")
    args = parser.parse_args(argv)
    try:
        fleet = load_scenario(args.scenario)
    except (OSError, ValueError, ScenarioError) as err:
        print(f"error: cannot load scenario {args.scenario}: {err}", file=sys.stderr)
        return 2
    changes = {k: v for k, v in (("run_command_latency", args.latency), ("page_size", args.page_size)) if v is not None}
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Emulator(with_settings(fleet, **changes), prefer_kernel=not args.responder) as emu:
        if args.throttle:
            emu.throttle.enable()
        for name, value in emu.env().items():
            print(f"export {name}={shlex.quote(value)}")
        print(f"# {len(fleet.clusters)} clusters in {len(fleet.subscriptions)} subscriptions; "
              f"stats at {emu.arm_endpoint}/_emulator/stats", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
