#!/usr/bin/env bash
# End-to-end comparison on two lab hosts, all in ONE run (same machine state):
# raw veth baseline, ringvpn (as shipped; and ringvpn-plain: offloads off,
# ChaCha20-Poly1305, what a router without AES or an old kernel gets;
# with RINGVPN_BEFORE=BINARY also an older build, "ringvpn-before"),
# boringtun (userspace WireGuard, --threads 1), VpnCloud, OpenVPN (the
# classical VPN: a static-key point-to-point pair, AES-256-CBC with
# HMAC-SHA256, and a TLS server/client pair whose data channel negotiates
# AES-256-GCM; userspace, no DCO) and tinc 1.0 (RSA, AES-256-CBC). For each: iperf3 TCP throughput (both directions), UDP
# 64-byte packets per second, ping RTT, daemon CPU seconds per GB moved,
# daemon RSS (idle and peak) and stripped binary size. Prints a Markdown
# table with ratios. Medians over RUNS repetitions (default 3).
#
# Needs root, iproute2, iperf3, python3; boringtun-cli and wg
# (wireguard-tools), vpncloud, openvpn (and openssl) and tincd are
# measured when installed:
#   cargo install boringtun-cli vpncloud
#   apt-get install wireguard-tools openvpn openssl tinc
# Traffic stays inside two network namespaces joined by a veth pair
# (underlay 198.18.0.1-2, VPN addresses in 100.64.0.0/10).
#
# Usage: bench/e2e.sh [RUNS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/openvpn-certs.sh
RUNS=${1:-3}
SECS=${2:-10}
UDP_SECS=5
P="rve$$-"
A="${P}a"
B="${P}b"
WORK=$(mktemp -d /tmp/ringvpn-e2e.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || { echo "bench/e2e.sh needs root" >&2; exit 1; }
for t in ip iperf3 python3 ping; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
cargo build --release --quiet
RINGVPN=$PWD/target/release/ringvpn
HAVE_BT=0; command -v boringtun-cli >/dev/null && command -v wg >/dev/null && HAVE_BT=1
HAVE_VC=0; command -v vpncloud >/dev/null && HAVE_VC=1
HAVE_OV=0; command -v openvpn >/dev/null && command -v openssl >/dev/null && HAVE_OV=1
HAVE_TC=0; command -v tincd >/dev/null && HAVE_TC=1

ip netns add "$A"; ip netns add "$B"
ip -n "$A" link set lo up; ip -n "$B" link set lo up
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev eth0; ip -n "$B" addr add 198.18.0.2/24 dev eth0
ip -n "$A" link set eth0 up; ip -n "$B" link set eth0 up
# Foreground helpers only: a background `inA cmd &` would make $! the
# subshell, not the process, and it could not be stopped by PID.
inA() { ip netns exec "$A" "$@"; }
inB() { ip netns exec "$B" "$@"; }

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
cpu_ticks() { local t=0; for pid in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat"))); done; echo $t; }
rss_kib() { awk '/^'"$2"':/{print $2}' "/proc/$1/status"; }

# measure NAME DST_IP DAEMON_PIDS... -> appends "NAME metric value" lines to $WORK/results
measure() {
  local name=$1 dst=$2; shift 2
  local pids=("$@") rss_idle=0 ticks0 ticks1 out bytes=0 tcp_up tcp_down pps ping retr
  for pid in "${pids[@]}"; do rss_idle=$((rss_idle + $(rss_kib "$pid" VmRSS))); done
  # rtt min/avg/max/mdev = a/b/c/d ms
  ping=$(inA ping -n -q -c 40 -i 0.05 "$dst" | awk -F'[/ ]' '/^rtt/{print $7" "$8" "$10}')
  ticks0=$(cpu_ticks "${pids[@]}")
  ip netns exec "$B" iperf3 -s -1 -B "$dst" >/dev/null 2>&1 & sleep 0.3
  out=$(inA iperf3 -c "$dst" -t "$SECS" -J); wait $! || true
  tcp_up=$(echo "$out" | json 'd["end"]["sum_received"]["bits_per_second"]')
  bytes=$(echo "$out" | json 'd["end"]["sum_received"]["bytes"]')
  retr=$(echo "$out" | json 'd["end"]["sum_sent"].get("retransmits", 0)')
  ip netns exec "$B" iperf3 -s -1 -B "$dst" >/dev/null 2>&1 & sleep 0.3
  out=$(inA iperf3 -c "$dst" -t "$SECS" -J -R); wait $! || true
  tcp_down=$(echo "$out" | json 'd["end"]["sum_received"]["bits_per_second"]')
  retr=$((retr + $(echo "$out" | json 'd["end"]["sum_sent"].get("retransmits", 0)')))
  bytes=$((bytes + $(echo "$out" | json 'd["end"]["sum_received"]["bytes"]')))
  ticks1=$(cpu_ticks "${pids[@]}")
  ip netns exec "$B" iperf3 -s -1 -B "$dst" >/dev/null 2>&1 & sleep 0.3
  out=$(inA iperf3 -c "$dst" -u -b 0 -l 64 -t "$UDP_SECS" -J); wait $! || true
  pps=$(echo "$out" | json '(d["end"]["sum"]["packets"]-d["end"]["sum"]["lost_packets"])/d["end"]["sum"]["seconds"]')
  local rss_peak=0
  for pid in "${pids[@]}"; do rss_peak=$((rss_peak + $(rss_kib "$pid" VmHWM))); done
  local hz; hz=$(getconf CLK_TCK)
  {
    echo "$name tcp_up_gbps $(python3 -c "print($tcp_up/1e9)")"
    echo "$name tcp_down_gbps $(python3 -c "print($tcp_down/1e9)")"
    echo "$name udp64_kpps $(python3 -c "print($pps/1e3)")"
    echo "$name tcp_retransmits $retr"
    read -r rmin ravg rmdev <<<"$ping"
    echo "$name rtt_min_ms $rmin"
    echo "$name rtt_avg_ms $ravg"
    echo "$name rtt_mdev_ms $rmdev"
    if [ ${#pids[@]} -gt 0 ]; then
      echo "$name cpu_s_per_gb $(python3 -c "print((($ticks1-$ticks0)/$hz)/($bytes/1e9))")"
      echo "$name rss_idle_mib $(python3 -c "print($rss_idle/1024/${#pids[@]})")"
      echo "$name rss_peak_mib $(python3 -c "print($rss_peak/1024/${#pids[@]})")"
    fi
  } >> "$WORK/results"
}

stop_all() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
  PIDS=()
}

wait_ping() { for _ in $(seq 100); do inA ping -c1 -W1 "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no ping to $1" >&2; return 1; }

# run_ringvpn NAME BINARY [CONFIG LINE]: two static-mode daemons; the
# line (e.g. `offload = off`) goes into both [node] sections.
run_ringvpn() {
  local name=$1 bin=$2 extra=${3:-}
  local d="$WORK/rv"; mkdir -p "$d"; rm -f "$d"/*.key
  local ka kb; ka=$("$bin" genkey "$d/a.key"); kb=$("$bin" genkey "$d/b.key")
  printf '[node]\nkey = a.key\nlisten = 198.18.0.1:5140\ntap = rva\naddress = 100.64.0.1/24\ncontrol = a.sock\n%s\n[peer]\nname = b\npublic-key = %s\nendpoint = 198.18.0.2:5140\n' "$extra" "$kb" > "$d/a.conf"
  printf '[node]\nkey = b.key\nlisten = 198.18.0.2:5140\ntap = rvb\naddress = 100.64.0.2/24\ncontrol = b.sock\n%s\n[peer]\nname = a\npublic-key = %s\nendpoint = 198.18.0.1:5140\n' "$extra" "$ka" > "$d/b.conf"
  ip netns exec "$A" "$bin" run -c "$d/a.conf" >"$WORK/rv-a.log" 2>&1 & PIDS+=($!)
  ip netns exec "$B" "$bin" run -c "$d/b.conf" >"$WORK/rv-b.log" 2>&1 & PIDS+=($!)
  wait_ping 100.64.0.2; sleep 2
  measure "$name" 100.64.0.2 "${PIDS[@]}"
  if [ -n "${E2E_STATUS:-}" ]; then "$bin" status -s "$d/a.sock" | grep -E 'offload|handshake' >&2 || true; fi
  stop_all
}

# The same two hosts as VPN members: overlay mode, one bootstrap, addresses
# claimed in the DHT, IP packets over their link (the data path of docs/VPN.md).
run_ringvpn_vpn() {
  local d="$WORK/rvv"; mkdir -p "$d"; rm -f "$d"/*.key
  "$RINGVPN" genkey "$d/a.key" >/dev/null; "$RINGVPN" genkey "$d/b.key" >/dev/null
  printf '[node]\nkey = a.key\nlisten = 198.18.0.1:5140\ntap = rvva\naddress = 100.64.1.1/10\ncontrol = a.sock\nnetwork = e2e\noverlay = on\n' > "$d/a.conf"
  printf '[node]\nkey = b.key\nlisten = 198.18.0.2:5140\ntap = rvvb\naddress = 100.64.1.2/10\ncontrol = b.sock\nnetwork = e2e\nbootstrap = 198.18.0.1:5140\n' > "$d/b.conf"
  ip netns exec "$A" "$RINGVPN" run -c "$d/a.conf" >"$WORK/rvv-a.log" 2>&1 & PIDS+=($!)
  ip netns exec "$B" "$RINGVPN" run -c "$d/b.conf" >"$WORK/rvv-b.log" 2>&1 & PIDS+=($!)
  wait_ping 100.64.1.2; sleep 2
  measure ringvpn-vpn 100.64.1.2 "${PIDS[@]}"
  stop_all
}

run_boringtun() {
  local d="$WORK/bt"; mkdir -p "$d"
  umask 077
  wg genkey > "$d/a"; wg genkey > "$d/b"
  local pa pb; pa=$(wg pubkey < "$d/a"); pb=$(wg pubkey < "$d/b")
  WG_SUDO=1 ip netns exec "$A" boringtun-cli --foreground --threads 1 --disable-drop-privileges -l "$d/a.log" wgra >/dev/null 2>&1 & PIDS+=($!)
  WG_SUDO=1 ip netns exec "$B" boringtun-cli --foreground --threads 1 --disable-drop-privileges -l "$d/b.log" wgrb >/dev/null 2>&1 & PIDS+=($!)
  sleep 0.5
  inA wg set wgra private-key "$d/a" listen-port 51820 peer "$pb" allowed-ips 100.65.0.2/32 endpoint 198.18.0.2:51820
  inB wg set wgrb private-key "$d/b" listen-port 51820 peer "$pa" allowed-ips 100.65.0.1/32 endpoint 198.18.0.1:51820
  inA ip addr add 100.65.0.1/24 dev wgra; inA ip link set wgra up
  inB ip addr add 100.65.0.2/24 dev wgrb; inB ip link set wgrb up
  wait_ping 100.65.0.2; sleep 2
  measure boringtun 100.65.0.2 "${PIDS[@]}"
  stop_all
}

run_vpncloud() {
  # VpnCloud 2.3 panics without a default route: it connect()s a UDP socket
  # to a public address to learn its own IP (connect sends nothing). A
  # default route into a veth whose other end stays down satisfies it;
  # anything ever sent that way is dropped inside the namespace.
  for ns in "$A" "$B"; do
    if ! ip -n "$ns" link show bh0 >/dev/null 2>&1; then
      ip -n "$ns" link add bh0 type veth peer name bh1
      ip -n "$ns" addr add 198.18.255.1/32 dev bh0
      ip -n "$ns" link set bh0 up
      ip -n "$ns" route add default dev bh0
    fi
  done
  # Its own interface set-up writes a wrong address here (0.1.0.0/8), so
  # the address is set with ip and VpnCloud is told the claim instead.
  ip netns exec "$A" vpncloud -l 198.18.0.1:3210 -c 198.18.0.2:3210 -p e2e-bench --claim 100.66.0.1/32 -d vcra -t tun --no-port-forwarding -q >"$WORK/vc-a.log" 2>&1 & PIDS+=($!)
  ip netns exec "$B" vpncloud -l 198.18.0.2:3210 -c 198.18.0.1:3210 -p e2e-bench --claim 100.66.0.2/32 -d vcrb -t tun --no-port-forwarding -q >"$WORK/vc-b.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 50); do ip -n "$A" link show vcra >/dev/null 2>&1 && ip -n "$B" link show vcrb >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$A" addr add 100.66.0.1/24 dev vcra; ip -n "$A" link set vcra up
  ip -n "$B" addr add 100.66.0.2/24 dev vcrb; ip -n "$B" link set vcrb up
  wait_ping 100.66.0.2; sleep 2
  measure vpncloud 100.66.0.2 "${PIDS[@]}"
  stop_all
}

# OpenVPN over 198.18.0.1-2:1194, tun addresses 100.67.0.x; userspace
# (no DCO module here). MODE static: point to point with a shared key
# (--secret; AES-256-CBC + HMAC-SHA256, what static-key mode offers).
# MODE tls: a server (A) and a client (B) with certificates from one CA,
# the data channel negotiated (AES-256-GCM), addresses from the server.
run_openvpn() {
  local mode=$1 d="$WORK/ov"; mkdir -p "$d"
  local common=(--dev-type tun --disable-dco --port 1194 --verb 1)
  local a=(--dev ova --local 198.18.0.1) b=(--dev ovb)
  if [ "$mode" = static ]; then
    [ -f "$d/static.key" ] || openvpn --genkey secret "$d/static.key" >/dev/null 2>&1
    common+=(--secret "$d/static.key" --cipher AES-256-CBC --auth SHA256 --ifconfig-noexec --ping 10)
    a+=(--remote 198.18.0.2 --ifconfig 100.67.0.1 100.67.0.2)
    b+=(--local 198.18.0.2 --remote 198.18.0.1 --ifconfig 100.67.0.2 100.67.0.1)
  else
    openvpn_certs "$d"
    common+=(--ca "$d/ca.crt")
    a+=(--server 100.67.0.0 255.255.255.0 --topology subnet --dh none --cert "$d/server.crt" --key "$d/server.key")
    b+=(--client --remote 198.18.0.1 --remote-cert-tls server --cert "$d/client.crt" --key "$d/client.key")
  fi
  ip netns exec "$A" openvpn "${common[@]}" "${a[@]}" >"$WORK/ov-a.log" 2>&1 & PIDS+=($!)
  ip netns exec "$B" openvpn "${common[@]}" "${b[@]}" >"$WORK/ov-b.log" 2>&1 & PIDS+=($!)
  if [ "$mode" = static ]; then
    for _ in $(seq 50); do ip -n "$A" link show ova >/dev/null 2>&1 && ip -n "$B" link show ovb >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$A" addr add 100.67.0.1/24 dev ova; ip -n "$A" link set ova up
    ip -n "$B" addr add 100.67.0.2/24 dev ovb; ip -n "$B" link set ovb up
  fi
  wait_ping 100.67.0.2 || { tail -n 5 "$WORK/ov-a.log" "$WORK/ov-b.log" >&2; return 1; }
  sleep 2
  measure "openvpn-$mode" 100.67.0.2 "${PIDS[@]}"
  stop_all
}

# tinc 1.0 in router mode, RSA keys, its default AES-256-CBC + SHA-256;
# tun addresses 100.68.0.x.
run_tinc() {
  local d="$WORK/tc"
  for n in a b; do
    mkdir -p "$d/$n/hosts"
    local ip=1 peer=b; [ $n = b ] && { ip=2; peer=a; }
    printf 'Name = %s\nInterface = tc%s\nDeviceType = tun\nAddressFamily = ipv4\nBindToAddress = 198.18.0.%s\nConnectTo = %s\n' "$n" "$n" "$ip" "$peer" > "$d/$n/tinc.conf"
    printf 'Address = 198.18.0.%s\nPort = 655\nSubnet = 100.68.0.%s/32\n' "$ip" "$ip" > "$d/$n/hosts/$n"
    printf '#!/bin/sh\nip addr add 100.68.0.%s/24 dev $INTERFACE\nip link set $INTERFACE up\n' "$ip" > "$d/$n/tinc-up"
    chmod +x "$d/$n/tinc-up"
    tincd -c "$d/$n" -K2048 </dev/null >/dev/null 2>&1
  done
  cp "$d/a/hosts/a" "$d/b/hosts/a"; cp "$d/b/hosts/b" "$d/a/hosts/b"
  ip netns exec "$A" tincd -c "$d/a" -D --pidfile="$d/a.pid" >"$WORK/tc-a.log" 2>&1 & PIDS+=($!)
  ip netns exec "$B" tincd -c "$d/b" -D --pidfile="$d/b.pid" >"$WORK/tc-b.log" 2>&1 & PIDS+=($!)
  wait_ping 100.68.0.2 || { tail -n 5 "$WORK/tc-a.log" "$WORK/tc-b.log" >&2; return 1; }
  sleep 2
  measure tinc 100.68.0.2 "${PIDS[@]}"
  stop_all
}

# E2E_ONLY="ringvpn tinc …" limits the run to those names.
want() { [ -z "${E2E_ONLY:-}" ] || [[ " $E2E_ONLY " == *" $1 "* ]]; }
for run in $(seq "$RUNS"); do
  step() { echo "run $run of $RUNS: $1" >&2; }
  want veth && { step "veth baseline"; measure veth 198.18.0.2; }
  want ringvpn && { step ringvpn; run_ringvpn ringvpn "$RINGVPN"; }
  want ringvpn-plain && { step "ringvpn, offload = off, cipher = chacha20-poly1305"
    run_ringvpn ringvpn-plain "$RINGVPN" $'offload = off\ncipher = chacha20-poly1305'; }
  [ -n "${RINGVPN_BEFORE:-}" ] && want ringvpn-before && {
    step "ringvpn before ($RINGVPN_BEFORE)"; run_ringvpn ringvpn-before "$RINGVPN_BEFORE"; }
  want ringvpn-vpn && { step "ringvpn (VPN mode)"; run_ringvpn_vpn; }
  [ $HAVE_BT = 1 ] && want boringtun && { step boringtun; run_boringtun; }
  [ $HAVE_VC = 1 ] && want vpncloud && { step vpncloud; run_vpncloud; }
  [ $HAVE_OV = 1 ] && want openvpn-static && { step "openvpn (static key)"; run_openvpn static; }
  [ $HAVE_OV = 1 ] && want openvpn-tls && { step "openvpn (TLS)"; run_openvpn tls; }
  [ $HAVE_TC = 1 ] && want tinc && { step "tinc 1.0"; run_tinc; }
done

# The stripped binary plus the shared libraries it loads (ringvpn links
# statically; the others load glibc and, for OpenVPN and tinc, OpenSSL):
# what a router's flash must hold.
size_mib() {
  local t libs; t=$(mktemp); cp "$1" "$t"; strip "$t" 2>/dev/null || true
  libs=$(ldd "$1" 2>/dev/null | awk '$3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
  python3 -c "import os,sys;print((os.path.getsize('$t')+sum(os.path.getsize(os.path.realpath(p)) for p in sys.argv[1:]))/1048576)" $libs
  rm -f "$t"
}
{
  echo "ringvpn binary_mib $(size_mib "$RINGVPN")"
  [ $HAVE_BT = 1 ] && echo "boringtun binary_mib $(size_mib "$(command -v boringtun-cli)")"
  [ $HAVE_VC = 1 ] && echo "vpncloud binary_mib $(size_mib "$(command -v vpncloud)")"
  if [ $HAVE_OV = 1 ]; then
    ov=$(size_mib "$(command -v openvpn)")
    echo "openvpn-static binary_mib $ov"; echo "openvpn-tls binary_mib $ov"
  fi
  [ $HAVE_TC = 1 ] && echo "tinc binary_mib $(size_mib "$(command -v tincd)")"
} >> "$WORK/results"

python3 - "$WORK/results" "$RUNS" "$SECS" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, metric, value = line.split()
    rows[(name, metric)].append(float(value))
med = {k: statistics.median(v) for k, v in rows.items()}
names = [n for n in ["veth", "ringvpn", "ringvpn-plain", "ringvpn-before", "ringvpn-vpn", "boringtun", "vpncloud", "openvpn-static", "openvpn-tls", "tinc"] if any(k[0] == n for k in med)]
metrics = [
    ("tcp_up_gbps", "TCP A→B (Gbit/s)", True), ("tcp_down_gbps", "TCP B→A (Gbit/s)", True),
    ("udp64_kpps", "UDP 64 B (kpps received)", True), ("rtt_min_ms", "ping RTT min (ms)", False),
    ("rtt_avg_ms", "ping RTT avg (ms)", False), ("rtt_mdev_ms", "ping RTT mdev (ms)", False),
    ("tcp_retransmits", "TCP retransmits (both directions)", False),
    ("cpu_s_per_gb", "daemon CPU-s per GB", False),
    ("rss_idle_mib", "RSS idle per daemon (MiB)", False), ("rss_peak_mib", "RSS peak per daemon (MiB)", False),
    ("binary_mib", "stripped binary + shared libraries (MiB)", False),
]
# The other VPNs (ringvpn's own variants are not peers).
peers = [n for n in names if n != "veth" and not n.startswith("ringvpn")]
hdr = ["metric"] + names + ["ringvpn/veth", "ringvpn / best peer"]
print(f"\nmedians of {sys.argv[2]} runs, TCP {sys.argv[3]} s per direction\n")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
def fmt(v): return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")
for key, label, higher in metrics:
    vals = [med.get((n, key)) for n in names]
    r = med.get(("ringvpn", key))
    o = med.get(("veth", key))
    vs_veth = f"{r/o:.2f}×" if r is not None and o else "-"
    theirs = [(med[(p, key)], p) for p in peers if med.get((p, key)) is not None]
    best = "-"
    if r is not None and theirs:
        v, who = (max if higher else min)(theirs)
        best = f"{r/v:.2f}× ({who})" if v else f"- ({who}: 0)"
    print("| " + " | ".join([label] + [fmt(v) for v in vals] + [vs_veth, best]) + " |")
PY
