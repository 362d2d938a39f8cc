#!/usr/bin/env bash
# The ring overlay at scale in the deterministic simulator (real node cores,
# real handshakes, 100 ms virtual links; no traffic leaves the process).
#
# 1. The full scenario at 10,000 nodes: mass join with 5 random bootstraps
#    each, steady state, routing (plain greedy and with lookahead),
#    maintenance traffic, single joins, a 10% crash and steady churn.
# 2. The largest N that fits this machine: the reduced scenario (mass join,
#    steady state, routing, maintenance) at growing N, each run only if the
#    memory per node measured so far says it fits in MemAvailable with 10%
#    to spare. Prints the largest N that completed.
#
# Both run with hashes standing in for X25519/Ed25519 and on two threads
# (`--cheap-crypto --threads 2`: the same ring results, docs/SIMULATOR.md).
#
# Usage: bench/ring_sim.sh [N...]   (default sizes: 20000 50000 100000)
# Output: one block per run, then a summary. Wall times are minutes each at
# 10,000 nodes and more; run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin ringvpn-lab
sim=./target/release/ringvpn-lab
sizes=("${@:-20000 50000 100000}")
# shellcheck disable=SC2206
sizes=(${sizes[*]})

peak_kib=0
run() { # N extra-args...; sets peak_kib
  local n=$1
  shift
  local log
  log=$(mktemp)
  echo "== ringvpn-lab sim --nodes $n $*"
  local ok=0
  /usr/bin/time -f "peak RSS %M KiB, wall %e s" -o "$log" "$sim" sim --nodes "$n" "$@" || ok=1
  cat "$log"
  peak_kib=$(sed -n 's/.*peak RSS \([0-9]*\) KiB.*/\1/p' "$log")
  rm -f "$log"
  return $ok
}

fast=(--cheap-crypto --threads 2)
run 10000 "${fast[@]}"
per_node=$((peak_kib / 10000 + 1))
echo "10,000 nodes: peak RSS ${peak_kib} KiB, ~${per_node} KiB per node"
largest=10000
for n in "${sizes[@]}"; do
  avail=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
  need=$((n * per_node))
  if [ "$need" -gt $((avail * 9 / 10)) ]; then
    echo "== $n nodes: skipped, needs ~$((need / 1024)) MiB of $((avail / 1024)) MiB available"
    break
  fi
  if run "$n" --joins 0 --crash 0 --churn-time 0 "${fast[@]}"; then
    largest=$n
    per_node=$((peak_kib / n + 1))
  else
    echo "== $n nodes: failed"
    break
  fi
done
echo "largest N simulated on this machine: $largest"
