#!/bin/sh
# Make a private CA, a server certificate for the orchestrator and a client certificate for workers.
#
# Usage: deploy/make-certs.sh [DIR] [EXTRA_SERVER_NAME ...]
# DIR defaults to deploy/certs (mounted at /certs by docker-compose.yml). The server certificate is
# valid for "orchestrator" (the compose service), "localhost" and every EXTRA_SERVER_NAME (the host
# name remote workers dial). Existing files are never overwritten.
set -eu

dir="${1:-$(dirname "$0")/certs}"
[ "$#" -gt 0 ] && shift
days="${AMOEBA_CERT_DAYS:-825}"
mkdir -p "$dir"
cd "$dir"
for f in ca.crt ca.key server.crt server.key client.crt client.key; do
    if [ -e "$f" ]; then
        echo "make-certs: error: $dir/$f exists; remove the old certificates first" >&2
        exit 1
    fi
done

san="DNS:orchestrator,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
    case "$name" in
        *[!0-9.]*) san="$san,DNS:$name" ;;
        *) san="$san,IP:$name" ;;
    esac
done

umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" \
    -subj "/CN=amoeba CA" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

issue() {  # issue NAME CN EXTENSIONS
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
issue server orchestrator "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue client amoeba-worker "extendedKeyUsage=clientAuth"
rm -f ca.srl
chmod 644 ca.crt server.crt client.crt
echo "make-certs: wrote $dir/{ca,server,client}.{crt,key} (server names: $san)"
if [ "$(id -u)" != 1000 ]; then
    # The images run as uid 1000, and keys are readable by their owner only.
    echo "make-certs: the containers run as uid 1000: sudo chown 1000 $dir/server.key $dir/client.key" >&2
fi
