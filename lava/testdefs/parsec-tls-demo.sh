#!/bin/sh
# The checks of the LAVA test definition parsec-tls-demo.yaml, on the machine under test:
#   parsec-tls-demo.sh CLIENT_IMAGE LOAD_TIMEOUT
# Each check is one test case, reported with lava-test-case (or printed as "<case>: <result>"
# where LAVA's helpers are absent, to run it by hand). A failed check does not stop the others;
# what each printed is in the job log. The exit status is 0: the cases carry the results.
set -u
image="${1:-localhost/parsec-demo-client:1}"
load_timeout="${2:-600}"
server_log=/tmp/parsec-demo-lava-ssl_server.log
mount="-v /run/parsec:/run/parsec"

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

start_server() {
    pkill -x ssl_server 2>/dev/null
    ssl_server > "$server_log" 2>&1 &
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
    output=$(podman run --rm --network host $mount "$image" ssl_client1 127.0.0.1 2>&1)
    status=$?
    echo "$output"
    [ "$status" -eq 0 ] && echo "$output" | grep -q "Verifying peer X.509 certificate... ok"
}

fails_closed_without_the_socket() {
    output=$(podman run --rm --network host "$image" ssl_client1 127.0.0.1 2>&1)
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
check container-without-parsec-socket-fails-closed fails_closed_without_the_socket
check no-container-left sh -c "[ -z \"\$(podman ps -aq --filter ancestor=$image)\" ]"
pkill -x ssl_server 2>/dev/null
exit 0
