#
# SPDX-License-Identifier: MIT
#
"""testimage controller for QEMU machines: poky's OEQemuTarget with the RSE model beside it.

TEST_TARGET = "ParsecDemoQemuTarget" (kas/testimage.yml, for every QEMU machine). On the real
hardware the RSE is a security processor beside the application cores; under QEMU the project's
model of its crypto service plays that part on the build host, and the machine reaches it
through the virtio-serial port ``rse`` (``/dev/virtio-ports/rse``), exactly as
``./tools/run-fvp`` attaches it. runqemu cannot start a host-side service, so this controller
does, around OEQemuTarget's own boot:

start(params, runqemuparams)
    Starts ``parsec-demo-rse-model`` (installed into the native sysroot by the layer's
    ``parsec-demo-rse-model-native``; found on PATH, as runqemu is, or else in the native sysroot
    of the recipe whose boot log this is) with its socket, key store, console log and JSON
    events in a directory of this run beside testimage's boot log (``<bootlog>.rse/``), waits
    until its socket accepts connections, adds the ``-chardev``/``-device`` options of the
    ``rse`` port to ``params`` (TEST_QEMUPARAMS) and boots through OEQemuTarget. A boot that
    fails leaves no model running.
stop()
    OEQemuTarget's stop, then the model: SIGTERM, SIGKILL if it has not gone within
    ``RSE_STOP_GRACE`` seconds. testimage calls it in its ``finally`` and OEQemuTarget calls it
    after a failed boot: calling it again, or before start, does nothing.
rse_log
    The model's console log (a path string) once ``start`` has begun, else None: the cases read
    the part written while a handshake ran (``getattr(self.target, "rse_log", None)``).

Only poky's oeqa and the standard library are imported here (under testimage the project's
toolkit is not importable), in Python that the build host's python3 runs.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from oeqa.core.target.qemu import OEQemuTarget

#: The RSE model's executable, and the recipe that puts it into the native sysroot.
RSE_MODEL = "parsec-demo-rse-model"
RSE_MODEL_RECIPE = "parsec-demo-rse-model-native"
#: Seconds the model may take to accept connections, and to stop after SIGTERM.
RSE_START_TIMEOUT = 30
RSE_STOP_GRACE = 10
#: Longest Unix socket path the kernel (and QEMU) accept, less a margin.
SOCKET_PATH_MAX = 100


def rse_qemu_params(socket_path, virtio_serial="virtio-serial-pci"):
    """QEMU's options for the ``rse`` virtio-serial port on the model's socket (QEMU connects,
    and reconnects within a second if the model restarts): the same as run-fvp's."""
    return (
        "-chardev socket,id=rse,path=%s,reconnect=1 "
        "-device %s,id=vser0 "
        "-device virtserialport,bus=vser0.0,chardev=rse,name=rse" % (socket_path, virtio_serial)
    )


class RseModelError(RuntimeError):
    pass


class ParsecDemoQemuTarget(OEQemuTarget):
    """OEQemuTarget with the RSE model started before QEMU and stopped after it."""

    def __init__(self, logger, target_ip, server_ip, **kwargs):
        # testimage calls a named controller as (logger, target_ip, server_ip, **kwargs);
        # OEQemuTarget takes no target_ip: under slirp runqemu's forwarded port says where the
        # machine is, otherwise QemuRunner reads the address from QEMU's command line.
        super().__init__(logger, server_ip, **kwargs)
        self.rse_log = None
        self.rse_dir = None
        self.rse_socket = None
        self.rse_process = None
        self._socket_dir = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, params=None, extra_bootparams=None, runqemuparams=""):
        try:
            self.start_rse_model()
            params = " ".join(p for p in (params, rse_qemu_params(self.rse_socket)) if p)
            super().start(
                params=params, extra_bootparams=extra_bootparams, runqemuparams=runqemuparams
            )
        except BaseException:
            self.stop()
            raise

    def stop(self):
        try:
            # QemuRunner.stop() is not safe twice (it kills its monitor process again): only
            # while runqemu has not been stopped. Before start there is nothing it would do.
            if not self.runner.runqemu_exited:
                super().stop()
        finally:
            self.stop_rse_model()

    # --- the RSE model ------------------------------------------------------------------------

    def find_rse_model(self):
        """The model's executable: on PATH, else in the native sysroot beside the boot log's
        directory (``<WORKDIR>/recipe-sysroot-native/usr/bin``, where qemurunner also looks for
        QEMU's qmp package)."""
        search = [os.environ.get("PATH", os.defpath)]
        if self.bootlog:
            workdir = os.path.dirname(os.path.dirname(os.path.abspath(self.bootlog)))
            search.append(os.path.join(workdir, "recipe-sysroot-native", "usr", "bin"))
        found = shutil.which(RSE_MODEL, path=os.pathsep.join(search))
        if found is None:
            raise RseModelError(
                "%s is not on PATH nor in the native sysroot: the RSE model comes from the build "
                "(bitbake %s; the image recipe's do_testimage depends on it)"
                % (RSE_MODEL, RSE_MODEL_RECIPE)
            )
        return found

    def rse_run_dir(self):
        """This run's directory for the model's files: beside testimage's boot log."""
        if self.bootlog:
            return os.path.abspath(self.bootlog) + ".rse"
        return tempfile.mkdtemp(prefix="parsec-demo-rse-")

    def start_rse_model(self):
        executable = self.find_rse_model()
        self.rse_dir = self.rse_run_dir()
        os.makedirs(self.rse_dir, exist_ok=True)
        self.rse_socket = os.path.join(self.rse_dir, "rse.sock")
        if len(self.rse_socket) > SOCKET_PATH_MAX:  # a deep TMPDIR: the socket goes elsewhere
            self._socket_dir = tempfile.mkdtemp(prefix="parsec-demo-rse-")
            self.rse_socket = os.path.join(self._socket_dir, "rse.sock")
        self.rse_log = os.path.join(self.rse_dir, "rse-console.log")
        process_log = os.path.join(self.rse_dir, "rse-process.log")
        command = [
            executable,
            "--socket", self.rse_socket,
            "--store", os.path.join(self.rse_dir, "rse-store"),
            "--log", self.rse_log,
            "--events", os.path.join(self.rse_dir, "rse-events.jsonl"),
        ]  # fmt: skip
        self.logger.info("Starting the RSE model: %s" % " ".join(command))
        with open(process_log, "ab") as output:
            self.rse_process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        deadline = time.monotonic() + RSE_START_TIMEOUT
        while not self._rse_socket_accepts():
            if self.rse_process.poll() is not None:
                raise RseModelError(
                    "the RSE model exited with status %d during start-up:\n%s\n(log %s)"
                    % (self.rse_process.returncode, _tail(process_log), process_log)
                )
            if time.monotonic() > deadline:
                raise RseModelError(
                    "the RSE model did not accept connections on %s within %d s (log %s)"
                    % (self.rse_socket, RSE_START_TIMEOUT, process_log)
                )
            time.sleep(0.05)
        self.logger.info(
            "RSE model up (pid %d); its console log: %s" % (self.rse_process.pid, self.rse_log)
        )

    def _rse_socket_accepts(self):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.rse_socket)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def stop_rse_model(self):
        process, self.rse_process = self.rse_process, None
        if process is not None:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
                try:
                    process.wait(timeout=RSE_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.logger.warning(
                        "the RSE model ignored SIGTERM for %d s: killing it" % RSE_STOP_GRACE
                    )
                    _signal_group(process, signal.SIGKILL)
                    process.wait()
            self.logger.info("RSE model stopped (status %s)" % process.returncode)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None


def _signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def _tail(path, lines=20):
    try:
        with open(path, errors="replace") as log:
            return "".join(log.readlines()[-lines:]).rstrip()
    except OSError:
        return ""
