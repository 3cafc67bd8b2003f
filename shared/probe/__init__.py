"""The node probe: a fixed bash script run on AKS nodes through VMSS run-command, its parameters and its output.

Everything the monitor sends is a validated run-command parameter (`params`), the script is a file that
ships with the package (`node_probe.sh`), and its framed output comes back through `frame`.
The contract is docs/probe-protocol.md.
"""

from shared.probe.frame import parse_run_command_output, render_error_frame, render_frame, wrap_run_command_message
from shared.probe.params import build_parameters, load_script, time_bound_seconds

__all__ = [
    "build_parameters",
    "load_script",
    "parse_run_command_output",
    "render_error_frame",
    "render_frame",
    "time_bound_seconds",
    "wrap_run_command_message",
]
