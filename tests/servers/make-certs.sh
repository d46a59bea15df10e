#!/bin/sh
# Create a throwaway test PKI in DIR (created if missing) with the openssl CLI:
#   ca.pem / ca-key.pem          self-signed test CA (basicConstraints critical CA:TRUE)
#   server.pem / server-key.pem  leaf for IP:127.0.0.1 and DNS:localhost (serverAuth)
#   client.pem / client-key.pem  leaf CN=bridge-test-client (clientAuth), for SASL EXTERNAL
#   dh.pem                       ffdhe2048 DH parameters (RFC 7919 group, created instantly); without a
#                                DHFile ngIRCd generates 2048-bit parameters at every start (~0.2 s)
#   client-fp-sha256.txt         SHA-256 of the client cert DER, lowercase hex without colons
#                                (the form InspIRCd 3 sends to Atheme with <sslprofile hash="sha256">)
# All keys are EC P-256, unencrypted PEM. Validity: from now (notBefore = creation time) for 3650 days.
# Usage: make-certs.sh DIR
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
cd "$dir"

cat > openssl-ext.cnf <<'EOF'
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# Run openssl quietly; show its output only when it fails.
q() {
    out=$("$@" 2>&1) || { echo "$out" >&2; echo "make-certs.sh: failed: $*" >&2; exit 1; }
}

genkey() {
    q openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# CA: key, CSR, self-signed with the CA extensions.
genkey ca-key.pem
q openssl req -new -key ca-key.pem -subj "/CN=Bridge Test CA" -out ca.csr
q openssl x509 -req -in ca.csr -signkey ca-key.pem -set_serial 1 -days 3650 \
    -extfile openssl-ext.cnf -extensions ca_ext -sha256 -out ca.pem

sign() { # sign NAME CN EXT SERIAL
    genkey "$1-key.pem"
    q openssl req -new -key "$1-key.pem" -subj "/CN=$2" -out "$1.csr"
    q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -set_serial "$4" -days 3650 \
        -extfile openssl-ext.cnf -extensions "$3" -sha256 -out "$1.pem"
}
sign server localhost server_ext 2
sign client bridge-test-client client_ext 3

q openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out dh.pem

rm -f ca.csr server.csr client.csr openssl-ext.cnf

# Servers may drop privileges (ngIRCd runs as nobody): keep everything world-readable.
# These are throwaway test keys in a throwaway directory.
chmod 0644 ./*.pem

openssl x509 -in client.pem -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1 > client-fp-sha256.txt

q openssl verify -CAfile ca.pem server.pem client.pem
