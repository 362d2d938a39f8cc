#!/usr/bin/env bash
# Instructions per VPN packet (overlay mode, 1,300-byte UDP payload),
# counted by callgrind over tests/zero_alloc.rs's VPN test: a packet from
# one member's host to another's and back, for each case — directly
# linked, routed end to end over the ring, and to an internet address
# through an exit gateway (routes on) — and the mean of the first two
# (the figure README has carried since before routes), without firewall
# rules and with them (every member has rules: one lets nothing in but
# answers to its own flows, the others the test's port). The figures
# include the test's own harness (copying each datagram between the
# nodes), the same in every run: compare runs, not against
# bench/callgrind.sh.
# (Ir at 3,000 round trips - Ir at 1,000) / 4,000 packets: set-up cancels.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo test --release --test zero_alloc --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep zero_alloc | tail -1)
[ -x "$bin" ] || { echo "cannot find the zero_alloc test binary" >&2; exit 1; }
ir() {
  RINGVPN_VPN_CASE=$1 RINGVPN_VPN_FIREWALL=$2 RINGVPN_VPN_PACKETS=$3 \
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
    "$bin" vpn_packets --test-threads=1 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
declare -A per
for run in direct:off routed:off gateway:off direct:on gateway:on; do
  case=${run%:*} fw=${run#*:}
  base=$(ir "$case" "$fw" 1000)
  more=$(ir "$case" "$fw" 3000)
  per[$run]=$(( (more - base) / 4000 ))
  echo "${per[$run]} instructions per VPN packet, $case, firewall $fw (1300 B payload, test harness included)"
done
echo "$(( (per[direct:off] + per[routed:off]) / 2 )) instructions per VPN packet, mean of direct and routed, no firewall"
