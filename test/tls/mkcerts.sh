#!/bin/sh
# Makes the certificates the TLS tests use, into the directory given (which
# must exist). Everything is EC P-256 so that handshakes stay fast.
#
#   ca.crt ca.key            the test CA
#   server.crt server.key    for 127.0.0.1 and localhost (subjectAltName)
#   client.crt client.key    a client certificate from the CA
#   client-enc.key           client.key encrypted with the password "secret"
#   expired.crt expired.key  a server certificate that expired in 2020
#   other-ca.crt             another CA
#   other.crt other.key      a server certificate (127.0.0.1, localhost)
#                            from the other CA
#   other-client.crt/.key    a client certificate from the other CA
#   wronghost.crt/.key       from the CA, for wrong.example only
#
# Files are world-readable so a broker dropping privileges can read them.
set -eu

dir=${1:?usage: mkcerts.sh DIR}
cd "$dir"
umask 022

ossl() {
  openssl "$@" 2>/dev/null || { echo "mkcerts: openssl $1 failed" >&2; exit 1; }
}

key() {
  ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

cat > ca.ext <<'EOF'
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
cat > server.ext <<'EOF'
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EOF
cat > wronghost.ext <<'EOF'
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
EOF
cat > client.ext <<'EOF'
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EOF

# ca NAME SUBJECT
ca() {
  key "$1.key"
  ossl req -new -x509 -key "$1.key" -out "$1.crt" -days 30 -subj "$2" \
    -extensions v3_ca -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME CA SUBJECT EXTFILE
leaf() {
  key "$1.key"
  ossl req -new -key "$1.key" -out "$1.csr" -subj "$3"
  ossl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial \
    -out "$1.crt" -days 30 -extfile "$4"
}

ca ca "/CN=uvmqtt test CA"
ca other-ca "/CN=uvmqtt other CA"
leaf server ca "/CN=localhost" server.ext
leaf client ca "/CN=uvmqtt-client" client.ext
leaf other other-ca "/CN=localhost" server.ext
leaf other-client other-ca "/CN=uvmqtt-other-client" client.ext
leaf wronghost ca "/CN=wrong.example" wronghost.ext
# Traditional PEM encryption (DEK-Info, AES): mbedTLS 2.28 reads it; its
# PKCS#8 decryption knows only DES-based schemes.
ossl pkey -in client.key -out client-enc.key -traditional -aes256 \
  -passout pass:secret

# An expired certificate needs explicit dates: `openssl ca` can set them.
key expired.key
ossl req -new -key expired.key -out expired.csr -subj "/CN=localhost"
mkdir -p ca-db
: > ca-db/index.txt
echo 1000 > ca-db/serial
cat > ca-db/ca.cnf <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = ca-db/index.txt
serial = ca-db/serial
new_certs_dir = ca-db
certificate = ca.crt
private_key = ca.key
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[ any ]
commonName = supplied
EOF
ossl ca -batch -config ca-db/ca.cnf -in expired.csr -out expired.crt \
  -startdate 20200101000000Z -enddate 20200201000000Z -extfile server.ext \
  -notext

rm -f ./*.csr ./*.srl
chmod 0644 ./*.crt ./*.key
echo "mkcerts: certificates in $dir"
