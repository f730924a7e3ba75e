#
# SPDX-License-Identifier: MIT
#
"""The demo's steps on a machine and what their output must show: written once, used by all.

The layer's oeqa cases (under testimage, where this directory is on the path through
``addpylib``), the parsec-demo toolkit (its VM demo and validation) and the LAVA test definition
(``lava/testdefs/parsec-tls-demo.sh``, generated from this module by ``parsec-demo lava
testdef``) run the same steps and apply the same checks:

- ``SHELL_STEPS``: POSIX shell functions a step runs on the machine (prefix a command with
  them): wait while a unit is still starting, start a TLS server in the background and wait
  until it listens, check a handshake's output;
- the command lines of the demo's programs (the handshake, mutual TLS's provisioning,
  issuing, handshake and destruction) and of the client container;
- ``handshake_problem`` and ``clean_failure_problem``: what keeps a client's output from being
  a good handshake, or a failure that says why.

Only the standard library, in Python that a build host's python3 runs.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

TLS_PORT = 4433
#: What ssl_server and ssl_server2 print once they listen on ``TLS_PORT``.
SERVER_READY = "Waiting for a remote connection"
#: Where a step started by ``SHELL_STEPS`` keeps the TLS server's output on the machine.
SERVER_LOG = "/tmp/parsec-demo-ssl_server.log"
#: The Parsec service's socket on the machine, and the directory a container mounts to reach it.
PARSEC_RUN_DIR = "/run/parsec"
PARSEC_SOCKET = PARSEC_RUN_DIR + "/parsec.sock"
#: The Parsec service's unit: upstream Parsec's (the RD-1 AE stack) or the project's.
PARSEC_UNITS = ("parsec.service", "parsec-demo.service")
#: The unit that loads the client container into podman at boot.
CLIENT_CONTAINER_UNIT = "parsec-demo-client-container.service"

#: The lines ssl_client1 prints for a whole successful handshake with the demo's server.
EXPECTED_LINES = (
    ". Seeding the random number generator... ok",
    ". Loading the CA root certificate ... ok",
    f". Connecting to tcp/127.0.0.1/{TLS_PORT}... ok",
    ". Performing the SSL/TLS handshake... ok",
    ". Verifying peer X.509 certificate... ok",
    "18 bytes written",
    "<h2>Mbed TLS Test Server</h2>",
)
#: The cipher suite the server's page names.
CIPHER_SUITE = re.compile(r"Successful connection using: (TLS(?:1-3)?-[A-Z0-9-]+)")
#: What ssl_client1 prints of the protocol it agreed.
PROTOCOL_LINE = "[ Protocol is %s ]"
#: ssl_client1 loaded the client's certificate and its key in the RSE (mutual TLS).
CLIENT_KEY_LOADED = ". Loading the client certificate and key %d ... ok"
#: A handshake that failed, as ssl_client1 says it.
HANDSHAKE_FAILED = re.compile(r" failed\n +! mbedtls_ssl_handshake returned -0x[0-9a-f]+\n")
#: One line the driver wrote on stderr, wherever it landed in the client's output.
DRIVER_STDERR_LINE = re.compile(r"parsec-se-driver: [^\n]*\n")
#: The driver's line when the service's socket cannot be reached.
CANNOT_REACH = "parsec-se-driver: cannot reach the Parsec service at"
#: The driver's line when the service refused a request (it then fails closed).
REFUSED = "parsec-se-driver: the Parsec service at"
#: The driver's line when a request to the service fails in any way.
DRIVER_LINE = re.compile(
    r"parsec-se-driver: (cannot reach|no answer from|incomplete response from|malformed "
    r"response from) the Parsec service at |parsec-se-driver: the Parsec service cannot reach"
)


def handshake_problem(status: int, output: str) -> str | None:
    """What keeps ``output`` (exit ``status``) from being a whole successful handshake, or None.

    The driver's lines on stderr may come in the middle of a step's line on stdout, and a
    handshake can pass after one (X.509 tries the next candidate CA certificate of the same name
    when a signature check fails): they are read out of the way first."""
    if status != 0:
        return f"exit status {status}, expected a successful handshake"
    output = DRIVER_STDERR_LINE.sub("", output)
    missing = [line for line in EXPECTED_LINES if line not in output]
    if missing:
        return "exit status 0 but without " + ", ".join(repr(line) for line in missing)
    if not CIPHER_SUITE.search(output):
        return "exit status 0 but no cipher suite line"
    return None


def clean_failure_problem(status: int, output: str) -> str | None:
    """What keeps ``output`` from being a failed handshake that says so (not killed, not timed
    out, no crash, the peer not verified), or None. The driver's lines on stderr come between
    the step and its "failed" on stdout."""
    if not 0 < status < 124:
        return f"exit status {status}: not a clean failure"
    if ". Performing the SSL/TLS handshake..." not in output:
        return "it did not reach the handshake"
    if not HANDSHAKE_FAILED.search(output):
        return "no 'mbedtls_ssl_handshake returned' failure"
    if "Segmentation fault" in output:
        return "a crash"
    if ". Verifying peer X.509 certificate... ok" in output:
        return "it verified the peer although it failed"
    return None


# --- the steps in the machine's shell ----------------------------------------------------------

#: POSIX shell functions, the steps on the machine. A command runs them as
#: ``SHELL_STEPS + "\n" + "parsec_demo_... ARGS"`` (``shell_step``).
SHELL_STEPS = r"""
# parsec_demo_unit_state UNIT SECONDS: the unit's state once it has left "activating" (a
# service of Type=notify is active only when it has said it serves), waiting at most SECONDS.
parsec_demo_unit_state() {
    parsec_demo_i=0
    while parsec_demo_s=$(systemctl is-active "$1"); [ "$parsec_demo_s" = activating ]; do
        [ "$parsec_demo_i" -ge $(($2 * 2)) ] && break
        parsec_demo_i=$((parsec_demo_i + 1))
        sleep 0.5
    done
    echo "$parsec_demo_s"
}

# parsec_demo_start_server LOG COMMAND...: the TLS server in the background (any other demo
# server stopped first), its output in LOG; returns once it listens on port @PORT@, or fails
# with its output if it exits or is not ready within @SERVER_TIMEOUT@ s.
parsec_demo_start_server() {
    parsec_demo_log=$1
    shift
    parsec_demo_stop_server
    nohup "$@" > "$parsec_demo_log" 2>&1 < /dev/null &
    parsec_demo_pid=$!
    parsec_demo_i=0
    until grep -q @READY@ "$parsec_demo_log"; do
        if ! kill -0 "$parsec_demo_pid" 2> /dev/null; then
            echo "$1 exited during start-up:"
            cat "$parsec_demo_log"
            return 1
        fi
        parsec_demo_i=$((parsec_demo_i + 1))
        if [ "$parsec_demo_i" -gt @SERVER_TRIES@ ]; then
            echo "$1 not ready after @SERVER_TIMEOUT@ s:"
            cat "$parsec_demo_log"
            kill "$parsec_demo_pid"
            return 1
        fi
        sleep 0.2
    done
}

# parsec_demo_stop_server: no demo TLS server runs any more.
parsec_demo_stop_server() {
    pkill -x ssl_server
    pkill -x ssl_server2
    true
}
"""
for _name, _value in (
    ("@PORT@", str(TLS_PORT)),
    ("@READY@", shlex.quote(SERVER_READY)),
    ("@SERVER_TIMEOUT@", "30"),
    ("@SERVER_TRIES@", "150"),
):
    SHELL_STEPS = SHELL_STEPS.replace(_name, _value)


def shell_step(function: str, *args: str) -> str:
    """A command line that runs the step ``function`` of ``SHELL_STEPS`` with ``args``."""
    return SHELL_STEPS + "\n" + shlex.join([function, *args])


def unit_state_command(unit: str, timeout: int = 120) -> str:
    """The command that prints ``unit``'s state once it has left "activating"."""
    return shell_step("parsec_demo_unit_state", unit, str(timeout))


def unit_state(output: str) -> str:
    """The state ``unit_state_command`` printed ("" when it printed none)."""
    lines = output.strip().splitlines()
    return lines[-1].strip() if lines else ""


def start_server_command(argv: Sequence[str], log: str = SERVER_LOG) -> str:
    """The command that starts the TLS server ``argv`` and returns once it listens."""
    return shell_step("parsec_demo_start_server", log, *argv)


STOP_SERVER = shell_step("parsec_demo_stop_server")


def client_command(
    address: str = "127.0.0.1", options: Sequence[str] = (), ca_file: str | None = None
) -> list[str]:
    """ssl_client1 against ``address`` (``ca_file``: the root it checks the server against, else
    its built-in test CA; ``options``: its NAME=VALUE arguments)."""
    return ["ssl_client1", address, *([ca_file] if ca_file else []), *options]


def in_fresh_directory(argv: Sequence[str], timeout: int = 120) -> str:
    """``argv`` from a fresh directory (Mbed TLS keeps the SE driver's PSA storage in the
    working directory), stopped after ``timeout`` seconds."""
    return f'cd "$(mktemp -d)" && timeout {timeout} {shlex.join(argv)}'


def version_options(tls13: bool) -> list[str]:
    """ssl_client1's protocol choice: TLS 1.2 (its default, as the upstream demo) or 1.3."""
    return ["force_version=tls13"] if tls13 else []


# --- mutual TLS with a client key made in the RSE ----------------------------------------------

#: The client's persistent PSA key id.
CLIENT_KEY_ID = 1
CSR_FILE = "client.csr"
CERT_FILE = "client.pem"
#: The client certificate's validity, as the test PKI's.
NOT_BEFORE, NOT_AFTER = "20261101000000", "20461027000000"
#: The files of the test PKI (meta-parsec-demo/lib/oeqa/runtime/files/parsec_tls_demo) a
#: machine needs for mutual TLS.
PKI_FILES = ("ca.pem", "server.pem", "server.key", "client-ca.pem", "client-ca.key")
#: Where the steps put the test PKI and the client's key directory on a machine.
MACHINE_PKI = "/tmp/parsec-demo-pki"
MACHINE_KEY_DIR = "/tmp/parsec-demo-client-key"
#: The name parsec_client_key gives the key in Parsec.
PARSEC_KEY_NAME = re.compile(r"is the Parsec key (\S+)")


def mutual_tls_server(pki: str) -> list[str]:
    """``ssl_server2`` requiring a client certificate from the client CA (``pki``: the test
    PKI's directory where the server runs)."""
    return [
        "ssl_server2",
        f"server_port={TLS_PORT}",
        "auth_mode=required",
        f"ca_file={pki}/client-ca.pem",
        f"crt_file={pki}/server.pem",
        f"key_file={pki}/server.key",
    ]


def provision_command(key_id: int = CLIENT_KEY_ID) -> list[str]:
    """``parsec_client_key generate``: the key pair made in the RSE, and a CSR signed there."""
    return ["parsec_client_key", "generate", f"key_id={key_id}", f"csr_file={CSR_FILE}"]


def issue_command(pki: str, serial: int = 1, output: str = CERT_FILE) -> list[str]:
    """``cert_write`` issuing the client's certificate from its CSR with the client CA."""
    return [
        "cert_write",
        f"request_file={CSR_FILE}",
        f"issuer_crt={pki}/client-ca.pem",
        f"issuer_key={pki}/client-ca.key",
        f"output_file={output}",
        f"serial={serial}",
        f"not_before={NOT_BEFORE}",
        f"not_after={NOT_AFTER}",
    ]


def mutual_tls_client(
    ca_file: str,
    key_id: int = CLIENT_KEY_ID,
    tls13: bool = False,
    address: str = "127.0.0.1",
    cert: str = CERT_FILE,
) -> list[str]:
    """``ssl_client1`` authenticating with the client certificate and the key in the RSE,
    checking the server against ``ca_file`` (the test PKI's root, as the client sees it)."""
    options = [f"crt_file={cert}", f"key_id={key_id}", *version_options(tls13)]
    return client_command(address, options, ca_file)


def destroy_command(key_id: int = CLIENT_KEY_ID) -> list[str]:
    """``parsec_client_key destroy``: the key destroyed in the RSE."""
    return ["parsec_client_key", "destroy", f"key_id={key_id}"]


# --- the client container ----------------------------------------------------------------------

#: Directories as Yocto's bitbake.conf names them, for the settings that use them.
BITBAKE_DIRS = {"datadir": "/usr/share", "libexecdir": "/usr/libexec", "bindir": "/usr/bin"}
#: The client container's definition in this layer, from this file's directory.
CLIENT_CONTAINER_INC = (
    "../recipes-parsec/parsec-demo-client-container/parsec-demo-client-container.inc"
)


def container_settings(text: str) -> dict[str, str]:
    """``NAME = "value"`` lines of a BitBake include (the client container's definition), with
    ``${dir}`` of bitbake.conf expanded."""
    settings = dict(re.findall(r'^([A-Z_]+)\s*=\s*"([^"]*)"\s*$', text, re.M))

    def expand(value: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: BITBAKE_DIRS.get(m[1], m[0]), value)

    return {name: expand(value) for name, value in settings.items()}


def layer_container_settings() -> dict[str, str]:
    """The client container's settings as this layer defines them."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), CLIENT_CONTAINER_INC)
    with open(path) as inc:
        return container_settings(inc.read())


@dataclass(frozen=True)
class ClientContainerSteps:
    """The steps with the client container on a machine: it runs as its own ``uid`` (a Parsec
    application of its own; as podman's ``--user`` takes it), its PSA storage in ``workdir``."""

    reference: str
    uid: str
    workdir: str

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> ClientContainerSteps:
        """From the client container's definition (``container_settings``)."""
        return cls(
            reference=f"{settings['PARSEC_DEMO_CLIENT_IMAGE']}:{settings['PARSEC_DEMO_CLIENT_TAG']}",
            uid=settings["PARSEC_DEMO_CLIENT_UID"],
            workdir=settings["PARSEC_DEMO_CLIENT_WORKDIR"],
        )

    @classmethod
    def of_layer(cls) -> ClientContainerSteps:
        return cls.from_settings(layer_container_settings())

    def run(
        self,
        argv: Sequence[str],
        mount_parsec: bool = True,
        workdir_from: str | None = None,
        uid: int | None = None,
    ) -> str:
        """The ``podman run`` line that runs ``argv`` in the container: the host's network,
        (with ``mount_parsec``) the Parsec socket's directory bind-mounted, as ``uid`` (the
        container's own by default). Its working directory, where the client keeps its PSA
        storage (a persistent key's record), is a private tmpfs, or with ``workdir_from`` that
        directory of the machine, handed over to ``uid``."""
        user = self.uid if uid is None else str(uid)
        words = ["podman", "run", "--rm", "--network", "host"]
        if mount_parsec:
            words += ["-v", f"{PARSEC_RUN_DIR}:{PARSEC_RUN_DIR}"]
        words += ["--user", f"{user}:{user}"]
        if workdir_from is not None:
            words += ["-v", f"{workdir_from}:{self.workdir}:U"]
        else:
            words += ["--tmpfs", f"{self.workdir}:rw,mode=0700,U"]
        return shlex.join([*words, self.reference, *argv])

    def loaded_command(self, timeout: int = 300) -> str:
        """The command that waits for the unit loading the container at boot (starting it if
        it has not run) and checks the container is in podman's store."""
        return (
            f"timeout {timeout} systemctl start {CLIENT_CONTAINER_UNIT} && "
            f"podman image exists {shlex.quote(self.reference)}"
        )

    def left_command(self) -> str:
        """The command that prints the ids of this container's containers still there."""
        return f"podman ps -aq --filter ancestor={shlex.quote(self.reference)}"
