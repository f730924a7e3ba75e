#
# SPDX-License-Identifier: MIT
#
"""Validation of the Parsec-enabled TLS demo on a running machine (QEMU or FVP).

oeqa runtime cases: testimage runs them (TEST_SUITES = "parsec_tls_demo"), and so does the
parsec-demo toolkit against its dev VM (`./tools/parsec-demo validate`). Each test leaves the
machine as it found it: servers stopped, keys destroyed, containers removed.

The evidence that the RSE served a handshake is in the RSE's console log on the host (the RSE
model's console on QEMU, the FVP's "rse" console): the target object names it, as
``target.rse_log`` (a path string, or None when the machine has no RSE log), set by the
layer's controllers (ParsecDemoQemuTarget, ParsecDemoFVPTarget) and by the toolkit's SSH
target. TlsHandshakeTest.test_rse_served_the_handshake checks it, and is reported skipped, with
the reason, on a machine without that log.
"""

import base64
import json
import os
import re
import tempfile
import time

from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.case import OERuntimeTestCase
from oeqa.runtime.decorator.package import OEHasPackage

SERVER_LOG = "/tmp/parsec-demo-ssl_server.log"
PARSEC_RUN_DIR = "/run/parsec"
PARSEC_SOCKET = PARSEC_RUN_DIR + "/parsec.sock"
FILES = os.path.join(os.path.dirname(__file__), "..", "files", "parsec_tls_demo")
#: The client container's definition in this layer (its name and tag), and the unit that loads
#: it into podman at boot (parsec-demo-client-container-load; the toolkit's dev image has both).
CLIENT_CONTAINER_INC = os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "..", "recipes-parsec",
    "parsec-demo-client-container", "parsec-demo-client-container.inc",
)
CLIENT_CONTAINER_UNIT = "parsec-demo-client-container.service"
EXPECTED_LINES = (
    ". Seeding the random number generator... ok",
    ". Loading the CA root certificate ... ok",
    ". Connecting to tcp/127.0.0.1/4433... ok",
    ". Performing the SSL/TLS handshake... ok",
    ". Verifying peer X.509 certificate... ok",
    "18 bytes written",
    "<h2>Mbed TLS Test Server</h2>",
)
CIPHER_SUITE = re.compile(r"Successful connection using: (TLS(?:1-3)?-[A-Z0-9-]+)")

def client_container_settings():
    """The PARSEC_DEMO_CLIENT_* settings of the layer's client container definition."""
    with open(CLIENT_CONTAINER_INC) as inc:
        return dict(re.findall(r'^([A-Z_]+)\s*=\s*"([^"]*)"\s*$', inc.read(), re.M))


def client_container_reference(settings=None):
    """name:tag of the client container, as the layer defines it (``settings``: already read)."""
    settings = settings or client_container_settings()
    return "%s:%s" % (settings["PARSEC_DEMO_CLIENT_IMAGE"], settings["PARSEC_DEMO_CLIENT_TAG"])


def client_container_run(mount_parsec=True):
    """The podman run line (up to the client's arguments) of the client container: its own
    uid, hence its own Parsec application; its PSA storage in a private tmpfs."""
    settings = client_container_settings()
    uid = settings["PARSEC_DEMO_CLIENT_UID"]
    words = ["podman run --rm --network host"]
    if mount_parsec:
        words.append("-v %s:%s" % (PARSEC_RUN_DIR, PARSEC_RUN_DIR))
    words.append("--user %s:%s" % (uid, uid))
    words.append("--tmpfs %s:rw,mode=0700,U" % settings["PARSEC_DEMO_CLIENT_WORKDIR"])
    words.append(client_container_reference(settings))
    return " ".join(words)


# --- the restart case: ssl_client1 over and over, in the background on the target ---------------

RESTART_DIR = "/tmp/parsec-demo-restart"
#: Seconds the service stays down: several handshakes start and end in that window.
HELD_DOWN = 6
#: One line per handshake in <dir>/index: number, start and end (uptime, seconds), exit status;
#: its output in <dir>/<number>.out. Stops when <dir>/stop exists (or after 300 handshakes).
HANDSHAKE_LOOP = """dir=$1
i=0
while [ ! -e $dir/stop ] && [ $i -lt 300 ]; do
    i=$((i + 1))
    work=$(mktemp -d)
    read began _ < /proc/uptime
    (cd $work && exec timeout 60 ssl_client1 127.0.0.1) > $dir/$i.out 2>&1
    status=$?
    read ended _ < /proc/uptime
    rm -rf $work
    echo "$i $began $ended $status" >> $dir/index
done
"""
HANDSHAKE_FAILED = re.compile(r" failed\n +! mbedtls_ssl_handshake returned -0x[0-9a-f]+\n")
#: One line the driver wrote on stderr, wherever it landed in the client's output.
DRIVER_STDERR_LINE = re.compile(r"parsec-se-driver: [^\n]*\n")
#: The driver's line when a request to the service fails (it then fails closed).
DRIVER_LINE = re.compile(
    r"parsec-se-driver: (cannot reach|no answer from|incomplete response from|malformed "
    r"response from) the Parsec service at |parsec-se-driver: the Parsec service cannot reach"
)


# --- RSE evidence: one parser for the RSE model's console and the FVP's rse console ------------

CRYPTO_LINE = re.compile(r"\[Crypto\] (psa_\w+): (.*?) -> (.*)$")


def rse_calls(text):
    """The PSA calls an RSE console shows, as (function, key, alg, status) tuples.

    A key creation's result is the new key ("-> key 0x..."), counted as PSA_SUCCESS.
    """
    calls = []
    for line in text.splitlines():
        match = CRYPTO_LINE.search(line)
        if not match:
            continue
        function, arguments, result = match.groups()
        key = re.search(r"key (0x[0-9a-f]+)", arguments)
        alg = re.search(r"alg=(\S+)", arguments)
        if result.startswith("key 0x"):
            key_id, status = result.split()[1], "PSA_SUCCESS"
        else:
            key_id, status = (key.group(1) if key else None), result.split()[0]
        calls.append((function, key_id, alg.group(1) if alg else None, status))
    return calls


#: Where a case puts the RSE calls it saw in testresults.json: oeqa's extraresults, as ptest's raw
#: logs go there, under this prefix and the diagram's name; `parsec-demo report html` draws them.
RSE_CALLS_RESULT = "parsec_tls_demo.rse_calls."


def record_rse_calls(test, name, calls):
    """The RSE calls (``rse_calls``'s tuples) into the run's results, as JSON events."""
    events = [
        {"function": function, "key_id": int(key, 16) if key else 0, "alg": alg or "",
         "status": status}
        for function, key, alg, status in calls
    ]  # fmt: skip
    if not hasattr(test.tc, "extraresults"):
        test.tc.extraresults = {}
    test.tc.extraresults[RSE_CALLS_RESULT + name] = {
        "status": "PASSED",
        "log": json.dumps(events, sort_keys=True),
    }


RSE_COMMS_CALL = re.compile(r"\[RSE-COMMS\] Received message:.*handle=0x40000100")


def check_evidence(test, calls, signatures, text=""):
    """One import, one successful verify and one destroy per verified signature, no leak.

    An RSE whose firmware logs only the RSE comms traces (TF-M's debug level, no crypto
    lines) still shows one crypto service call per PSA call.
    """
    if not calls and RSE_COMMS_CALL.search(text):
        count = len(RSE_COMMS_CALL.findall(text))
        test.assertGreaterEqual(count, 3 * signatures, "too few RSE crypto calls:\n" + text)
        return
    functions = [c[0] for c in calls]
    test.assertEqual(
        functions, ["psa_import_key", "psa_verify_hash", "psa_destroy_key"] * signatures,
        "the RSE did not serve the handshake's signatures: %s" % (calls,),
    )
    test.assertTrue(all(c[3] == "PSA_SUCCESS" for c in calls), calls)
    created = [c[1] for c in calls if c[0] == "psa_import_key"]
    destroyed = [c[1] for c in calls if c[0] == "psa_destroy_key"]
    test.assertEqual(sorted(created), sorted(destroyed), "a key was left in the RSE")


#: Seconds the log must stay unchanged before a window closes (the RSE writes its last lines
#: after replying; the FVP's console reaches its log through telnet), and the longest wait.
RSE_LOG_QUIET = 1.0
RSE_LOG_SETTLE = 15.0


def rse_log_path(target):
    """The host-side RSE console log the target names (``target.rse_log``), or None.

    Only a string counts: meta-arm's OEFVPTarget answers any attribute it lacks with a
    function (its pexpect calls), so a target without the attribute may still "have" it.
    """
    path = getattr(target, "rse_log", None)
    return path if isinstance(path, str) and path else None


def missing_rse_log(target):
    """Why there is no RSE console log to read on this machine, or None when there is one."""
    path = rse_log_path(target)
    if path is None:
        return "no RSE console log on this machine (the target %s names none)" % (
            type(target).__name__
        )
    if not os.path.isfile(path):
        return "no RSE console log on this machine (%s does not exist)" % path
    return None


class RseLogWindow:
    """The part of the host-side RSE console log written during a with-block."""

    def __init__(self, target):
        self.path = rse_log_path(target)
        self.text = ""

    @property
    def available(self):
        return self.path is not None and os.path.isfile(self.path)

    def __enter__(self):
        self.start = os.path.getsize(self.path) if self.available else 0
        return self

    def __exit__(self, *exc):
        if self.available:
            self.settle()
            with open(self.path, errors="replace") as log:
                log.seek(self.start)
                self.text = log.read()
        return False

    def settle(self):
        """Wait until the log has stopped growing for RSE_LOG_QUIET seconds."""
        deadline = time.time() + RSE_LOG_SETTLE
        size, quiet_since = os.path.getsize(self.path), time.time()
        while time.time() < deadline:
            time.sleep(0.2)
            now = os.path.getsize(self.path)
            if now != size:
                size, quiet_since = now, time.time()
            elif time.time() - quiet_since >= RSE_LOG_QUIET:
                return


# --- helpers ------------------------------------------------------------------------------------


class ParsecDemoCase(OERuntimeTestCase):
    def run_ok(self, command, timeout=120):
        status, output = self.target.run(command, timeout)
        self.assertEqual(status, 0, "%s failed (%s):\n%s" % (command, status, output))
        return output

    def unit_state_after_start(self, unit, timeout=120):
        """The unit's state once it has left "activating": a service of Type=notify (the
        project's) is active only when it has said it serves, which may be after SSH answers."""
        status, output = self.target.run(
            'for i in $(seq %d); do s=$(systemctl is-active %s); '
            '[ "$s" = activating ] || break; sleep 0.5; done; echo "$s"' % (2 * timeout, unit),
            timeout + 30,
        )
        return output.strip().splitlines()[-1] if output.strip() else ""

    def service_unit(self):
        for unit in ("parsec.service", "parsec-demo.service"):
            if self.target.run("systemctl cat %s" % unit)[0] == 0:
                return unit
        self.fail("no Parsec service unit on the machine")

    def run_client(self, prefix="", ca_file=None, options=""):
        """ssl_client1 against the local server, from a fresh directory (its PSA ITS files);
        ``options``: its NAME=VALUE arguments."""
        args = "127.0.0.1" + (" %s" % ca_file if ca_file else "") + (" " + options if options else "")
        return self.target.run(
            'cd "$(mktemp -d)" && %stimeout 120 ssl_client1 %s' % (prefix, args), 150
        )

    def handshake_problem(self, status, output):
        """What keeps ``output`` from being a whole successful handshake, or None.

        The driver's lines on stderr may come in the middle of a step's line on stdout: a
        handshake can pass after one (X.509 tries the next candidate CA certificate of the same
        name when a signature check fails, e.g. while the service comes back), so they are
        read out of the way first."""
        if status != 0:
            return "exit status %d, expected a successful handshake" % status
        output = DRIVER_STDERR_LINE.sub("", output)
        missing = [line for line in EXPECTED_LINES if line not in output]
        if missing:
            return "exit status 0 but without %s" % ", ".join(repr(m) for m in missing)
        if not CIPHER_SUITE.search(output):
            return "exit status 0 but no cipher suite line"
        return None

    def assert_handshake(self, status, output):
        problem = self.handshake_problem(status, output)
        if problem is not None:
            self.fail("%s:\n%s" % (problem, output))

    # Not the toolkit's tls_demo.start_tls_server: under testimage this case cannot import it.
    def start_server(self, command="ssl_server"):
        """The server in the background, its output in a log: the SSH session stays free."""
        self.target.run("pkill -x ssl_server; pkill -x ssl_server2; true")
        self.run_ok("nohup %s > %s 2>&1 < /dev/null &" % (command, SERVER_LOG))
        for _ in range(100):
            if self.target.run("ss -ltnH 'sport = :4433' | grep -q 4433")[0] == 0:
                return
            time.sleep(0.2)
        self.fail("the TLS server is not listening on 4433:\n%s" % self.server_log())

    def stop_server(self):
        self.target.run("pkill -x ssl_server; pkill -x ssl_server2; true")

    def server_log(self):
        return self.target.run("cat %s" % SERVER_LOG)[1]


# --- the cases ----------------------------------------------------------------------------------


class ParsecServiceTest(ParsecDemoCase):
    def test_service_active(self):
        unit = self.service_unit()
        state = self.unit_state_after_start(unit)
        self.assertEqual(state, "active", "%s is %s" % (unit, state or "in no state"))
        self.run_ok("test -S %s" % PARSEC_SOCKET)

    @OETestDepends(["parsec_tls_demo.ParsecServiceTest.test_service_active"])
    def test_ping(self):
        output = self.run_ok("parsec-tool ping")
        self.assertIn("1.0", output.splitlines())

    @OETestDepends(["parsec_tls_demo.ParsecServiceTest.test_service_active"])
    def test_list_providers(self):
        output = self.run_ok("parsec-tool list-providers")
        self.assertIn("ID: 0x04 (Trusted Service provider)", output)


class TlsHandshakeTest(ParsecDemoCase):
    @OETestDepends(["parsec_tls_demo.ParsecServiceTest.test_ping"])
    @OEHasPackage(["parsec-mbedtls-demo"])
    @OETimeout(300)
    def test_handshake_on_the_host(self):
        self.start_server()
        try:
            self.run_ok("ss -ltnH 'sport = :4433'")
            status, output = self.run_client()
            self.assert_handshake(status, "%s\n--- server log ---\n%s" % (output, self.server_log()))
        finally:
            self.stop_server()

    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OETimeout(300)
    def test_rse_served_the_handshake(self):
        """The RSE's console shows, for a handshake of its own, one import, one successful
        verify and one destroy per signature, and no key left behind. Skipped, with the reason,
        on a machine whose target names no RSE console log."""
        self.start_server()  # the first command also starts a lazily booted target (the FVP)
        try:
            missing = missing_rse_log(self.target)
            if missing:
                self.skipTest(missing)
            with RseLogWindow(self.target) as rse:
                status, output = self.run_client()
            self.assert_handshake(status, output)
            # The server certificate (signed by the test CA) and ServerKeyExchange.
            calls = rse_calls(rse.text)
            check_evidence(self, calls, 2, rse.text)
            record_rse_calls(self, "handshake", calls)
        finally:
            self.stop_server()

    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OEHasPackage(["podman"])
    @OETimeout(600)
    def test_handshake_in_a_container(self):
        """ssl_client1 in the client container the image ships (its OCI archive, loaded into
        podman at boot: no registry, no network), the Parsec socket's directory bind-mounted
        and the server reached through the host's network; the same container without the
        socket mounted fails closed with the driver's one-line error."""
        image = client_container_reference()
        self.run_ok("systemctl start %s" % CLIENT_CONTAINER_UNIT, 300)
        self.run_ok("podman image exists %s" % image)
        self.start_server()
        try:
            with RseLogWindow(self.target) as rse:
                status, output = self.target.run(
                    client_container_run() + " ssl_client1 127.0.0.1", 300
                )
            self.assert_handshake(status, output)
            if rse.available:
                check_evidence(self, rse_calls(rse.text), 2, rse.text)
            status, output = self.target.run(
                client_container_run(mount_parsec=False) + " ssl_client1 127.0.0.1", 300
            )
            self.assertNotEqual(status, 0, "succeeded without the Parsec socket:\n" + output)
            self.assertIn("parsec-se-driver: cannot reach the Parsec service at", output)
            self.assertNotIn("Verifying peer X.509 certificate... ok", output)
        finally:
            self.stop_server()
        left = self.target.run("podman ps -aq --filter ancestor=%s" % image)[1].strip()
        self.assertEqual(left, "", "containers left behind")


class NegativeTest(ParsecDemoCase):
    def install_pki(self, corrupt):
        """The test PKI on the target; with ``corrupt``, the server's signature damaged."""
        with open(os.path.join(FILES, "server.pem")) as pem:
            text = pem.read()
        if corrupt:
            body = "".join(text.strip().splitlines()[1:-1])
            der = bytearray(base64.b64decode(body))
            der[-10] ^= 0x01  # a bit of the signature; the certificate body stays intact
            encoded = base64.b64encode(bytes(der)).decode()
            lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
            text = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as out:
            out.write(text)
        self.run_ok("mkdir -p /tmp/parsec-demo-pki")
        try:
            self.target.copyTo(out.name, "/tmp/parsec-demo-pki/server.pem")
        finally:
            os.unlink(out.name)
        self.target.copyTo(os.path.join(FILES, "server.key"), "/tmp/parsec-demo-pki/server.key")
        self.target.copyTo(os.path.join(FILES, "ca.pem"), "/tmp/parsec-demo-pki/ca.pem")

    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OETimeout(300)
    def test_a_corrupted_certificate_is_refused(self):
        self.install_pki(corrupt=True)
        self.start_server(
            "ssl_server2 crt_file=/tmp/parsec-demo-pki/server.pem "
            "key_file=/tmp/parsec-demo-pki/server.key server_port=4433"
        )
        try:
            with RseLogWindow(self.target) as rse:
                status, output = self.run_client(ca_file="/tmp/parsec-demo-pki/ca.pem")
            self.assertNotEqual(status, 0, output)
            self.assertIn(". Performing the SSL/TLS handshake... failed", output)
            if rse.available:
                results = [c[3] for c in rse_calls(rse.text) if c[0] == "psa_verify_hash"]
                self.assertIn("PSA_ERROR_INVALID_SIGNATURE", results, rse.text)
        finally:
            self.stop_server()
            self.target.run("rm -rf /tmp/parsec-demo-pki")

    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OETimeout(600)
    def test_handshakes_survive_a_parsec_restart(self):
        """Handshakes run back to back while the service stops, stays down for a while and
        starts again: those that ran while it was down fail closed (the driver says it cannot
        reach the service), those around the stop and the start pass or fail cleanly, the ones
        after it answers again pass; another application's key is untouched."""
        unit = self.service_unit()
        other = "runuser -u nobody -- "
        self.run_ok(other + "parsec-tool create-ecc-key -k validation-other-app")
        self.start_server()
        loop = None
        try:
            self.run_ok("rm -rf %s && mkdir -p %s" % (RESTART_DIR, RESTART_DIR))
            self.run_ok("cat > %s/loop.sh << 'EOF'\n%sEOF" % (RESTART_DIR, HANDSHAKE_LOOP))
            loop = self.run_ok(
                "nohup sh %s/loop.sh %s > /dev/null 2>&1 < /dev/null & echo $!"
                % (RESTART_DIR, RESTART_DIR)
            )
            self.wait_for_handshakes(lambda runs: len(runs) >= 2, "two handshakes before the stop")
            # Stop, hold down, start; the machine's uptime at each step.
            times = self.run_ok(
                "read t0 _ < /proc/uptime; systemctl stop %s; read t1 _ < /proc/uptime; "
                "sleep %d; read t2 _ < /proc/uptime; systemctl start %s; "
                "read t3 _ < /proc/uptime; echo $t0 $t1 $t2 $t3" % (unit, HELD_DOWN, unit),
                120,
            )
            stopping, stopped, starting, _ = [float(t) for t in times.split()]
            back = None
            for _ in range(60):
                status, output = self.target.run(
                    "parsec-tool ping > /dev/null 2>&1 && read t _ < /proc/uptime && echo $t"
                )
                if status == 0:
                    back = float(output)
                    break
                time.sleep(1)
            self.assertIsNotNone(back, "the service did not answer within 60 s of its start")
            self.wait_for_handshakes(
                lambda runs: len([r for r in runs if r[1] > back]) >= 3,
                "three handshakes after the service answered again",
            )
            self.run_ok("touch %s/stop" % RESTART_DIR)
            self.run_ok(
                "for i in $(seq 150); do kill -0 %s 2>/dev/null || exit 0; sleep 0.4; done; "
                "exit 1" % loop,
                120,
            )
            runs = self.handshakes()
            outputs = self.handshake_outputs()
            timeline = "\n".join("#%d %.2f-%.2f status %d" % run for run in runs)
            timeline += "\nstop %.2f, stopped %.2f, start %.2f, answering %.2f" % (
                stopping, stopped, starting, back
            )
            problems = []
            if not [r for r in runs if r[2] < stopping]:
                problems.append("no handshake ended before the stop")
            if not [r for r in runs if r[1] >= stopped and r[2] <= starting]:
                problems.append("no handshake ran while the service was down")
            for number, began, ended, status in runs:
                output = outputs.get(number)
                if output is None:
                    problem = "its output file is missing"
                elif began >= stopped and ended <= starting:
                    # Wholly while the service was down: it fails closed, and says why.
                    problem = self.clean_failure_problem(status, output)
                    reach = "parsec-se-driver: cannot reach the Parsec service at %s" % PARSEC_SOCKET
                    if problem is None and reach not in output:
                        problem = "no %r line" % reach
                elif ended < stopping or began > back or status == 0:
                    # Wholly before the stop, after the service answered again, or a pass.
                    problem = self.handshake_problem(status, output)
                else:
                    # Around the stop or the start: a clean failure with the driver's line.
                    problem = self.clean_failure_problem(status, output)
                    if problem is None and not DRIVER_LINE.search(output):
                        problem = "no line of the driver saying why"
                if problem is not None:
                    problems.append(
                        "#%d (%.2f-%.2f, status %d): %s\n    %s"
                        % (number, began, ended, status, problem,
                           (output or "").strip().replace("\n", "\n    "))
                    )
            if problems:
                # The timeline first, the problems last: a truncated log keeps what failed.
                self.fail("timeline:\n%s\n%d problem(s):\n%s"
                          % (timeline, len(problems), "\n".join(problems)))
            self.run_ok("systemctl is-active %s" % unit)
            keys = self.run_ok(other + "parsec-tool list-keys")
            self.assertIn("validation-other-app", keys)
        finally:
            self.target.run("touch %s/stop" % RESTART_DIR)
            self.target.run("systemctl start %s" % unit)
            if loop:
                self.target.run("kill %s 2>/dev/null; true" % loop)
            self.stop_server()
            self.target.run(other + "parsec-tool delete-key -k validation-other-app")
            self.target.run("rm -rf %s" % RESTART_DIR)

    def handshakes(self):
        """The loop's handshakes so far: (number, start, end, status), uptime in seconds."""
        status, output = self.target.run("cat %s/index" % RESTART_DIR)
        runs = []
        for line in output.splitlines() if status == 0 else []:
            number, began, ended, code = line.split()
            runs.append((int(number), float(began), float(ended), int(code)))
        return runs

    def wait_for_handshakes(self, condition, what, seconds=240):
        deadline = time.time() + seconds
        while not condition(self.handshakes()):
            if time.time() > deadline:
                self.fail("%s did not happen within %d s: %s" % (what, seconds, self.handshakes()))
            time.sleep(1)

    def handshake_outputs(self):
        """Every handshake's output, read in one command (its status checked): {number: text}."""
        dump = self.run_ok(
            'cd %s && for f in *.out; do echo "=== restart-output ${f%%.out} ==="; cat "$f"; done'
            % RESTART_DIR
        )
        parts = re.split(r"^=== restart-output (\d+) ===\n?", dump + "\n", flags=re.M)
        return {int(number): text for number, text in zip(parts[1::2], parts[2::2])}

    def clean_failure_problem(self, status, output):
        """What keeps ``output`` from being a failed handshake that says so (not killed, not
        timed out, no crash), or None. The driver's lines on stderr come between the step and
        its "failed" on stdout."""
        if not 0 < status < 124:
            return "exit status %d: not a clean failure" % status
        if ". Performing the SSL/TLS handshake..." not in output:
            return "it did not reach the handshake"
        if not HANDSHAKE_FAILED.search(output):
            return "no 'mbedtls_ssl_handshake returned' failure"
        if "Segmentation fault" in output:
            return "a crash"
        if ". Verifying peer X.509 certificate... ok" in output:
            return "it verified the peer although it failed"
        return None


# --- TLS 1.3, and mutual TLS with a client key made in the RSE ---------------------------------

PKI_DIR = "/tmp/parsec-demo-pki"
KEY_DIR = "/tmp/parsec-demo-client-key"
#: The client's persistent PSA key id, and the name the tool gives for it in Parsec.
CLIENT_KEY_ID = 1
PARSEC_KEY_NAME = re.compile(r"is the Parsec key (\S+)")
MTLS_SERVER = (
    "ssl_server2 server_port=4433 auth_mode=required ca_file={pki}/client-ca.pem "
    "crt_file={pki}/server.pem key_file={pki}/server.key"
).format(pki=PKI_DIR)


class Tls13Test(ParsecDemoCase):
    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OETimeout(300)
    def test_tls13_handshake(self):
        """ssl_client1 with force_version=tls13: the CA's signature on the server certificate
        and the server's CertificateVerify (RSA-PSS) are both checked in the RSE."""
        self.start_server()
        try:
            with RseLogWindow(self.target) as rse:
                status, output = self.run_client(options="force_version=tls13")
            self.assert_handshake(status, output)
            self.assertIn("[ Protocol is TLSv1.3 ]", output)
            if rse.available:
                calls = rse_calls(rse.text)
                check_evidence(self, calls, 2, rse.text)
                algs = [c[2] for c in calls if c[0] == "psa_verify_hash"]
                if calls:
                    self.assertTrue(algs[1].startswith("RSA_PSS("), algs)
        finally:
            self.stop_server()


class MutualTlsTest(ParsecDemoCase):
    """The client's key pair made in the RSE (parsec_client_key: PsaGenerateKey), its
    certificate issued by the test PKI's client CA (cert_write) from a CSR signed in the RSE,
    and each handshake's client signature made there (psa_sign_hash)."""

    def install_pki(self):
        self.run_ok("rm -rf %s %s && mkdir -p %s %s" % (PKI_DIR, KEY_DIR, PKI_DIR, KEY_DIR))
        for name in ("ca.pem", "server.pem", "server.key", "client-ca.pem", "client-ca.key"):
            self.target.copyTo(os.path.join(FILES, name), "%s/%s" % (PKI_DIR, name))

    def in_key_dir(self, command, timeout=150):
        return self.target.run("cd %s && %s" % (KEY_DIR, command), timeout)

    def provision(self, key_id, cert):
        """Key ``key_id`` and its certificate ``cert``; its name in Parsec."""
        output = self.run_ok(
            "cd %s && parsec_client_key generate key_id=%d csr_file=client.csr" % (KEY_DIR, key_id)
        )
        self.run_ok(
            "cd %s && cert_write request_file=client.csr issuer_crt=%s/client-ca.pem "
            "issuer_key=%s/client-ca.key output_file=%s serial=%d "
            "not_before=20261101000000 not_after=20461027000000"
            % (KEY_DIR, PKI_DIR, PKI_DIR, cert, key_id)
        )
        match = PARSEC_KEY_NAME.search(output)
        self.assertIsNotNone(match, output)
        return match.group(1)

    def client(self, cert, key_id, options=""):
        return self.in_key_dir(
            "timeout 120 ssl_client1 127.0.0.1 %s/ca.pem crt_file=%s key_id=%d %s"
            % (PKI_DIR, cert, key_id, options)
        )

    def cleanup(self, *key_ids):
        self.stop_server()
        for key_id in key_ids:
            self.in_key_dir("parsec_client_key destroy key_id=%d" % key_id)
        self.target.run("rm -rf %s %s" % (PKI_DIR, KEY_DIR))

    def assert_refused(self, status, output):
        self.assertNotEqual(status, 0, output)
        # The driver's line on stderr may come between the step and its "failed" on stdout.
        self.assertIn(". Performing the SSL/TLS handshake...", output)
        self.assertRegex(output, HANDSHAKE_FAILED)
        self.assertNotIn("<h2>Mbed TLS Test Server</h2>", output)
        log = ""
        for _ in range(50):  # the server may learn that the client gave up a little later
            log = self.server_log()
            if "Performing the SSL/TLS handshake... failed" in log:
                break
            time.sleep(0.2)
        self.assertIn("Performing the SSL/TLS handshake... failed", log)
        self.assertNotIn("Performing the SSL/TLS handshake... ok", log)

    @OETestDepends(["parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host"])
    @OEHasPackage(["parsec-mbedtls-demo"])
    @OETimeout(600)
    def test_mutual_tls_with_a_key_made_in_the_rse(self):
        """One psa_generate_key at provisioning; then one psa_sign_hash with that same key
        per handshake (TLS 1.2, then TLS 1.3); the key destroyed at the end."""
        self.install_pki()
        try:
            with RseLogWindow(self.target) as rse:
                self.provision(CLIENT_KEY_ID, "client.pem")
                self.start_server(MTLS_SERVER)
                outputs = []
                for options in ("", "force_version=tls13"):
                    status, output = self.client("client.pem", CLIENT_KEY_ID, options)
                    self.assert_handshake(status, output)
                    self.assertIn(". Loading the client certificate and key 1 ... ok", output)
                    outputs.append(output)
                self.assertIn("[ Protocol is TLSv1.2 ]", outputs[0])
                self.assertIn("[ Protocol is TLSv1.3 ]", outputs[1])
                self.run_ok("cd %s && parsec_client_key destroy key_id=%d" % (KEY_DIR, CLIENT_KEY_ID))
            if rse.available:
                calls = rse_calls(rse.text)
                if calls or not RSE_COMMS_CALL.search(rse.text):
                    self.check_client_key_evidence(calls, handshakes=2, text=rse.text)
                    record_rse_calls(self, "mutual_tls", calls)
        finally:
            self.cleanup()

    def check_client_key_evidence(self, calls, handshakes, text):
        generated = [c for c in calls if c[0] == "psa_generate_key"]
        self.assertEqual(len(generated), 1, "not one psa_generate_key:\n" + text)
        key = generated[0][1]
        signs = [c for c in calls if c[0] == "psa_sign_hash"]
        # The CSR's signature, then one per handshake: all by that key, all successful.
        self.assertEqual([(c[1], c[3]) for c in signs], [(key, "PSA_SUCCESS")] * (1 + handshakes),
                         "the client key's signatures:\n" + text)
        self.assertIn(("psa_destroy_key", key, None, "PSA_SUCCESS"), calls, text)
        self.assertFalse([c for c in calls if c[0] == "psa_export_key"], text)

    @OETestDepends(["parsec_tls_demo.MutualTlsTest.test_mutual_tls_with_a_key_made_in_the_rse"])
    @OETimeout(600)
    def test_a_certificate_for_another_key_is_refused(self):
        self.install_pki()
        try:
            self.provision(1, "client-1.pem")
            self.provision(2, "client-2.pem")
            self.start_server(MTLS_SERVER)
            status, output = self.client("client-1.pem", 2)
            self.assert_refused(status, output)
        finally:
            self.cleanup(1, 2)

    @OETestDepends(["parsec_tls_demo.MutualTlsTest.test_mutual_tls_with_a_key_made_in_the_rse"])
    @OETimeout(600)
    def test_a_destroyed_key_is_refused(self):
        """The key destroyed through Parsec behind the client's back (as the same application,
        by parsec-tool): the client still has its certificate, tries, and fails closed."""
        self.install_pki()
        try:
            name = self.provision(CLIENT_KEY_ID, "client.pem")
            self.run_ok("parsec-tool delete-key -k %s" % name)
            self.start_server(MTLS_SERVER)
            status, output = self.client("client.pem", CLIENT_KEY_ID)
            self.assert_refused(status, output)
            self.assertIn("parsec-se-driver: the Parsec service at", output)
        finally:
            self.cleanup()

