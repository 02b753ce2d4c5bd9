#!/usr/bin/env bash
# A certificate authority of the demo's own, and the broker's certificate signed by it.
#
#   secure/make-certs.sh DIR [NAME...]
#
# DIR receives ca.pem (every client checks the broker against it), ca.key (signs; never leaves
# DIR), server.pem and server.key (the broker's). The certificate names localhost, 127.0.0.1, ::1,
# rmq (the compose service), this machine's name and each NAME: a client refuses a broker whose
# certificate lacks the name it connected to. Files that exist are kept: run it as often as you
# like; delete DIR's files to make new ones.
set -euo pipefail

dir="${1:?usage: $0 DIR [NAME...]}"
shift
# Two years and a bit: under the 825 days browsers and Apple's systems still accept.
days=800
mkdir -p "$dir"
cd "$dir"

# ECDSA P-256: as strong as RSA 3072 and much faster to sign and check, and every client here
# (Python's ssl, Erlang's ssl in RabbitMQ) speaks it.
new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }

if [ ! -s ca.pem ] || [ ! -s ca.key ]; then
    (umask 077 && new_key ca.key)
    openssl req -x509 -new -key ca.key -out ca.pem -days "$days" -sha256 \
        -subj "/CN=rmq-demo local CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    rm -f server.pem  # signed by the CA that was replaced
fi

if [ ! -s server.pem ] || [ ! -s server.key ]; then
    names="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:rmq,DNS:$(hostname)"
    for name in "$@"; do
        if [[ "$name" =~ ^[0-9.]+$|: ]]; then names+=",IP:${name}"; else names+=",DNS:${name}"; fi
    done
    (umask 077 && new_key server.key)
    openssl req -new -key server.key -subj "/CN=rmq" -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
        -sha256 -out server.pem -extfile <(printf '%s\n' \
            "subjectAltName=${names}" \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectKeyIdentifier=hash" \
            "authorityKeyIdentifier=keyid,issuer") 2>/dev/null
    rm -f server.csr ca.srl
fi
