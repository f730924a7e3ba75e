#
# SPDX-License-Identifier: MIT
#
"""testimage controller for the RD-1 AE FVP: meta-arm's OEFVPTarget, plus the RSE's console log.

TEST_TARGET = "ParsecDemoFVPTarget" (kas/rd1ae-overlay.yml, for Arm's fvp-rd-kronos).
meta-arm's OEFVPTarget (scarthgap: lib/oeqa/controllers/fvp.py) boots the FVP from the image's
.fvpconf on the first command, opens one telnet session (pexpect) per console the .fvpconf
names and logs each to ``<alias>_log.<DATETIME>`` beside testimage's boot log. A pexpect
session only reads, and so only logs, while someone calls ``expect`` on it; nobody does on the
RSE's console, so its log would stay empty and, once the terminal's buffer is full, the FVP
may stall on that UART.

This controller keeps reading the RSE console (alias ``rse``) in a thread from the moment the
consoles open until the FVP stops, so that its log grows while the cases run, and tells the
cases where that log is: ``target.rse_log``, a path string, or None when the machine has no RSE
console or no log of it. The cases (lib/oeqa/runtime/cases/parsec_demo_*.py) read the part
of that log written during a handshake: the evidence that the RSE served it.

testimage imports every oeqa/controllers/*.py it finds until one defines the TEST_TARGET class,
and an ImportError in any of them ends that search. In a build without meta-arm (the QEMU
machines) this module therefore imports cleanly and defines no ParsecDemoFVPTarget.
"""

import json
import logging
import threading

try:
    from oeqa.controllers.fvp import OEFVPTarget, OEFVPTargetState
except ImportError:  # no meta-arm in this build: no FVP controller either
    OEFVPTarget = None

#: The .fvpconf console alias of the RSE's UART: fvp-rd-kronos's FVP_CONSOLES[rse], the FVP
#: terminal terminal_rse_uart (run-fvp and the LAVA jobs read it by the same alias).
RSE_CONSOLE = "rse"
#: Bytes per read, and seconds a read waits before the drain checks whether to stop.
READ_SIZE = 4096
READ_WAIT = 0.5


class ConsoleDrain(threading.Thread):
    """Reads a pexpect session until it ends or :meth:`stop` is called; pexpect writes what it
    reads to the session's log file. The session must not be read by anyone else meanwhile."""

    def __init__(self, session, name, logger=None):
        super().__init__(name="drain-%s-console" % name, daemon=True)
        self.session = session
        self.console = name
        self.logger = logger or logging.getLogger(__name__)
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        import pexpect

        while not self.stopping.is_set():
            try:
                self.session.read_nonblocking(READ_SIZE, timeout=READ_WAIT)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                self.logger.debug("the %s console closed", self.console)
                return
            except Exception as exc:  # noqa: BLE001 - a dead drain must say why, not vanish
                self.error = exc
                self.logger.warning("stopped reading the %s console: %s", self.console, exc)
                return

    def stop(self, timeout=10.0):
        self.stopping.set()
        self.join(timeout)
        if self.is_alive():
            self.logger.warning("the %s console reader did not stop within %d s", self.console,
                                timeout)


def console_aliases(fvpconf):
    """The console aliases a .fvpconf names (its ``consoles``: alias -> terminal)."""
    with open(str(fvpconf)) as conf:
        return dict(json.load(conf).get("consoles") or {})


if OEFVPTarget is not None:

    class ParsecDemoFVPTarget(OEFVPTarget):
        """OEFVPTarget whose RSE console is read all along and whose log the cases can find."""

        def __init__(self, logger, target_ip, server_ip, **kwargs):
            # Before super().__init__: OEFVPTarget answers unknown attributes with pexpect calls.
            self.rse_drain = None
            super().__init__(logger, target_ip, server_ip, **kwargs)
            self.has_rse_console = RSE_CONSOLE in console_aliases(self.fvpconf)
            if not self.has_rse_console:
                self.logger.info("%s names no %r console: the cases will find no RSE log",
                                 self.fvpconf, RSE_CONSOLE)

        @property
        def rse_log(self):
            """The RSE console's log file (a path string) while the FVP runs, else None."""
            session = self.terminals.get(RSE_CONSOLE) if self.has_rse_console else None
            logfile = getattr(session, "logfile", None) if session is not None else None
            name = getattr(logfile, "name", None)
            return name if isinstance(name, str) else None

        def _setup_consoles(self):
            super()._setup_consoles()
            session = self.terminals.get(RSE_CONSOLE)
            if session is not None:
                self.rse_drain = ConsoleDrain(session, RSE_CONSOLE, self.logger)
                self.rse_drain.start()
                self.logger.info("logging the %s console to %s", RSE_CONSOLE, self.rse_log)

        def transition(self, state, timeout=10 * 60):
            # The FVP's runner reads each console to its end when it stops: the drain goes first.
            if state == OEFVPTargetState.OFF and self.rse_drain is not None:
                self.rse_drain.stop()
                self.rse_drain = None
            super().transition(state, timeout)
