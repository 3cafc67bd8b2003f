"""`python -m bench` (make bench): every benchmark, each printing its figures and ratios."""

from bench import (
    bench_dashboard,
    bench_diagnose,
    bench_firewall,
    bench_functions,
    bench_iptables,
    bench_nsg,
    bench_scan,
    bench_symptom,
)

for bench in (bench_nsg, bench_iptables, bench_firewall, bench_diagnose, bench_scan, bench_functions, bench_dashboard,
              bench_symptom):
    bench.main()
    print()
