#!/usr/bin/env bash
# Memory per configured peer in real daemons, ringvpn beside boringtun
# (userspace WireGuard): each daemon started once with 1 peer and once
# with N (default 1,000), VmRSS (and ringvpn's own heap figure) read 2 s
# after start. The peers are configured, not linked: no traffic leaves
# the namespace (its only interface is loopback; endpoints are in
# 198.18.0.0/15 and unreachable). Per linked peer, and the CPU per link,
# come from `cargo bench --bench cost` (in process, exact heap bytes).
# OpenVPN has no configured peers: a TLS server's RSS with 1 and with M
# connected clients (default 50; each client its own openvpn process in a
# second namespace, over a veth 198.18.0.1-2) gives its cost per client.
#
# Usage: bench/cost.sh [N [M]]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/openvpn-certs.sh
N=${1:-1000}
M=${2:-50}
NS="rvc$$"
NS2="rvd$$"
WORK=$(mktemp -d /tmp/ringvpn-cost.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$NS" 2>/dev/null || true
  ip netns del "$NS2" 2>/dev/null || true
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

# OpenVPN TLS server with CLIENTS clients connected (server in $NS on
# 198.18.0.1, clients in $NS2; the clients configure nothing on their
# tun devices).
openvpn_rss() {
  local clients=$1 d="$WORK/ov"; mkdir -p "$d"
  openvpn_certs "$d"
  local common=(--dev-type tun --disable-dco --verb 1 --ca "$d/ca.crt")
  ip netns exec "$NS" openvpn "${common[@]}" --dev ovs --local 198.18.0.1 --port 1194 \
    --server 100.67.0.0 255.255.0.0 --topology subnet --dh none --duplicate-cn \
    --max-clients $((clients + 8)) --cert "$d/server.crt" --key "$d/server.key" \
    --status "$d/status$clients" 1 --status-version 2 >"$d/server$clients.log" 2>&1 & local pid=$!; PIDS+=($pid)
  sleep 1
  local cpids=()
  for i in $(seq "$clients"); do
    ip netns exec "$NS2" openvpn "${common[@]}" --dev "ovc$i" --client --nobind \
      --remote 198.18.0.1 1194 --remote-cert-tls server --cert "$d/client.crt" --key "$d/client.key" \
      --ifconfig-noexec --route-noexec >"$d/client$i.log" 2>&1 & cpids+=($!); PIDS+=($!)
  done
  local up=0
  for _ in $(seq 120); do
    up=$(grep -c '^CLIENT_LIST' "$d/status$clients" 2>/dev/null || true)
    [ "${up:-0}" -ge "$clients" ] && break
    sleep 0.5
  done
  [ "${up:-0}" -ge "$clients" ] || { echo "openvpn: only ${up:-0} of $clients clients connected" >&2; tail -n 3 "$d/server$clients.log" >&2; }
  sleep 2
  echo "$(rss_kib $pid) ${up:-0}"
  kill "$pid" "${cpids[@]}" 2>/dev/null; wait "$pid" "${cpids[@]}" 2>/dev/null || true
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
if command -v openvpn >/dev/null && command -v openssl >/dev/null; then
  ip netns add "$NS2"; ip -n "$NS2" link set lo up
  ip link add rvcv0 netns "$NS" type veth peer name rvcv1 netns "$NS2"
  ip -n "$NS" addr add 198.18.0.1/24 dev rvcv0; ip -n "$NS" link set rvcv0 up
  ip -n "$NS2" addr add 198.18.0.2/24 dev rvcv1; ip -n "$NS2" link set rvcv1 up
  read -r ov1 up1 <<<"$(openvpn_rss 1)"
  read -r ovm upm <<<"$(openvpn_rss "$M")"
  echo
  echo "| daemon | RSS, 1 client | RSS, $upm clients | per connected client |"
  echo "|---|---:|---:|---:|"
  python3 -c "print(f'| openvpn TLS server (RSS) | {$ov1} KiB | {$ovm} KiB | {($ovm-$ov1)*1024/max($upm-$up1,1):.0f} B |')"
fi
