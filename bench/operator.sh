#!/usr/bin/env bash
# A new operator's session, as README's "A network in five minutes" tells
# it: three hosts (network namespaces on one bridge, underlay
# 198.18.0.11-13), a CA, certificates, the README's config (listen =
# 0.0.0.0, default control socket, no `network`), DNS names, ping by name,
# a reload, a revocation seen from both sides. Prints every command with
# its output. As root, after `cargo build --release`; needs iproute2,
# iputils-ping and dig (dnsutils). Everything is torn down at exit
# (KEEP=1 keeps the session's directory with configs and logs).
set -uo pipefail
[ "$(id -u)" = 0 ] || { echo "bench/operator.sh needs root" >&2; exit 1; }
for t in ip ping dig getent; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
P="op$$-"; D=$(mktemp -d /tmp/ringvpn-op.XXXXXX); PIDS=()
export PATH="$(cd "$(dirname "$0")/.." && pwd)/target/release:$PATH"
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null; done; sleep 0.5
  for n in h1 h2 h3 sw; do ip netns del "$P$n" 2>/dev/null; rm -rf "/etc/netns/$P$n"; done
  if [ -n "${KEEP:-}" ]; then echo "kept $D"; else rm -rf "$D"; fi; }
trap cleanup EXIT
ip netns add "${P}sw"; ip -n "${P}sw" link add br0 type bridge; ip -n "${P}sw" link set br0 up
i=0; for h in h1 h2 h3; do i=$((i+1))
  ip netns add "$P$h"; ip link add "$h" netns "$P$h" type veth peer name "p$h" netns "${P}sw"
  ip -n "${P}sw" link set "p$h" master br0 up; ip -n "$P$h" addr add "198.18.0.1$i/24" dev "$h"
  ip -n "$P$h" link set "$h" up; ip -n "$P$h" link set lo up; done
run() { local h=$1; shift; echo "[$h]\$ $*"; ip netns exec "$P$h" "$@"; }
cd "$D"
echo '$ ringvpn ca init --network office ca.key ca.crt'; ringvpn ca init --network office ca.key ca.crt
i=0; for n in alice bob carol; do i=$((i+1))
  echo "\$ ringvpn genkey $n.key"; pub=$(ringvpn genkey $n.key); echo "$pub"; echo "$pub" > $n.pub
  echo "\$ ringvpn cert sign --ca-key ca.key --ca ca.crt --pubkey $pub --name $n --ip 100.64.0.1$i $n.crt"
  ringvpn cert sign --ca-key ca.key --ca ca.crt --pubkey "$pub" --name $n --ip 100.64.0.1$i $n.crt | head -3
  boot=""; [ $n != alice ] && boot="bootstrap = 198.18.0.11:5140"
  crl=""; [ $n = alice ] && crl="revocations = revoked.crl"
  printf '[node]\nkey = %s.key\nlisten = 0.0.0.0:5140\ntap = rv0\nca = ca.crt\ncert = %s.crt\n%s\n%s\nstate-dir = %s/state\n' $n $n "$boot" "$crl" "$D" > $n.conf
done
echo '$ cat bob.conf'; cat bob.conf
h=0; for n in alice bob carol; do h=$((h+1))
  ip netns exec "${P}h$h" ringvpn run -c $n.conf > $n.log 2>&1 & PIDS+=($!); sleep 0.3; done
sleep 8
run h1 ringvpn status -c alice.conf
run h1 ringvpn peers -c alice.conf
# Each host asks its own node (ip netns exec mounts this over /etc/resolv.conf).
for h in h1 h2 h3; do mkdir -p /etc/netns/$P$h; printf 'nameserver 100.64.0.1\nsearch office\n' > /etc/netns/$P$h/resolv.conf; done
run h1 getent hosts bob.office
run h1 dig +short @100.64.0.1 carol.office A
run h1 dig +short @100.64.0.1 -x 100.64.0.13
run h1 getent ahosts carol.office
run h1 getent ahosts carol
run h1 dig @100.64.0.1 carol.office A +noall +answer +comments
run h1 ping -c 2 -4 carol
run h1 ringvpn ping -c alice.conf -n 3 carol
echo '$ (add to alice.conf: log = debug and [firewall] inbound = icmp any any)'
printf 'log = debug\n[firewall]\ninbound = icmp any any\n' >> alice.conf
run h1 ringvpn reload -c alice.conf
echo "\$ ringvpn cert revoke --ca-key ca.key --list revoked.crl $(cat carol.pub)"
ringvpn cert revoke --ca-key ca.key --list revoked.crl "$(cat carol.pub)"
sleep 10
run h1 ringvpn peers -c alice.conf
run h2 ringvpn peers -c bob.conf
sleep 15
run h3 ringvpn status -c carol.conf | head -3
echo '$ ringvpn cert show revoked.crl'; ringvpn cert show revoked.crl
echo '$ ringvpn cert verify --ca ca.crt --crl revoked.crl carol.crt'; ringvpn cert verify --ca ca.crt --crl revoked.crl carol.crt; echo "(exit $?)"
echo '--- logs (excerpts) ---'
grep -h "revoked\|name .* registered\|reloaded" alice.log carol.log | cut -c1-200
