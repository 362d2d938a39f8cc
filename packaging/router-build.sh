#!/usr/bin/env bash
# The daemon as a router or board runs it, per target, and what each step
# of the router build takes off its size:
#   release   the release profile (opt-level s, LTO, panic = abort, stripped)
#   router    profile `router` (opt-level z) + feature `router` (debug and
#             trace log lines compiled out)
#   +abort    std rebuilt with panic = immediate-abort (no panic messages,
#             backtrace symbolizer or unwinding tables: a bug aborts
#             silently and the supervisor restarts the daemon) and the
#             MIPS `.pdr` section stripped (debug data nothing loads)
# plus the xz-compressed size (what it takes in a squashfs flash image).
#
#   packaging/router-build.sh [TARGET...]     # default: the four of packaging/cross.sh
# Tools as for packaging/cross.sh (run that once first: it installs them).
# The binaries land in target/router/TARGET/ringvpn.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
((${#targets[@]})) || targets=(mips-unknown-linux-musl mips-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)
export PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
zigbuild=${RINGVPN_ZIGBUILD:-$PWD/target/cross-tools/venv/bin/cargo-zigbuild}
echo "| target | release | router | router + abort | xz |"
echo "|---|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
  lower=${t//-/_}
  upper=${lower^^}
  case $t in
    mips-unknown-linux-gnu) gcc=mips-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) gcc=arm-linux-gnueabihf ;;
    aarch64-unknown-linux-gnu) gcc=aarch64-linux-gnu ;;
    *musl) gcc="" ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
  if [[ -n $gcc ]]; then
    cargo=(/usr/bin/cargo)
    export "CC_$lower=$gcc-gcc" "AR_$lower=$gcc-ar" "CARGO_TARGET_${upper}_LINKER=$gcc-gcc"
    strip=$gcc-strip
  else
    [[ -x $zigbuild ]] || { echo "no cargo-zigbuild (packaging/cross.sh installs it)" >&2; exit 1; }
    cargo=("$zigbuild")
    export PATH=$(dirname "$zigbuild"):$PATH
    strip=mips-linux-gnu-strip
  fi
  build() { # DIR PROFILE FEATURES EXTRA_RUSTFLAGS
    env CARGO_TARGET_DIR=target/$1 "CARGO_TARGET_${upper}_RUSTFLAGS=$4" \
      "${cargo[@]}" build -q --locked --profile "$2" $3 --bin ringvpn --target "$t" \
      -Z build-std=std,panic_abort >&2
  }
  build cross release "" ""
  release=$(stat -c %s "target/cross/$t/release/ringvpn")
  build cross router "--features router" ""
  router=$(stat -c %s "target/cross/$t/router/ringvpn")
  build router-abort router "--features router" "-Zunstable-options -Cpanic=immediate-abort -Cforce-unwind-tables=no"
  mkdir -p "target/router/$t"
  out=target/router/$t/ringvpn
  $strip --strip-all -R .pdr -R .comment -o "$out" "target/router-abort/$t/router/ringvpn"
  abort=$(stat -c %s "$out")
  xz=$(xz -9 -c "$out" | wc -c)
  echo "| $t | $release | $router | $abort | $xz |"
done
