"""Refusals inside UFW's own netfilter chains: which UFW file they most likely come from, and whether
`ufw status` accounts for them.

`ufw status verbose` shows only the user rules (`ufw allow|deny ...`, kept in /etc/ufw/user.rules) and the
default policies. Rules in /etc/ufw/before.rules and after.rules, and anything hand-added to a `ufw-*`
chain with iptables, are loaded into the same chains but never shown. So a DROP/REJECT reached inside a
`ufw-*` chain is UFW's visible decision only when the status says so for the same flow, with the same
effect, from the same place (a user rule, or the default policy).
"""

from __future__ import annotations

from typing import Final

from shared.netrules.iptables_eval import IptablesVerdict
from shared.netrules.ufw import UfwVerdict

DEFAULT_POLICY_FILE: Final = "/etc/default/ufw"
# Chains that apply the default incoming policy (ufw's skip-to-policy and reject chains).
POLICY_CHAINS: Final = frozenset({"ufw-skip-to-policy-input", "ufw-reject-input"})
_EFFECT_TO_VERDICT: Final = {"deny": "drop", "reject": "reject"}


def source_file(chain: str | None) -> str:
    """The UFW file a rule in `chain` most likely comes from (None: the INPUT policy, which ufw sets)."""
    if chain is None or chain in POLICY_CHAINS:
        return DEFAULT_POLICY_FILE
    if chain.startswith("ufw-before-"):
        return "/etc/ufw/before.rules"
    if chain.startswith("ufw-after-"):
        return "/etc/ufw/after.rules"
    if chain.startswith("ufw-user-"):
        return "/etc/ufw/user.rules"
    return "no UFW file (hand-added to a UFW chain)"


def status_explains(status_verdict: UfwVerdict, kernel: IptablesVerdict) -> bool:
    """True when `ufw status` refuses the flow the way the kernel's UFW chains do: same effect, and the
    deciding place agrees (a user rule -> a ufw-user-* chain; the default policy -> the policy)."""
    if status_verdict.blocked is not True or not kernel.in_ufw_chain:
        return False
    if _EFFECT_TO_VERDICT.get(status_verdict.decision) != kernel.verdict:
        return False
    rule = kernel.rule
    if status_verdict.rule is not None:
        return rule is not None and rule.chain.startswith("ufw-user-")
    return rule is None or rule.chain in POLICY_CHAINS


def remediation(kernel: IptablesVerdict, removal: str | None, *, allow_from: str, port: int) -> tuple[str, ...]:
    """How to remove a refusal found in a UFW chain, according to where it most likely lives."""
    rule = kernel.rule
    where = source_file(rule.chain if rule else None)
    if rule is None or where == DEFAULT_POLICY_FILE:
        return (f"sudo ufw allow from {allow_from} to any port {port} proto tcp",
                "sudo ufw default allow incoming  # alternative: stops refusing by default")
    line = " ".join(rule.text.split())
    if where.startswith("/etc/ufw/"):
        return (f"sudoedit {where}  # delete or change the line '{line}'",
                "sudo ufw reload  # reloads UFW's files into the kernel")
    steps = [f"sudo {removal}" if removal else f"sudo iptables -D {rule.chain} {rule.index}"]
    steps.append("# the rule is in no UFW file: find what adds it (a startup script, a DaemonSet) so it does "
                 "not come back")
    return tuple(steps)
