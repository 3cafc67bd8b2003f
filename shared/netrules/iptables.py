"""Public face of the iptables checker: parse a dump, evaluate a connection, suggest the fix.

Callers (the `iptables-blocks-10250` cause, `analyze iptables`) import from here only; the parser and
the evaluator live in their own modules so each stays small and testable.
"""

from __future__ import annotations

from shared.netrules.errors import ParseError
from shared.netrules.iptables_eval import (
    DecidingRule,
    IptablesVerdict,
    Packet,
    VerdictKind,
    evaluate,
    removal_command,
    rule_subject,
)
from shared.netrules.iptables_parse import Rule, Ruleset, detect_format, parse_iptables

__all__ = [
    "DecidingRule",
    "IptablesVerdict",
    "Packet",
    "ParseError",
    "Rule",
    "Ruleset",
    "VerdictKind",
    "detect_format",
    "evaluate",
    "parse_iptables",
    "removal_command",
    "rule_subject",
]
