#!/usr/bin/env bash
# Instructions per packet for the full core path, counted by callgrind:
# frame -> datagram at one node, datagram -> frame at the other (both ends
# of one forwarded frame), with static keys (ChaCha20-Poly1305 and
# AES-256-GCM) and in certificate mode (ChaCha20-Poly1305).
# Repeatable, unlike wall time on a shared machine.
# The figure is (Ir of N+10000 round trips - Ir of N round trips) / 10000,
# so set-up and handshake costs cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench --no-run --bench datapath --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep datapath | tail -1)
[ -x "$bin" ] || { echo "cannot find the datapath bench binary" >&2; exit 1; }
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --callgrind "$@" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
echo "| frame size | ChaCha20-Poly1305 | AES-256-GCM | certificates (ChaCha20) |"
echo "|---:|---:|---:|---:|"
for size in 64 512 1400; do
  row="| $size B"
  for mode in "" --aes --cert; do
    base=$(ir "$size" 1000 $mode)
    more=$(ir "$size" 11000 $mode)
    row="$row | $(( (more - base) / 10000 ))"
  done
  echo "$row |"
done
echo "(instructions per forwarded frame: seal + open, both nodes)"
echo
echo "| TAP offload step | instructions per segment |"
echo "|---|---:|"
for step in cut join; do
  base=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --callgrind-offload $step 100 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  more=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --callgrind-offload $step 1100 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
  echo "| $step (1,348 B of TCP payload, IPv4) | $(( (more - base) / (1000 * 45) )) |"
done
echo "(cut: headers, lengths, ids, sequence numbers and both checksums of one segment of a 64 KiB super-frame; join: checking one segment's headers and checksums and adding it to a run)"
