"""The CLI's log lines go through the same redaction as the Functions app's (secrets never logged)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET_SIG = "sig0123456789abcdefSECRET"
URL = f"https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig={SECRET_SIG}"

PROGRAM = textwrap.dedent("""
    import logging, os, sys
    from shared import cli

    def noisy(_args):
        logging.getLogger("shared.notify.test").warning("posting to %s failed", os.environ["TEAMS_WEBHOOK_URL"])
        logging.getLogger("shared.notify.test").error("signing with %s", os.environ["ALERT_WEBHOOK_SECRET"])
        return 0

    cli._run_scan = noisy
    sys.exit(cli.main(["scan"]))
""")


def test_cli_warnings_reach_stderr_without_secrets() -> None:
    env = {**os.environ, "TEAMS_WEBHOOK_URL": URL, "ALERT_WEBHOOK_SECRET": "hmac-key-do-not-log-42"}
    done = subprocess.run([sys.executable, "-c", PROGRAM], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "WARNING shared.notify.test: posting to" in done.stderr  # the line is there, scrubbed
    assert "signing with" in done.stderr
    assert SECRET_SIG not in done.stderr
    assert "/workflows/abc" not in done.stderr
    assert "hmac-key-do-not-log-42" not in done.stderr
