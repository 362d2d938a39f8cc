#!/usr/bin/env bash
# Cross builds for routers and boards, tested under qemu-user (root for the
# two-node lab part). Per target: the library's tests and the small
# simulator tests on the target, the stripped release daemon, and an
# emulated daemon linking with a native one over TAP (tests/cross.rs).
#
#   packaging/cross.sh                      # all four targets
#   packaging/cross.sh armv7-unknown-linux-gnueabihf   # some of them
#
# Targets: mips-unknown-linux-gnu (big-endian 32-bit; also run by every
# `cargo test`), mips-unknown-linux-musl (OpenWrt; zig from PyPI is its C
# toolchain and musl), armv7-unknown-linux-gnueabihf and
# aarch64-unknown-linux-gnu (Raspberry Pi). The table lands in
# target/cross/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=${*:-all}
need=()
for p in rustc-web cargo-web libstd-rust-web-dev rust-web-src qemu-user \
  gcc-mips-linux-gnu libc6-dev-mips-cross gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross python3-venv; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# zig and cargo-zigbuild for musl, in a venv of their own.
venv=target/cross-tools/venv
if [[ ! -x $venv/bin/cargo-zigbuild ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ziglang cargo-zigbuild
fi
export RINGVPN_ZIGBUILD=$PWD/$venv/bin/cargo-zigbuild
export RINGVPN_CROSS=${targets// /,}
rm -f target/cross/results.md
cargo test --locked --test cross -- --test-threads=1 --nocapture
echo
echo "| target | what | stripped daemon (bytes) | tests on the target | two-node lab | binary resident | heap touched | status of the emulated daemon |"
echo "|---|---|---|---|---|---|---|---|"
cat target/cross/results.md
