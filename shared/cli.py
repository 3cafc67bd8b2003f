"""Command line: argument parsing and exit codes only; the work lives in the modules it calls.

Heavy modules (Azure SDK, storage) are imported inside the verbs that need them, so `analyze` on a
laptop starts instantly and works without any Azure package configured.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.model import ExitCode


class UsageError(Exception):
    """Bad input from the user: one line on stderr, exit code 2."""


def _ip(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 address: {value!r}") from None


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {value!r}")
    return int(value)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse exits with 2 already; keep its one-line message but without the usage dump noise.
        self.print_usage(sys.stderr)
        self.exit(ExitCode.BAD_INPUT, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m shared", description="AKS tunnel connectivity monitor")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    diagnose = verbs.add_parser("diagnose", help="diagnose one cluster now")
    diagnose.add_argument("cluster_id", metavar="CLUSTER_ID", help="managed cluster resource id")
    diagnose.add_argument("--json", action="store_true", help="print the report as JSON")
    diagnose.add_argument("--no-probes", action="store_true", help="control-plane checks only (no run-command)")

    scan = verbs.add_parser("scan", help="one full monitoring cycle over the configured fleet")
    scan.add_argument("--json", action="store_true")

    serve = verbs.add_parser("serve", help="local host for the HTTP functions and the timers")
    serve.add_argument("--port", type=_port, default=7071)

    verbs.add_parser("demo", help="the whole system on the bundled simulated fleet")

    analyze = verbs.add_parser("analyze", help="verdict on saved iptables / ufw / nc output")
    analyze.add_argument("kind", choices=("iptables", "ufw", "nc"))
    analyze.add_argument("file", metavar="FILE", help="saved output, or - for stdin")
    analyze.add_argument("--source", type=_ip, help="source address inside the VNet (default 10.224.0.4)")
    analyze.add_argument("--dest", type=_ip, help="the node's address (default 10.224.0.5)")
    analyze.add_argument("--port", type=_port, default=10250)
    analyze.add_argument("--json", action="store_true")
    return parser


def _read_input(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    path = Path(file)
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UsageError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{file}: is a directory") from None
    except PermissionError:
        raise UsageError(f"{file}: permission denied") from None


def _run_analyze(args: argparse.Namespace) -> int:
    from shared.analyze import analyze
    from shared.netrules.errors import ParseError

    text = _read_input(args.file)
    origin = "stdin" if args.file == "-" else args.file
    try:
        result = analyze(args.kind, text, source=args.source, dest=args.dest, port=args.port, origin=origin)
    except ParseError as exc:
        raise UsageError(f"{origin}: not {args.kind} output: {exc}") from None
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(f"{args.kind}: {result.status}: {result.summary}")
        for item in result.evidence:
            print(f"  evidence: {item['resource']}: {item['detail']}")
        for step in result.remediation:
            print(f"  fix: {step}")
    return int(result.exit_code)


def _settings() -> Any:
    from shared.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _run_diagnose(args: argparse.Namespace) -> int:
    from shared.azure.collect import CollectionError
    from shared.azure.ids import InvalidResourceId
    from shared.diagnose import diagnose, render_table
    from shared.model import Verdict, exit_code_of
    from shared.progress import progress_reporter

    settings = _settings()
    try:
        progress = progress_reporter("probing nodes", every=10)
        result = diagnose(args.cluster_id, settings=settings, probes=not args.no_probes, progress=progress)
    except (InvalidResourceId, CollectionError) as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        print(render_table(result.report))
    return int(exit_code_of(Verdict(result.report["verdict"])))


def _monitor() -> Any:
    """The Monitor from the environment, built the one way the Functions app and the dev tools build it."""
    from shared.monitor.factory import MonitorSetupError, build_monitor

    try:
        return build_monitor()
    except MonitorSetupError as exc:
        raise UsageError(str(exc)) from None


def _run_scan(args: argparse.Namespace) -> int:
    from shared.model import Verdict, worst_exit_code
    from shared.monitor.render import cycle_table
    from shared.progress import progress_reporter

    monitor = _monitor()
    summary = monitor.run_cycle(progress=progress_reporter("checked clusters", every=25))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(cycle_table(summary))
    verdicts = [Verdict(r["verdict"]) for r in summary.reports]
    if summary.errors and not verdicts:
        return int(ExitCode.INCONCLUSIVE)
    if summary.errors:
        verdicts.append(Verdict.INCONCLUSIVE)
    return int(worst_exit_code(verdicts))


def _devtools(module: str) -> Any:
    """A development tool (`devtools/`, never deployed): present in a checkout, absent from the Function App."""
    import importlib

    try:
        return importlib.import_module(f"devtools.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("devtools"):
            raise UsageError("this verb is a development tool: run it from a checkout of the repository "
                             "(the devtools package is not deployed)") from None
        raise


def _run_serve(args: argparse.Namespace) -> int:
    DevHost = _devtools("devhost").DevHost

    monitor = _monitor()
    host = DevHost(lambda: monitor, args.port)
    host.start()
    print(f"serving http://127.0.0.1:{host.port}/api/ (health, findings, diagnose); timers on; Ctrl-C stops")
    try:
        threading.Event().wait()
    finally:
        host.stop()
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    return int(_devtools("demo").run_demo())


def main(argv: Sequence[str] | None = None) -> int:
    from shared.logcontext import install
    from shared.telemetry import install_cli_logging

    install()
    install_cli_logging()
    args = build_parser().parse_args(argv)
    handlers = {"analyze": _run_analyze, "diagnose": _run_diagnose, "scan": _run_scan, "serve": _run_serve,
                "demo": _run_demo}
    try:
        handler = handlers.get(args.verb)
        if handler is None:
            raise UsageError(f"'{args.verb}' is not available in this build yet")
        return handler(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
