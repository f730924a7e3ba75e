#
# SPDX-License-Identifier: MIT
#
"""Mutual TLS with a client key that never leaves the RSE.

The client's key pair is made in the RSE (parsec_client_key: PsaGenerateKey), its certificate
issued by the test PKI's client CA (cert_write) from a CSR signed in the RSE, and each
handshake's client signature made there (psa_sign_hash). A certificate for another key, and a
key destroyed behind the client's back, are refused."""

import shlex
import time

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine
from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.decorator.package import OEHasPackage
from oeqa.runtime.parsec_demo_case import ParsecDemoCase, RseConsole

KEY_DIR = machine.MACHINE_KEY_DIR
PKI = machine.MACHINE_PKI
MUTUAL_TLS = "parsec_demo_mutual_tls.MutualTlsTest.test_mutual_tls_with_a_key_made_in_the_rse"


class MutualTlsTest(ParsecDemoCase):
    def prepare(self):
        self.install_pki()
        self.run_ok("rm -rf %s && mkdir -p %s" % (KEY_DIR, KEY_DIR))

    def in_key_dir(self, argv, timeout=150):
        return self.target.run("cd %s && %s" % (KEY_DIR, shlex.join(argv)), timeout)

    def provision(self, key_id, cert):
        """Key ``key_id`` and its certificate ``cert``; its name in Parsec."""
        status, output = self.in_key_dir(machine.provision_command(key_id))
        self.assertEqual(status, 0, output)
        status, issued = self.in_key_dir(machine.issue_command(PKI, key_id, cert))
        self.assertEqual(status, 0, issued)
        match = machine.PARSEC_KEY_NAME.search(output)
        self.assertIsNotNone(match, output)
        return match.group(1)

    def client(self, cert, key_id, tls13=False):
        argv = machine.mutual_tls_client("%s/ca.pem" % PKI, key_id, tls13, cert=cert)
        return self.in_key_dir(["timeout", "120", *argv])

    def cleanup(self, *key_ids):
        self.stop_server()
        for key_id in key_ids:
            self.in_key_dir(machine.destroy_command(key_id))
        self.target.run("rm -rf %s %s" % (PKI, KEY_DIR))

    def assert_refused(self, status, output):
        self.assertNotEqual(status, 0, output)
        # The driver's line on stderr may come between the step and its "failed" on stdout.
        self.assertIn(". Performing the SSL/TLS handshake...", output)
        self.assertRegex(output, machine.HANDSHAKE_FAILED)
        self.assertNotIn("<h2>Mbed TLS Test Server</h2>", output)
        log = ""
        for _ in range(50):  # the server may learn that the client gave up a little later
            log = self.server_log()
            if "Performing the SSL/TLS handshake... failed" in log:
                break
            time.sleep(0.2)
        self.assertIn("Performing the SSL/TLS handshake... failed", log)
        self.assertNotIn("Performing the SSL/TLS handshake... ok", log)

    @OETestDepends(["parsec_demo_handshake.TlsHandshakeTest.test_handshake_on_the_host"])
    @OEHasPackage(["parsec-mbedtls-demo"])
    @OETimeout(600)
    def test_mutual_tls_with_a_key_made_in_the_rse(self):
        """One psa_generate_key at provisioning; then one psa_sign_hash with that same key
        per handshake (TLS 1.2, then TLS 1.3); the key destroyed at the end."""
        self.prepare()
        key = machine.CLIENT_KEY_ID
        try:
            with RseConsole(self.target) as rse:
                self.provision(key, machine.CERT_FILE)
                self.start_server(machine.mutual_tls_server(PKI))
                outputs = []
                for tls13 in (False, True):
                    status, output = self.client(machine.CERT_FILE, key, tls13)
                    self.assert_handshake(status, output)
                    self.assertIn(machine.CLIENT_KEY_LOADED % key, output)
                    outputs.append(output)
                self.assertIn(machine.PROTOCOL_LINE % "TLSv1.2", outputs[0])
                self.assertIn(machine.PROTOCOL_LINE % "TLSv1.3", outputs[1])
                status, output = self.in_key_dir(machine.destroy_command(key))
                self.assertEqual(status, 0, output)
            if rse.available and not rse.only_comms_traces():
                problem = evidence.client_key_problem(rse.calls, handshakes=2)
                self.assertIsNone(problem, rse.text)
                self.record_rse_calls("mutual_tls", rse.calls)
        finally:
            self.cleanup()

    @OETestDepends([MUTUAL_TLS])
    @OETimeout(600)
    def test_a_certificate_for_another_key_is_refused(self):
        self.prepare()
        try:
            self.provision(1, "client-1.pem")
            self.provision(2, "client-2.pem")
            self.start_server(machine.mutual_tls_server(PKI))
            status, output = self.client("client-1.pem", 2)
            self.assert_refused(status, output)
        finally:
            self.cleanup(1, 2)

    @OETestDepends([MUTUAL_TLS])
    @OETimeout(600)
    def test_a_destroyed_key_is_refused(self):
        """The key destroyed through Parsec behind the client's back (as the same application,
        by parsec-tool): the client still has its certificate, tries, and fails closed."""
        self.prepare()
        try:
            name = self.provision(machine.CLIENT_KEY_ID, machine.CERT_FILE)
            self.run_ok("parsec-tool delete-key -k %s" % name)
            self.start_server(machine.mutual_tls_server(PKI))
            status, output = self.client(machine.CERT_FILE, machine.CLIENT_KEY_ID)
            self.assert_refused(status, output)
            self.assertIn(machine.REFUSED, output)
        finally:
            self.cleanup()
