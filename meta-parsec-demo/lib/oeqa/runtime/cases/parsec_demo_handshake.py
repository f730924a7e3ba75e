#
# SPDX-License-Identifier: MIT
#
"""The TLS handshake on the machine, its asymmetric operations served by the RSE: ssl_client1
directly and in the client container, TLS 1.2 and 1.3, and a corrupted certificate refused.

Each test leaves the machine as it found it: servers stopped, containers removed."""

import base64
import os
import tempfile

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine
from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.decorator.package import OEHasPackage
from oeqa.runtime.parsec_demo_case import PKI, ParsecDemoCase, RseConsole, missing_rse_log

HANDSHAKE = "parsec_demo_handshake.TlsHandshakeTest.test_handshake_on_the_host"


class TlsHandshakeTest(ParsecDemoCase):
    @OETestDepends(["parsec_demo_service.ParsecServiceTest.test_ping"])
    @OEHasPackage(["parsec-mbedtls-demo"])
    @OETimeout(300)
    def test_handshake_on_the_host(self):
        self.start_server()
        try:
            self.run_ok("ss -ltnH 'sport = :%d' | grep -q %d" % (machine.TLS_PORT, machine.TLS_PORT))
            status, output = self.run_client()
            self.assert_handshake(status, "%s\n--- server log ---\n%s" % (output, self.server_log()))
        finally:
            self.stop_server()

    @OETestDepends([HANDSHAKE])
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
            with RseConsole(self.target) as rse:
                status, output = self.run_client()
            self.assert_handshake(status, output)
            # The server certificate (signed by the test CA) and ServerKeyExchange.
            self.assert_evidence(rse, 2)
            self.record_rse_calls("handshake", rse.calls)
        finally:
            self.stop_server()

    @OETestDepends([HANDSHAKE])
    @OEHasPackage(["podman"])
    @OETimeout(600)
    def test_handshake_in_a_container(self):
        """ssl_client1 in the client container the image ships (its OCI archive, loaded into
        podman at boot: no registry, no network), the Parsec socket's directory bind-mounted
        and the server reached through the host's network; the same container without the
        socket mounted fails closed with the driver's one-line error."""
        container = machine.ClientContainerSteps.of_layer()
        self.run_ok(container.loaded_command(), 330)
        self.start_server()
        try:
            with RseConsole(self.target) as rse:
                status, output = self.target.run(container.run(machine.client_command()), 300)
            self.assert_handshake(status, output)
            if rse.available:
                self.assert_evidence(rse, 2)
            status, output = self.target.run(
                container.run(machine.client_command(), mount_parsec=False), 300
            )
            self.assertNotEqual(status, 0, "succeeded without the Parsec socket:\n" + output)
            self.assertIn(machine.CANNOT_REACH, output)
            self.assertNotIn(". Verifying peer X.509 certificate... ok", output)
        finally:
            self.stop_server()
        left = self.target.run(container.left_command())[1].strip()
        self.assertEqual(left, "", "containers left behind")

    @OETestDepends([HANDSHAKE])
    @OETimeout(300)
    def test_tls13_handshake(self):
        """ssl_client1 with force_version=tls13: the CA's signature on the server certificate
        and the server's CertificateVerify (RSA-PSS) are both checked in the RSE."""
        self.start_server()
        try:
            with RseConsole(self.target) as rse:
                status, output = self.run_client(
                    machine.client_command(options=machine.version_options(tls13=True))
                )
            self.assert_handshake(status, output)
            self.assertIn(machine.PROTOCOL_LINE % "TLSv1.3", output)
            if rse.available:
                self.assert_evidence(rse, 2)
                algs = [c.alg for c in evidence.calls_of(rse.calls, "psa_verify_hash")]
                if algs:
                    self.assertTrue(algs[1].startswith("RSA_PSS("), algs)
        finally:
            self.stop_server()

    @OETestDepends([HANDSHAKE])
    @OETimeout(300)
    def test_a_corrupted_certificate_is_refused(self):
        """The server's certificate with a bit of its signature flipped: the RSE's verification
        fails, and so does the handshake."""
        self.install_pki(("ca.pem", "server.key"))
        self.install_corrupted_certificate()
        pki = machine.MACHINE_PKI
        self.start_server(
            ["ssl_server2", "crt_file=%s/server.pem" % pki, "key_file=%s/server.key" % pki,
             "server_port=%d" % machine.TLS_PORT]
        )  # fmt: skip
        try:
            with RseConsole(self.target) as rse:
                status, output = self.run_client(
                    machine.client_command(ca_file="%s/ca.pem" % pki)
                )
            self.assertNotEqual(status, 0, output)
            self.assertIn(". Performing the SSL/TLS handshake... failed", output)
            if rse.available:
                verified = evidence.calls_of(rse.calls, "psa_verify_hash")
                self.assertIn("PSA_ERROR_INVALID_SIGNATURE", [c.status for c in verified], rse.text)
        finally:
            self.stop_server()
            self.target.run("rm -rf %s" % pki)

    def install_corrupted_certificate(self):
        with open(os.path.join(PKI, "server.pem")) as pem:
            body = "".join(pem.read().strip().splitlines()[1:-1])
        der = bytearray(base64.b64decode(body))
        der[-10] ^= 0x01  # a bit of the signature; the certificate body stays intact
        encoded = base64.b64encode(bytes(der)).decode()
        lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
        text = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % "\n".join(lines)
        with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as out:
            out.write(text)
        try:
            self.target.copyTo(out.name, "%s/server.pem" % machine.MACHINE_PKI)
        finally:
            os.unlink(out.name)

