"""Parse and evaluate a 20,000-rule kube-proxy + Calico shaped filter table; compare with a naive baseline.

Run: `.venv/bin/python -m bench.bench_iptables`. Targets (printed, never asserted): parse <= 0.5 s,
one evaluation <= 1 ms. The baseline is measured in the same run on the same input, so the ratios mean
something even on a busy machine: shlex on every line and regex-per-line dispatch for parsing, and an
evaluator that re-scans the whole rule list for every chain it enters and re-interprets tokens.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import statistics
import time
from collections.abc import Callable

from shared.netrules.iptables import Packet, evaluate, parse_iptables
from tests.iptables_gen import large_ruleset

PARSE_TARGET_S = 0.5
EVAL_TARGET_S = 0.001

_RULE = re.compile(r"^-A (\S+) (.*)$")
_CHAIN = re.compile(r"^:(\S+) (\S+)")
NaiveRule = tuple[str, list[str]]


def naive_parse(text: str) -> tuple[list[NaiveRule], dict[str, str]]:
    """The obvious approach: shlex every rule line, keep a flat list."""
    rules: list[NaiveRule] = []
    policies: dict[str, str] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and (m := _CHAIN.match(line)):
            policies[m.group(1)] = m.group(2)
        elif table == "filter" and (m := _RULE.match(line)):
            rules.append((m.group(1), shlex.split(m.group(2))))
    return rules, policies


def _naive_matches(tokens: list[str], src: str, dport: int) -> bool:
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "-s" and ipaddress.ip_address(src) not in ipaddress.ip_network(tokens[i + 1], strict=False):
            return False
        if tok in ("-p",) and tokens[i + 1] not in ("tcp", "6", "all"):
            return False
        if tok == "--dport" and str(dport) != tokens[i + 1]:
            return False
        if tok in ("-j", "-g"):
            return True
        i += 1
    return True


def naive_evaluate(rules: list[NaiveRule], policies: dict[str, str], src: str, dport: int) -> str:
    """Walk INPUT, finding each chain's rules by scanning the whole list every time."""
    def walk(chain: str, depth: int) -> str | None:
        for name, tokens in [r for r in rules if r[0] == chain]:
            if not _naive_matches(tokens, src, dport):
                continue
            target = tokens[tokens.index("-j") + 1] if "-j" in tokens else None
            if target in ("ACCEPT", "DROP", "REJECT"):
                return target.lower()
            if target == "RETURN":
                return None
            if target and any(r[0] == target for r in rules) and depth < 30:
                got = walk(target, depth + 1)
                if got:
                    return got
            del name
        return None

    return walk("INPUT", 0) or policies.get("INPUT", "ACCEPT").lower()


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    text = large_ruleset(20_000)
    ruleset = parse_iptables(text)
    n_rules = sum(len(r) for r in ruleset.chains.values())
    packet = Packet("10.224.0.9", "10.224.0.4", 10250)
    naive_rules, policies = naive_parse(text)

    parse_s = _best_of(lambda: parse_iptables(text), 5)
    naive_parse_s = _best_of(lambda: naive_parse(text), 3)
    eval_runs = 200
    eval_s = _best_of(lambda: [evaluate(ruleset, packet) for _ in range(eval_runs)], 5) / eval_runs
    naive_eval_s = _best_of(lambda: naive_evaluate(naive_rules, policies, "10.224.0.9", 10250), 5)
    verdict = evaluate(ruleset, packet)

    print(f"filter rules: {n_rules} in {len(ruleset.chains)} chains; verdict {verdict.verdict} "
          f"({verdict.reason or verdict.rule})")
    print(f"parse:    {parse_s * 1000:8.1f} ms (target <= {PARSE_TARGET_S * 1000:.0f} ms: "
          f"{'ok' if parse_s <= PARSE_TARGET_S else 'MISSED'}); naive shlex parser {naive_parse_s * 1000:.1f} ms "
          f"-> {naive_parse_s / parse_s:.1f}x faster")
    print(f"evaluate: {eval_s * 1e6:8.1f} us (target <= {EVAL_TARGET_S * 1e6:.0f} us: "
          f"{'ok' if eval_s <= EVAL_TARGET_S else 'MISSED'}); naive re-scanning evaluator "
          f"{naive_eval_s * 1e6:.1f} us -> {naive_eval_s / eval_s:.1f}x faster")
    samples = [_best_of(lambda: parse_iptables(text), 1) for _ in range(3)]
    print(f"parse spread over 3 more runs: median {statistics.median(samples) * 1000:.1f} ms "
          "(a busy shared machine inflates absolute numbers; ratios stay meaningful)")


if __name__ == "__main__":
    main()
