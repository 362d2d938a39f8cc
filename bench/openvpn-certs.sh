# Sourced by bench/e2e.sh and bench/cost.sh: a throwaway CA and a server
# and a client certificate for OpenVPN's TLS mode (P-256; the key usages
# OpenVPN 2.6 checks), made once per directory.
# openvpn_certs DIR: DIR/{ca,server,client}.{crt,key}
openvpn_certs() {
  local d=$1
  [ -f "$d/ca.crt" ] && return 0
  ( cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=bench-ca -keyout ca.key -out ca.crt 2>/dev/null
    for n in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$n" \
        -keyout $n.key -out $n.csr 2>/dev/null
      printf 'keyUsage=digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' \
        "$([ $n = server ] && echo serverAuth || echo clientAuth)" > $n.ext
      openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile $n.ext -out $n.crt 2>/dev/null
    done )
}
