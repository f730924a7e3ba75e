#
# SPDX-License-Identifier: MIT
#
"""The base of the layer's oeqa cases for the Parsec-enabled TLS demo (``parsec_demo_*``).

The steps on the machine and the checks of their output come from ``parsec_demo_machine``, the
RSE's evidence from ``parsec_demo_evidence`` (this layer's ``lib/``): the same code the
parsec-demo toolkit and the LAVA test definition use.

The evidence that the RSE served a handshake is in the RSE's console log on the host (the RSE
model's console on QEMU, the FVP's "rse" console): the target object names it, as
``target.rse_log`` (a path string, or None when the machine has no RSE log), set by the layer's
controllers (ParsecDemoQemuTarget, ParsecDemoFVPTarget) and by the toolkit's SSH target. A case
that needs it is reported skipped, with the reason, on a machine without that log.
"""

import os

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine
from oeqa.runtime.case import OERuntimeTestCase

#: The layer's test PKI: the server's certificate and key and the CA that issued them, and the
#: client CA with its (public, test-only) key.
PKI = os.path.join(os.path.dirname(__file__), "files", "parsec_tls_demo")
#: Seconds the RSE's console must stay unchanged before a window closes (the RSE writes its
#: last lines after replying; the FVP's console reaches its log through telnet).
RSE_LOG_QUIET = 1.0


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


class RseConsole(evidence.LogWindow):
    """The part of the RSE's console written during a with-block; ``available`` is false on a
    machine without one (its ``calls`` are then empty)."""

    def __init__(self, target):
        self.available = missing_rse_log(target) is None
        super().__init__(rse_log_path(target) or os.devnull, quiet=RSE_LOG_QUIET)

    def close(self):
        return super().close() if self.available else ""

    @property
    def calls(self):
        return evidence.console_calls(self.text)

    def only_comms_traces(self):
        """The firmware logs only RSE comms traces (TF-M's debug level, no crypto lines)."""
        return not self.calls and evidence.comms_calls(self.text) > 0


class ParsecDemoCase(OERuntimeTestCase):
    def run_ok(self, command, timeout=120):
        status, output = self.target.run(command, timeout)
        self.assertEqual(status, 0, "%s failed (%s):\n%s" % (command, status, output))
        return output

    def service_unit(self):
        for unit in machine.PARSEC_UNITS:
            if self.target.run("systemctl cat %s" % unit)[0] == 0:
                return unit
        self.fail("no Parsec service unit on the machine")

    def unit_state_after_start(self, unit, timeout=120):
        output = self.target.run(machine.unit_state_command(unit, timeout), timeout + 30)[1]
        return machine.unit_state(output)

    def run_client(self, argv=None, timeout=120):
        """ssl_client1 (``argv``, the local server by default) from a fresh directory."""
        command = machine.in_fresh_directory(argv or machine.client_command(), timeout)
        return self.target.run(command, timeout + 30)

    def assert_handshake(self, status, output):
        problem = machine.handshake_problem(status, output)
        if problem is not None:
            self.fail("%s:\n%s" % (problem, output))

    def assert_evidence(self, rse, signatures):
        """The RSE's console shows ``signatures`` verifications (or, from a firmware that logs
        only its comms traces, enough crypto calls for them)."""
        if rse.only_comms_traces():
            problem = evidence.comms_problem(rse.text, signatures)
        else:
            problem = evidence.verification_problem(rse.calls, signatures)
        if problem is not None:
            self.fail("%s:\n%s" % (problem, rse.text))

    def record_rse_calls(self, name, calls):
        """The RSE calls into the run's results (oeqa's extraresults), for the report."""
        if not hasattr(self.tc, "extraresults"):
            self.tc.extraresults = {}
        self.tc.extraresults[evidence.RESULT_PREFIX + name] = evidence.result_entry(calls)

    def start_server(self, argv=None):
        """The TLS server (``ssl_server`` by default) in the background, listening: the SSH
        session stays free."""
        status, output = self.target.run(machine.start_server_command(argv or ["ssl_server"]), 60)
        self.assertEqual(status, 0, "the TLS server did not start:\n%s" % output)

    def stop_server(self):
        self.target.run(machine.STOP_SERVER)

    def server_log(self):
        return self.target.run("cat %s" % machine.SERVER_LOG)[1]

    def install_pki(self, names=machine.PKI_FILES, directory=machine.MACHINE_PKI):
        """The test PKI's ``names`` in ``directory`` on the machine (made afresh)."""
        self.run_ok("rm -rf %s && mkdir -p %s" % (directory, directory))
        for name in names:
            self.target.copyTo(os.path.join(PKI, name), "%s/%s" % (directory, name))
