#!/bin/bash
# aks-tunnel-monitor node probe, protocol v1 (docs/probe-protocol.md).
#
# Runs as root on an AKS node through VMSS action run-command, which hands the run-command parameters
# over as positional arguments and keeps only the last 4,096 bytes of stdout. Hence:
#   - every argument is checked against a strict pattern before anything else runs, and is only ever
#     used quoted (no eval, no unquoted expansion, globbing off), so argument text is never executed;
#   - the whole report is one frame, printed at the very end in a single write, kept under 4,000 bytes,
#     and says "toolarge" instead of silently losing a section;
#   - every external command is bounded by `timeout` and the network checks run in parallel, so the
#     script finishes within about (targets/8 + 3) * timeout seconds even when every peer drops packets.
# Only what AKS Ubuntu and Azure Linux nodes ship is used: bash, coreutils, gzip, base64, awk, od, nc
# (netcat-openbsd), getent, iptables-save, and ufw / crictl / openssl when present. No python.

set -u
set -f
export LC_ALL=C
umask 077
if [ -z "${PATH:-}" ]; then PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; fi
export PATH

readonly FRAME_LIMIT=3999   # bytes of the whole frame, trailing newline included (must stay < 4000)
readonly MAX_TARGETS=32
readonly LANES=8            # at most this many concurrent TCP checks towards the targets
readonly TOOLARGE_RESERVE=40
# The cluster CA every AKS node holds (written by AKS provisioning). Fixed here: no path comes from outside.
readonly CLUSTER_CA=/etc/kubernetes/certs/ca.crt

emit_frame() {
  # Prints the frame in one write so that a cut never falls inside a half-written line of ours.
  local body="" line n=0
  for line in "$@"; do
    body+="${line}"$'\n'
    n=$((n + 1))
  done
  printf '==AKSPROBE v1 BEGIN==\n%s==AKSPROBE v1 END lines=%d==\n' "$body" "$n"
}

refuse() {
  emit_frame "error $1"
  exit 2
}

# ---- argument validation (nothing but shell builtins run before this passes) ----

readonly OCTET='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
readonly IPV4_RE="^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}\$"
readonly HOST_RE='^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'
readonly CHECK_RE='^(tcp/443|tcp/9000|udp/1194)$'
readonly PORT_RE='^[1-9][0-9]{0,4}$'
readonly TIMEOUT_RE='^([1-9]|10)$'

[ "$#" -eq 6 ] || refuse "expected 6 arguments, got $#"
[ "$1" = "1" ] || refuse "unsupported protocol version (this script speaks 1)"

api_host=$2
if [ "${#api_host}" -gt 253 ] || ! [[ $api_host =~ $HOST_RE ]]; then
  refuse "invalid apiHost (expected at most 253 characters from [A-Za-z0-9.-])"
fi

checks=()
if [ "$3" != "-" ]; then
  [[ $3 =~ ^[a-z0-9/,]{1,64}$ ]] || refuse "invalid tunnelChecks (expected a comma list of tcp/443, tcp/9000, udp/1194 or -)"
  case $3 in ,* | *, | *,,*) refuse "invalid tunnelChecks (expected a comma list of tcp/443, tcp/9000, udp/1194 or -)" ;; esac
  IFS=, read -r -a checks <<<"$3"
  declare -A seen_check=()
  for c in "${checks[@]}"; do
    if ! [[ $c =~ $CHECK_RE ]] || [ -n "${seen_check[$c]:-}" ]; then
      refuse "invalid tunnelChecks (expected a comma list of tcp/443, tcp/9000, udp/1194 or -)"
    fi
    seen_check[$c]=1
  done
fi

targets=()
if [ "$4" != "-" ]; then
  [[ $4 =~ ^[0-9.,]{1,1024}$ ]] || refuse "invalid targets (expected a comma list of distinct IPv4 addresses or -)"
  case $4 in ,* | *, | *,,*) refuse "invalid targets (expected a comma list of distinct IPv4 addresses or -)" ;; esac
  IFS=, read -r -a targets <<<"$4"
  declare -A seen_target=()
  for t in "${targets[@]}"; do
    if ! [[ $t =~ $IPV4_RE ]] || [ -n "${seen_target[$t]:-}" ]; then
      refuse "invalid targets (expected a comma list of distinct IPv4 addresses or -)"
    fi
    seen_target[$t]=1
  done
  [ "${#targets[@]}" -le "$MAX_TARGETS" ] || refuse "too many targets (at most $MAX_TARGETS)"
fi

port=$5
if ! [[ $port =~ $PORT_RE ]] || [ "$port" -gt 65535 ]; then
  refuse "invalid kubeletPort (expected 1-65535)"
fi

tmo=$6
[[ $tmo =~ $TIMEOUT_RE ]] || refuse "invalid timeout (expected 1-10 seconds)"

# ---- from here on only validated values are used ----

work=$(mktemp -d 2>/dev/null) || refuse "cannot create a temporary directory"
cleanup() {
  local pids=()
  mapfile -t pids < <(jobs -p)
  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null; fi
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# The filter-table rules reachable from INPUT through -j/-g, in iptables-save form. Chains only reachable
# from FORWARD/OUTPUT are left out: they cannot decide traffic to the kubelet and would waste the budget.
# shellcheck disable=SC2016  # awk program text: its $fields are awk's, not the shell's
readonly REACHABLE_FROM_INPUT_AWK='
$0 == "*filter" { in_filter = 1; next }
in_filter && $0 == "COMMIT" { in_filter = 0; next }
!in_filter { next }
{ n++; line[n] = $0 }
/^:/ { declared[substr($1, 2)] = 1; next }
/^-A / {
  target = ""
  for (i = 3; i < NF; i++) if ($i == "-j" || $i == "--jump" || $i == "-g" || $i == "--goto") target = $(i + 1)
  if (target != "" && (target in declared) && !((($2) SUBSEP target) in edge)) {
    edge[$2, target] = 1
    successors[$2] = successors[$2] " " target
  }
}
END {
  reached["INPUT"] = 1; queue[1] = "INPUT"; tail = 1
  for (head = 1; head <= tail; head++) {
    k = split(successors[queue[head]], next_chains, " ")
    for (j = 1; j <= k; j++) if (!(next_chains[j] in reached)) { reached[next_chains[j]] = 1; queue[++tail] = next_chains[j] }
  }
  print "*filter"
  for (i = 1; i <= n; i++) {
    split(line[i], f, " ")
    if (line[i] ~ /^:/ && (substr(f[1], 2) in reached)) print line[i]
    else if (line[i] ~ /^-A / && (f[2] in reached)) print line[i]
  }
  print "COMMIT"
}'

# Reads a `crictl ps -a` table and keeps only the tunnel agents. Columns are located from the header
# because CREATED ("2 hours ago") contains spaces. Prints two lines: the running agents (for the `crictl`
# line) and, per agent, the state of its newest instance (highest ATTEMPT) with that attempt number.
# shellcheck disable=SC2016  # awk program text
readonly TUNNEL_STATES_AWK='
NR == 1 { state_col = index($0, "STATE"); name_col = index($0, "NAME"); next }
state_col > 0 && name_col > 0 {
  split(substr($0, state_col), s, " "); split(substr($0, name_col), f, " ")
  name = f[1]; state = tolower(s[1]); sub(/^container_/, "", state); attempt = f[2] + 0
  gsub(/[^a-z]/, "", state); if (state == "") state = "unknown"
  if (attempt > 999999) attempt = 999999
  if (state == "running") running[name] = 1
  if (!(name in best) || attempt >= best[name]) { best[name] = attempt; latest[name] = state }
}
END {
  run = ""; states = ""
  n = split("konnectivity-agent tunnel-front aks-link", wanted, " ")
  for (i = 1; i <= n; i++) {
    w = wanted[i]
    if (w in running) run = run (run == "" ? "" : ",") w
    if (w in latest) states = states (states == "" ? "" : ",") w ":" latest[w] ":" best[w]
  }
  print (run == "" ? "none" : run)
  print (states == "" ? "none" : states)
}'

# Pulls issuer, ALPN and verify code out of `openssl s_client` output (1.1.1 and 3.x wording).
# shellcheck disable=SC2016  # awk program text
readonly TLS_FIELDS_AWK='
/^issuer=/ && issuer == "" { issuer = substr($0, 8) }
/^ALPN protocol: / && alpn == "" { alpn = $3 }
/^No ALPN negotiated/ && alpn == "" { alpn = "-" }
/Verify return code: / && code == "" { for (i = 1; i <= NF; i++) if ($i == "code:") code = $(i + 1) }
END { if (code == "") exit 1; print code; print (alpn == "" ? "-" : alpn); print issuer }'

# nc (netcat-openbsd) says what happened only in words; this maps them to the protocol's outcomes.
classify() { # rc output proto
  local rc=$1 out=$2 proto=$3
  if [ "$rc" -eq 0 ]; then echo ok; return; fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo timeout; return; fi
  case $out in
    *"timed out"*) echo timeout ;;
    *"refused"*) echo refused ;;
    *"No route to host"* | *"Network is unreachable"* | *"Host is unreachable"*) echo noroute ;;
    "") if [ "$proto" = udp ]; then echo refused; else echo error; fi ;;
    *) echo error ;;
  esac
}

check_port() { # proto ip port
  local out rc
  if [ "$1" = udp ]; then
    out=$(timeout -k 1 $((tmo + 2)) nc -n -u -z -v -w "$tmo" "$2" "$3" 2>&1)
  else
    out=$(timeout -k 1 $((tmo + 2)) nc -n -z -v -w "$tmo" "$2" "$3" 2>&1)
  fi
  rc=$?
  classify "$rc" "$out" "$1"
}

# An OpenVPN client's first packet, P_CONTROL_HARD_RESET_CLIENT_V2 without tls-auth: opcode 7 << 3 | key id 0,
# an 8-byte random session id, an empty ack array, message packet id 0.
openvpn_hard_reset() {
  printf '\x38'
  head -c 8 /dev/urandom
  printf '\x00\x00\x00\x00\x00'
}

# UDP has no handshake, so silence proves nothing (a drop and a server that ignores junk look alike). An
# ICMP error from `nc -u -z` is conclusive (refused/noroute); otherwise the aks-link (OpenVPN) server must
# answer a client hard reset with P_CONTROL_HARD_RESET_SERVER_V2 (opcode 8) to count as `ok`.
check_udp_openvpn() { # ip port
  local first quick answer="$work/udp.$2.answer"
  quick=$(check_port udp "$1" "$2")
  if [ "$quick" = refused ] || [ "$quick" = noroute ]; then echo "$quick"; return; fi
  # nc sends each read of its stdin as one datagram: the packet goes into a file first and then down the
  # pipe in a single write, and stdin stays open so that nc waits for the answer.
  openvpn_hard_reset >"$work/udp.$2.hello" 2>/dev/null
  { cat "$work/udp.$2.hello"; sleep "$tmo"; } 2>/dev/null |
    timeout -k 1 "$tmo" nc -n -u -w "$tmo" "$1" "$2" >"$answer" 2>/dev/null
  first=$(od -An -tu1 -N1 "$answer" 2>/dev/null | tr -cd '0-9')
  if [ -z "$first" ]; then
    echo silent
  elif [ $((first >> 3)) -eq 8 ]; then
    echo ok
  else
    echo error  # something answered, but not an OpenVPN server
  fi
}

# TLS to the API server on 443 offering ALPN konnectivity, verified against the cluster CA only (an
# explicit -CAfile keeps openssl from loading the system trust store). Prints `absent`, `noca`, `error`,
# or `<verify code> <alpn or -> <issuer>`.
check_tls() { # ip
  local out alpn fields=()
  if ! command -v openssl >/dev/null 2>&1; then echo absent; return; fi
  if ! [ -r "$CLUSTER_CA" ]; then echo noca; return; fi
  out=$(timeout -k 1 "$tmo" openssl s_client -connect "$1:443" -servername "$api_host" -alpn konnectivity \
    -CAfile "$CLUSTER_CA" </dev/null 2>/dev/null)
  mapfile -t fields < <(printf '%s\n' "$out" | awk "$TLS_FIELDS_AWK")
  if [ "${#fields[@]}" -lt 2 ] || ! [[ ${fields[0]} =~ ^[0-9]{1,3}$ ]]; then echo error; return; fi
  alpn=$(printf '%s' "${fields[1]}" | tr -cd 'A-Za-z0-9._/-' | cut -c1-32)
  printf '%s %s %s\n' "${fields[0]}" "${alpn:--}" \
    "$(printf '%s' "${fields[2]:-}" | tr -cd 'A-Za-z0-9 .,=_:@/()+#-' | cut -c1-100)"
}

# ---- network checks, in parallel ----

n_targets=${#targets[@]}
for ((lane = 0; lane < LANES && lane < n_targets; lane++)); do
  (
    for ((i = lane; i < n_targets; i += LANES)); do
      check_port tcp "${targets[i]}" "$port" >"$work/reach.$i"
    done
  ) &
done

(
  resolved=$(timeout -k 1 "$tmo" getent ahostsv4 "$api_host" 2>/dev/null | awk 'NR == 1 { print $1 }')
  if [[ $resolved =~ $IPV4_RE ]]; then
    printf '%s\n' "$resolved" >"$work/api"
    for ((i = 0; i < ${#checks[@]}; i++)); do
      if [ "${checks[i]}" = udp/1194 ]; then
        check_udp_openvpn "$resolved" 1194 >"$work/egress.$i" &
      else
        check_port "${checks[i]%/*}" "$resolved" "${checks[i]#*/}" >"$work/egress.$i" &
      fi
    done
    check_tls "$resolved" >"$work/tls" &
    wait
  fi
) &

# ---- local state, in parallel with the network checks ----

local_tmo=$((2 * tmo))

(
  if ! command -v crictl >/dev/null 2>&1; then
    printf 'absent\nabsent\n'
  elif timeout -k 1 "$local_tmo" crictl ps -a >"$work/crictl.txt" 2>/dev/null; then
    awk "$TUNNEL_STATES_AWK" "$work/crictl.txt"
  else
    printf 'error\nerror\n'
  fi
) >"$work/crictl" &

(
  if ! command -v ufw >/dev/null 2>&1; then
    echo absent
  elif timeout -k 1 "$local_tmo" ufw status verbose >"$work/ufw.txt" 2>/dev/null; then
    echo ok
  else
    echo error
  fi
) >"$work/ufw.state" &

(
  if ! command -v iptables-save >/dev/null 2>&1; then
    echo absent
  elif timeout -k 1 "$local_tmo" iptables-save -t filter >"$work/iptables.raw" 2>/dev/null; then
    awk "$REACHABLE_FROM_INPUT_AWK" "$work/iptables.raw" >"$work/iptables.txt" && echo ok || echo error
  else
    echo error
  fi
) >"$work/iptables.state" &

wait

# ---- assemble the frame within the byte budget ----

read_word() { # file default
  local value=""
  if [ -s "$1" ]; then IFS= read -r value <"$1"; fi
  printf '%s' "${value:-$2}"
}

host_name=$(uname -n 2>/dev/null | tr -cd 'A-Za-z0-9._-' | cut -c1-64)
lines=("host ${host_name:-unknown}")
crictl_words=()
if [ -s "$work/crictl" ]; then mapfile -t crictl_words <"$work/crictl"; fi
lines+=("crictl ${crictl_words[0]:-error}")
lines+=("ctr ${crictl_words[1]:-error}")
api_ip=$(read_word "$work/api" "")
lines+=("api $api_host ${api_ip:-unresolved}")
if [ -z "$api_ip" ]; then
  lines+=("tls unresolved")
else
  lines+=("tls $(read_word "$work/tls" error)")
fi
for ((i = 0; i < ${#checks[@]}; i++)); do
  if [ -z "$api_ip" ]; then
    lines+=("egress ${checks[i]} unresolved")
  else
    lines+=("egress ${checks[i]} $(read_word "$work/egress.$i" error)")
  fi
done
for ((i = 0; i < n_targets; i++)); do
  lines+=("reach ${targets[i]} $(read_word "$work/reach.$i" error)")
done

# Bytes used by everything but the ufw and iptables lines, END line included.
used=$((${#lines[@]} + 22))  # BEGIN line + newline, and one newline per line
for line in "${lines[@]}"; do used=$((used + ${#line})); done
end_line="==AKSPROBE v1 END lines=$((${#lines[@]} + 2))=="
used=$((used + ${#end_line} + 1))

section_line() { # name state-file text-file room
  local state text_bytes encoded
  state=$(read_word "$2" error)
  if [ "$state" != ok ]; then
    printf '%s %s' "$1" "$state"
    return
  fi
  text_bytes=$(wc -c <"$3")
  encoded=$(gzip -9 -n -c "$3" | base64 -w0)
  if [ $(( ${#1} + 4 + ${#encoded} + 1 )) -le "$4" ]; then
    printf '%s gz %s' "$1" "$encoded"
  else
    printf '%s toolarge %d' "$1" "$text_bytes"
  fi
}

ufw_line=$(section_line ufw "$work/ufw.state" "$work/ufw.txt" $((FRAME_LIMIT - used - TOOLARGE_RESERVE)))
used=$((used + ${#ufw_line} + 1))
iptables_line=$(section_line iptables "$work/iptables.state" "$work/iptables.txt" $((FRAME_LIMIT - used)))
lines+=("$ufw_line" "$iptables_line")

emit_frame "${lines[@]}"
