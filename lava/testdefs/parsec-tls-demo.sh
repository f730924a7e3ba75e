#!/bin/sh
# The checks of the LAVA test definition parsec-tls-demo.yaml, on the machine under test:
#   parsec-tls-demo.sh CLIENT_IMAGE LOAD_TIMEOUT [PKI_DIR [CLIENT_UID]]
# PKI_DIR: the layer's test PKI (meta-parsec-demo/lib/oeqa/runtime/files/parsec_tls_demo of the
# repository LAVA cloned the definition from), for the mutual-TLS case. CLIENT_UID: the uid the
# client container runs as, its own Parsec application (PARSEC_DEMO_CLIENT_UID of the layer).
# Each check is one test case, reported with lava-test-case (or printed as "<case>: <result>"
# where LAVA's helpers are absent, to run it by hand). A failed check does not stop the others;
# what each printed is in the job log. The exit status is 0: the cases carry the results.
set -u
image="${1:-localhost/parsec-demo-client:1}"
load_timeout="${2:-600}"
pki="${3:-$(dirname "$0")/../../meta-parsec-demo/lib/oeqa/runtime/files/parsec_tls_demo}"
pki=$(cd "$pki" 2>/dev/null && pwd)
server_log=/tmp/parsec-demo-lava-ssl_server.log
client_uid="${4:-61000}"
mount="-v /run/parsec:/run/parsec"
as_client="--user $client_uid:$client_uid"
private_work="--tmpfs /work:rw,mode=0700,U"
key_dir=/tmp/parsec-demo-lava-client-key

result() {  # case result
    if command -v lava-test-case >/dev/null 2>&1; then
        lava-test-case "$1" --result "$2"
    else
        echo "$1: $2"
    fi
}

check() {  # case command...; passes when the command does
    name="$1"
    shift
    echo "+ $*"
    if "$@"; then result "$name" pass; else result "$name" fail; fi
}

server_listening() {
    ss -ltnH 'sport = :4433' | grep -q 4433
}

start_server() {  # [server command...]
    pkill -x ssl_server 2>/dev/null
    pkill -x ssl_server2 2>/dev/null
    "${@:-ssl_server}" > "$server_log" 2>&1 &
    tries=0
    while ! server_listening; do
        tries=$((tries + 1))
        if [ "$tries" -gt 100 ]; then
            cat "$server_log"
            return 1
        fi
        sleep 0.2
    done
}

handshake_in_container() {
    output=$(podman run --rm --network host $mount $as_client $private_work "$image" \
        ssl_client1 127.0.0.1 2>&1)
    status=$?
    echo "$output"
    [ "$status" -eq 0 ] && echo "$output" | grep -q "Verifying peer X.509 certificate... ok"
}

tls13_handshake_in_container() {
    output=$(podman run --rm --network host $mount $as_client $private_work "$image" \
        ssl_client1 127.0.0.1 force_version=tls13 2>&1)
    status=$?
    echo "$output"
    [ "$status" -eq 0 ] && echo "$output" | grep -q "Protocol is TLSv1.3" \
        && echo "$output" | grep -q "Verifying peer X.509 certificate... ok"
}

# Mutual TLS: the client's key pair generated in the RSE from the container (its PSA record in
# $key_dir, the container's /work), its certificate issued by the test PKI's client CA, and a
# handshake with ssl_server2 requiring it, the CertificateVerify signed in the RSE; then the key
# is destroyed.
mutual_tls_in_container() {
    in_container="podman run --rm --network host $mount $as_client -v $key_dir:/work:U $image"
    rm -rf "$key_dir" && mkdir -p "$key_dir" && cp "$pki/ca.pem" "$key_dir/" || return 1
    $in_container parsec_client_key generate key_id=1 csr_file=client.csr || return 1
    (cd "$key_dir" && cert_write request_file=client.csr issuer_crt="$pki/client-ca.pem" \
        issuer_key="$pki/client-ca.key" output_file=client.pem serial=1 \
        not_before=20261101000000 not_after=20461027000000 > /dev/null) || return 1
    start_server ssl_server2 server_port=4433 auth_mode=required ca_file="$pki/client-ca.pem" \
        crt_file="$pki/server.pem" key_file="$pki/server.key" || return 1
    output=$($in_container ssl_client1 127.0.0.1 /work/ca.pem crt_file=client.pem key_id=1 2>&1)
    status=$?
    echo "$output"
    pkill -x ssl_server2 2>/dev/null
    $in_container parsec_client_key destroy key_id=1 || status=1
    rm -rf "$key_dir"
    [ "$status" -eq 0 ] && echo "$output" | grep -q "Loading the client certificate and key 1 ... ok" \
        && echo "$output" | grep -q "Verifying peer X.509 certificate... ok"
}

fails_closed_without_the_socket() {
    output=$(podman run --rm --network host $as_client $private_work "$image" \
        ssl_client1 127.0.0.1 2>&1)
    status=$?
    echo "$output"
    [ "$status" -ne 0 ] \
        && echo "$output" | grep -q "parsec-se-driver: cannot reach the Parsec service at" \
        && ! echo "$output" | grep -q "Verifying peer X.509 certificate... ok"
}

# start waits while the service is still starting (the unit is Type=notify), a no-op after.
check parsec-service-active sh -c "systemctl start parsec-demo.service && systemctl is-active \
parsec-demo.service"
check parsec-ping parsec-tool ping
check client-container-loaded sh -c "timeout $load_timeout systemctl start \
parsec-demo-client-container.service && podman image exists $image"
check tls-server-listening start_server
check tls-handshake-in-container handshake_in_container
check tls13-handshake-in-container tls13_handshake_in_container
check container-without-parsec-socket-fails-closed fails_closed_without_the_socket
pkill -x ssl_server 2>/dev/null
check mutual-tls-in-container mutual_tls_in_container
check no-container-left sh -c "[ -z \"\$(podman ps -aq --filter ancestor=$image)\" ]"
exit 0
