"""Seeded random iptables filter tables, for kernel-truth tests and the benchmark.

`random_ruleset` builds small tables whose every match the evaluator can decide (so the kernel's answer
is a fair test): chains that jump and goto forward only (the kernel rejects loops), RETURNs, negations,
masks that do and do not cover the test client, port lists and ranges, the real interface name and
others, conntrack states, addrtype, marks set by earlier rules. `large_ruleset` builds a 20,000-rule
kube-proxy + Calico shaped table for the benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class GenContext:
    """The connection under test: client -> server:dport arriving on `iface`."""

    client_ip: str
    server_ip: str
    iface: str
    dport: int = 10250


REJECT_KINDS = ("tcp-reset", "icmp-port-unreachable", "icmp-host-prohibited", "icmp-net-unreachable",
                "icmp-admin-prohibited")


def _net_around(rng: random.Random, ip: str, other: str) -> str:
    """A CIDR that contains `ip` half the time and a foreign network otherwise."""
    length = rng.choice([8, 16, 24, 30, 32])
    base = ip if rng.random() < 0.5 else other
    return f"{base}/{length}"


def _matches(rng: random.Random, ctx: GenContext, serial: int) -> list[str]:
    parts: list[str] = []
    kinds = rng.sample(["proto", "src", "dst", "iface", "dport", "mport", "sport", "ct", "addr", "flags",
                        "mark", "range"], rng.choice([0, 1, 1, 2, 2, 3]))
    if {"dport", "mport", "sport", "flags"} & set(kinds):
        parts.append(rng.choice(["-p tcp", "-p 6"]))
    elif "proto" in kinds:
        parts.append(rng.choice(["-p tcp", "-p 6", "-p udp", "! -p udp", "! -p tcp", "-p all"]))
    for kind in kinds:
        neg = "! " if rng.random() < 0.25 else ""
        if kind == "proto":
            continue
        elif kind == "src":
            parts.append(f"{neg}-s {_net_around(rng, ctx.client_ip, rng.choice(['192.168.7.9', '10.9.8.7']))}")
        elif kind == "dst":
            parts.append(f"{neg}-d {_net_around(rng, ctx.server_ip, '172.16.3.4')}")
        elif kind == "iface":
            name = rng.choice([ctx.iface, ctx.iface[:3] + "+", "eth0", "lo", "eth+"])
            parts.append(f"{neg}-i {name}")
        elif kind in ("dport", "mport", "sport", "flags"):
            if kind == "dport":
                value = rng.choice([str(ctx.dport), "22", "10000:11000", "1:1024", f"{ctx.dport}:65535"])
                parts.append(f"-m tcp {neg}--dport {value}")
            elif kind == "mport":
                value = rng.choice([f"80,443,{ctx.dport}", "22,80", f"1:1024,{ctx.dport - 5}:{ctx.dport + 5}",
                                    "8000:9000,30000:32767"])
                opt = rng.choice(["--dports", "--dports", "--ports"])
                parts.append(f"-m multiport {neg}{opt} {value}")
            elif kind == "sport":
                value = rng.choice(["1024:65535", "1:1023", "32768:65535", "22"])
                parts.append(f"-m tcp {neg}--sport {value}")
            else:
                value = rng.choice(["--syn", "--tcp-flags SYN,ACK SYN", "--tcp-flags ALL NONE",
                                    "--tcp-flags SYN,RST,ACK,FIN SYN", "--tcp-flags ACK ACK"])
                parts.append(f"-m tcp {neg}{value}")
        elif kind == "ct":
            parts.append(rng.choice([
                f"-m conntrack {neg}--ctstate NEW", f"-m conntrack {neg}--ctstate RELATED,ESTABLISHED",
                "-m conntrack ! --ctstate INVALID", f"-m state {neg}--state NEW",
                "-m conntrack --ctstate INVALID", f"-m state {neg}--state ESTABLISHED"]))
        elif kind == "addr":
            parts.append(rng.choice([f"-m addrtype {neg}--dst-type LOCAL", f"-m addrtype {neg}--src-type LOCAL",
                                     "-m addrtype --dst-type UNICAST", "-m addrtype --src-type UNICAST"]))
        elif kind == "mark":
            parts.append(rng.choice([f"-m mark {neg}--mark 0x1/0x1", f"-m mark {neg}--mark 0x2/0x2",
                                     f"-m connmark {neg}--mark 0x4/0x4", "-m mark --mark 0x0/0xffff"]))
        elif kind == "range":
            lo = rng.choice([ctx.client_ip, "10.9.0.1"])
            parts.append(f"-m iprange {neg}--src-range {lo}-{lo.rsplit('.', 1)[0]}.200")
    if rng.random() < 0.2:
        parts.append(f'-m comment --comment "gen rule {serial}: check"')
    return parts


def _target(rng: random.Random, chain_index: int, n_chains: int) -> str:
    later = list(range(chain_index + 1, n_chains))
    roll = rng.random()
    if later and roll < 0.3:
        verb = "-g" if rng.random() < 0.3 else "-j"
        return f"{verb} C{rng.choice(later)}"
    return rng.choice([
        "-j ACCEPT", "-j ACCEPT", "-j DROP", "-j DROP", f"-j REJECT --reject-with {rng.choice(REJECT_KINDS)}",
        "-j REJECT", "-j RETURN", '-j LOG --log-prefix "gen: "', "-j MARK --set-xmark 0x1/0x1",
        "-j MARK --or-mark 0x2", "-j CONNMARK --set-xmark 0x4/0x4", "-j CONNMARK --restore-mark", "",
    ])


def random_ruleset(seed: int, ctx: GenContext) -> str:
    """One small random filter table in iptables-restore form (user spelling: implicit modules etc.)."""
    rng = random.Random(seed)
    n_chains = rng.choice([0, 1, 2, 3, 4])
    policy = rng.choice(["ACCEPT", "DROP"])
    lines = ["*filter", f":INPUT {policy} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":C{i} - [0:0]" for i in range(n_chains)]
    serial = 0
    # INPUT is chain index -1 so it can reach every user chain.
    for chain_index, chain in [(-1, "INPUT")] + [(i, f"C{i}") for i in range(n_chains)]:
        for _ in range(rng.randint(1, 6)):
            serial += 1
            matches = _matches(rng, ctx, serial)
            target = _target(rng, chain_index, n_chains)
            if target.endswith("tcp-reset") and not any(m in ("-p tcp", "-p 6") for m in matches):
                target = "-j REJECT --reject-with icmp-port-unreachable"  # the kernel wants -p tcp for a reset
            spec = " ".join(p for p in [*matches, target] if p)
            lines.append(f"-A {chain} {spec}".rstrip())
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def large_ruleset(n_rules: int = 20_000, seed: int = 7) -> str:
    """A kube-proxy + Calico shaped iptables-save dump with about `n_rules` filter rules.

    INPUT reaches the usual kube-proxy and Calico chains; most of the bulk sits in per-service and
    per-workload chains (with ipset matches) that a packet to the node's 10250 never enters.
    """
    rng = random.Random(seed)
    chains: dict[str, list[str]] = {c: [] for c in (
        "INPUT", "FORWARD", "OUTPUT", "KUBE-FIREWALL", "KUBE-NODEPORTS", "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL", "KUBE-FORWARD", "cali-INPUT", "cali-wl-to-host",
        "cali-from-wl-dispatch", "cali-from-host-endpoint", "cali-FORWARD", "cali-OUTPUT")}
    chains["INPUT"] += [
        '-A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
        "-j KUBE-PROXY-FIREWALL",
        '-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service '
        'portals" -j KUBE-EXTERNAL-SERVICES',
        "-A INPUT -j KUBE-FIREWALL",
    ]
    chains["KUBE-FIREWALL"] += [
        '-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet '
        'connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP',
        '-A KUBE-FIREWALL -m comment --comment "kubernetes firewall for dropping marked packets" '
        "-m mark --mark 0x8000/0x8000 -j DROP",
    ]
    chains["cali-INPUT"] += [
        '-A cali-INPUT -p ipv4 -m comment --comment "cali:PajejrV4aFdkZojI" -m comment --comment "Allow IPIP '
        'packets from Calico hosts" -m set --match-set cali40all-hosts-net src -m addrtype --dst-type LOCAL '
        "-j ACCEPT",
        '-A cali-INPUT -p ipv4 -m comment --comment "cali:_wjq-Yrma8Ly1Svo" -m comment --comment "Drop IPIP '
        'packets from non-Calico hosts" -j DROP',
        '-A cali-INPUT -m comment --comment "cali:ss8lEMQsXi-s6qYT" -j MARK --set-xmark 0x0/0xfff00000',
        '-A cali-INPUT -i cali+ -m comment --comment "cali:5gHu0cLLX5HgaIbA" -g cali-wl-to-host',
        '-A cali-INPUT -m comment --comment "cali:Wv8oFTyVOcTcz1jT" -m mark --mark 0x10000/0x10000 -j ACCEPT',
        '-A cali-INPUT -m comment --comment "cali:ypaB8W2DkkBbw2L5" -j cali-from-host-endpoint',
        '-A cali-INPUT -m comment --comment "cali:-aIwQTwrVvRQsjhu" -m mark --mark 0x10000/0x10000 -j ACCEPT',
    ]
    chains["cali-wl-to-host"] += [
        '-A cali-wl-to-host -m comment --comment "cali:Ee9Sbo10IpVujdIY" -j cali-from-wl-dispatch',
        '-A cali-wl-to-host -m comment --comment "cali:nSZbcOoG1xPONxb8" -m comment --comment "Configured '
        'DefaultEndpointToHostAction" -j ACCEPT',
    ]
    n = sum(len(v) for v in chains.values())
    svc = 0
    while n < n_rules:
        svc += 1
        h = f"{rng.getrandbits(64):016X}"[:16]
        ip = f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        port = rng.randint(1, 65535)
        svc_chain, sep_chain, wl_chain = f"KUBE-SVC-{h}", f"KUBE-SEP-{h}", f"cali-tw-cali{h[:11].lower()}"
        chains[svc_chain] = [
            f'-A {svc_chain} ! -s 10.244.0.0/16 -d {ip}/32 -p tcp -m comment --comment "ns{svc}/svc{svc}:http '
            f'cluster IP" -m tcp --dport {port} -j KUBE-MARK-MASQ',
            f'-A {svc_chain} -m comment --comment "ns{svc}/svc{svc}:http -> 10.244.1.{svc % 250}:8080" '
            f"-m statistic --mode random --probability 0.50000000000 -j {sep_chain}",
        ]
        chains[sep_chain] = [
            f'-A {sep_chain} -s 10.244.1.{svc % 250}/32 -m comment --comment "ns{svc}/svc{svc}:http" '
            "-j KUBE-MARK-MASQ",
        ]
        chains[wl_chain] = [
            f'-A {wl_chain} -m comment --comment "cali:{h}" -m conntrack --ctstate RELATED,ESTABLISHED '
            "-j ACCEPT",
            f'-A {wl_chain} -m comment --comment "cali:{h[::-1]}" -m conntrack --ctstate INVALID -j DROP',
            f'-A {wl_chain} -m comment --comment "cali:{h[1:]}x" -j MARK --set-xmark 0x0/0x20000',
            f'-A {wl_chain} -p tcp -m comment --comment "cali:{h[2:]}yy" -m set --match-set cali40s:{h} src '
            f"-m multiport --dports {port},8080:8090 -j MARK --set-xmark 0x20000/0x20000",
            f'-A {wl_chain} -m comment --comment "cali:{h[3:]}zzz" -m mark --mark 0x0/0x20000 -j DROP',
        ]
        chains["KUBE-SERVICES"].append(
            f'-A KUBE-SERVICES -d {ip}/32 -p tcp -m comment --comment "ns{svc}/svc{svc}:http cluster IP" '
            f"-m tcp --dport {port} -j {svc_chain}")
        chains["cali-FORWARD"].append(
            f'-A cali-FORWARD -o cali{h[:11].lower()} -m comment --comment "cali:{h}" -g {wl_chain}')
        n += 10
    chains["KUBE-MARK-MASQ"] = ["-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"]
    out = ["# Generated by iptables-nft-save v1.8.9 (nf_tables) on Fri Nov 27 18:00:00 2026", "*filter",
           ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    out += [f":{c} - [0:0]" for c in chains if c not in ("INPUT", "FORWARD", "OUTPUT")]
    for rules in chains.values():
        out += rules
    out += ["COMMIT", "# Completed on Fri Nov 27 18:00:00 2026"]
    return "\n".join(out) + "\n"
