#!/usr/bin/env bash
# Two static ringvpn daemons in two network namespaces joined by a veth
# (underlay 198.18.0.1-2, VPN 100.64.0.1-2): where their CPU goes during
# a TCP transfer (`perf record -g` on both, 4 s inside a 6 s iperf3), and
# their round trip (`ping -c N -i 0.01` over the VPN, then over the bare
# veth). Wall-clock latency on a shared VM is noisy: compare settings in
# back-to-back runs, not across days.
#
# Usage (as root): bench/profile.sh [BINARY] [CONFIG-LINE]
#   BINARY       default: an unstripped release build (symbols for perf),
#                built into target/profile-build
#   CONFIG-LINE  one more `[node]` line for both daemons, e.g. "offload = off"
#   PERF=0       skip the profile (ping only); N=400 pings by default
# Needs iproute2, iperf3, iputils-ping and perf (linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/profile.sh needs root" >&2; exit 1; }
for tool in ip iperf3 ping; do
  command -v "$tool" >/dev/null || { echo "bench/profile.sh needs $tool" >&2; exit 1; }
done
if [ "${PERF:-1}" != 0 ] && ! command -v perf >/dev/null; then
  echo "bench/profile.sh needs perf (apt-get install linux-perf), or PERF=0" >&2; exit 1
fi
BIN=${1:-}
if [ -z "$BIN" ]; then
  CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR=target/profile-build \
    cargo build --release --quiet --bin ringvpn
  BIN=$PWD/target/profile-build/release/ringvpn
fi
EXTRA=${2:-}
A="rvp$$a"; B="rvp$$b"; D=$(mktemp -d /tmp/ringvpn-profile.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
ip netns add "$A"; ip netns add "$B"
ip -n "$A" link add eth0 type veth peer name eth0 netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev eth0; ip -n "$B" addr add 198.18.0.2/24 dev eth0
for ns in "$A" "$B"; do ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up; done
ka=$("$BIN" genkey "$D/a.key"); kb=$("$BIN" genkey "$D/b.key")
conf() { # NAME MY-IP PEER-IP VIP PEER-KEY
  printf '[node]\nkey = %s.key\nlisten = %s:5140\ntap = rvp%s\naddress = %s/24\ncontrol = %s.sock\n%s\n[peer]\nname = peer\npublic-key = %s\nendpoint = %s:5140\n' \
    "$1" "$2" "$1" "$4" "$1" "$EXTRA" "$5" "$3" > "$D/$1.conf"
}
conf a 198.18.0.1 198.18.0.2 100.64.0.1 "$kb"
conf b 198.18.0.2 198.18.0.1 100.64.0.2 "$ka"
ip netns exec "$A" "$BIN" run -c "$D/a.conf" >"$D/a.log" 2>&1 & pa=$!; PIDS+=($pa)
ip netns exec "$B" "$BIN" run -c "$D/b.conf" >"$D/b.log" 2>&1 & pb=$!; PIDS+=($pb)
up=0
for _ in $(seq 100); do
  ip netns exec "$A" ping -c1 -W1 100.64.0.2 >/dev/null 2>&1 && { up=1; break; }
  sleep 0.1
done
[ $up = 1 ] || { echo "the link did not come up" >&2; tail -n 5 "$D/a.log" "$D/b.log" >&2; exit 1; }
sleep 1
echo "== round trip (${N:-400} pings, 10 ms apart)"
echo "vpn:  $(ip netns exec "$A" ping -n -q -c "${N:-400}" -i 0.01 100.64.0.2 | tail -1)"
echo "veth: $(ip netns exec "$A" ping -n -q -c "${N:-400}" -i 0.01 198.18.0.2 | tail -1)"
[ "${PERF:-1}" = 0 ] && exit 0
ip netns exec "$B" iperf3 -s -1 -B 100.64.0.2 >/dev/null 2>&1 & PIDS+=($!)
sleep 0.3
ip netns exec "$A" iperf3 -c 100.64.0.2 -t 6 >/dev/null 2>&1 & PIDS+=($!)
sleep 1
perf record -q -o "$D/perf.data" -g -p "$pa,$pb" -- sleep 4 >/dev/null 2>&1
sleep 2
perf report -q -g none -i "$D/perf.data" --no-children --sort dso >"$D/dso.txt" 2>/dev/null
perf report -q -g none -i "$D/perf.data" --no-children --sort sym >"$D/sym.txt" 2>/dev/null
perf report -q --children -g none -i "$D/perf.data" --sort sym >"$D/children.txt" 2>/dev/null
echo "== CPU by object (both daemons)"
grep -v '^$' "$D/dso.txt" | head -4 || true
echo "== top symbols (self)"
grep -v '^$' "$D/sym.txt" | head -16 || true
echo "== system calls (inclusive)"
grep -E " (do_writev|do_readv|ksys_read|ksys_write|__sys_sendmmsg|do_recvmmsg|__x64_sys_epoll_wait)$" "$D/children.txt" || true
