#!/usr/bin/env bash
# Memory per configured peer in real daemons, ringvpn beside boringtun
# (userspace WireGuard): each daemon started once with 1 peer and once
# with N (default 1,000), VmRSS (and ringvpn's own heap figure) read 2 s
# after start. The peers are configured, not linked: no traffic leaves
# the namespace (its only interface is loopback; endpoints are in
# 198.18.0.0/15 and unreachable). Per linked peer, and the CPU per link,
# come from `cargo bench --bench cost` (in process, exact heap bytes).
#
# Usage: bench/cost.sh [N]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
NS="rvc$$"
WORK=$(mktemp -d /tmp/ringvpn-cost.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "bench/cost.sh needs root" >&2; exit 1; }
cargo build --release --quiet
RINGVPN=$PWD/target/release/ringvpn
ip netns add "$NS"; ip -n "$NS" link set lo up
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# ringvpn: a static-mode daemon with PEERS [peer] sections.
ringvpn_rss() {
  local peers=$1 d="$WORK/rv$1"; mkdir -p "$d"
  "$RINGVPN" genkey "$d/me.key" >/dev/null
  printf '[node]\nkey = me.key\nlisten = 127.0.0.1:5140\ntap = rvc0\naddress = 100.64.0.1/24\ncontrol = me.sock\nmax-peers = %s\n' "$((peers + 16))" > "$d/me.conf"
  python3 - "$d" "$peers" "$RINGVPN" <<'PY' >> "$d/me.conf"
import subprocess, sys
d, n, bin = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    key = subprocess.run([bin, "genkey", f"{d}/p{i}.key"], capture_output=True, text=True).stdout.strip()
    print(f"[peer]\nname = p{i}\npublic-key = {key}\nendpoint = 198.19.{i // 250}.{i % 250 + 1}:5140")
PY
  ip netns exec "$NS" "$RINGVPN" run -c "$d/me.conf" >"$d/log" 2>&1 & local pid=$!; PIDS+=($pid)
  sleep 2
  local heap; heap=$("$RINGVPN" status --json -s "$d/me.sock" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node"]["heap_bytes"])')
  echo "$(rss_kib $pid) $heap"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

boringtun_rss() {
  local peers=$1 d="$WORK/bt$1"; mkdir -p "$d"; umask 077
  wg genkey > "$d/me"
  WG_SUDO=1 ip netns exec "$NS" boringtun-cli --foreground --threads 1 --disable-drop-privileges wgc0 >/dev/null 2>&1 & local pid=$!; PIDS+=($pid)
  sleep 0.5
  ip netns exec "$NS" wg set wgc0 private-key "$d/me" listen-port 51820
  python3 - "$peers" <<'PY' > "$d/peers.conf"
import base64, os, sys
print("[Interface]")
for i in range(int(sys.argv[1])):
    key = base64.b64encode(os.urandom(32)).decode()
    print(f"[Peer]\nPublicKey = {key}\nAllowedIPs = 100.64.{i // 250}.{i % 250 + 1}/32\nEndpoint = 198.19.{i // 250}.{i % 250 + 1}:51820")
PY
  ip netns exec "$NS" wg addconf wgc0 "$d/peers.conf"
  sleep 2
  rss_kib $pid
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

read -r rv1 heap1 <<<"$(ringvpn_rss 1)"
read -r rvn heapn <<<"$(ringvpn_rss "$N")"
echo "| daemon | RSS, 1 peer | RSS, $N peers | per configured peer |"
echo "|---|---:|---:|---:|"
python3 -c "print(f'| ringvpn (RSS) | {$rv1} KiB | {$rvn} KiB | {($rvn-$rv1)*1024/($N-1):.0f} B |')"
python3 -c "print(f'| ringvpn (its heap) | {$heap1/1024:.0f} KiB | {$heapn/1024:.0f} KiB | {($heapn-$heap1)/($N-1):.0f} B |')"
if command -v boringtun-cli >/dev/null && command -v wg >/dev/null; then
  bt1=$(boringtun_rss 1); btn=$(boringtun_rss "$N")
  python3 -c "print(f'| boringtun --threads 1 (RSS) | {$bt1} KiB | {$btn} KiB | {($btn-$bt1)*1024/($N-1):.0f} B |')"
fi
