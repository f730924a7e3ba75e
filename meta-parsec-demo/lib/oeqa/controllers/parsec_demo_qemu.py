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
    of the recipe whose boot log this is) through ``parsec_demo_rse``, the launcher the toolkit
    uses too, with its socket, key store, console log and JSON
    events in a directory of this run beside testimage's boot log (``<bootlog>.rse/``), waits
    until its socket accepts connections, adds the ``-chardev``/``-device`` options of the
    ``rse`` port to ``params`` (TEST_QEMUPARAMS) and boots through OEQemuTarget. A boot that
    fails leaves no model running.
stop()
    OEQemuTarget's stop, then the model: SIGTERM, SIGKILL if it has not gone within
    ``parsec_demo_rse.STOP_GRACE`` seconds. testimage calls it in its ``finally`` and
    OEQemuTarget calls it after a failed boot: calling it again, or before start, does nothing.
rse_log
    The model's console log (a path string) once ``start`` has begun, else None: the cases read
    the part written while a handshake ran (``getattr(self.target, "rse_log", None)``).

Only poky's oeqa, the standard library and this layer's ``lib/`` are imported here (under
testimage the project's toolkit is not importable), in Python that the build host's python3 runs.
"""

import os
import shutil
import tempfile

from oeqa.core.target.qemu import OEQemuTarget
from parsec_demo_processes import StartError
from parsec_demo_rse import RSE_MODEL, RseFiles, RseModel, qemu_options

#: The recipe that puts the RSE model's executable into the native sysroot.
RSE_MODEL_RECIPE = "parsec-demo-rse-model-native"


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
            params = " ".join(p for p in (params, " ".join(qemu_options(self.rse_socket))) if p)
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
        files = RseFiles(self.rse_run_dir())
        files.make_socket_path_fit()  # a deep TMPDIR: the socket goes elsewhere
        self.rse_process = RseModel(files, [self.find_rse_model()])
        self.rse_dir, self.rse_socket = files.directory, files.socket
        self.rse_log = files.console_log
        self.logger.info("Starting the RSE model: %s" % " ".join(self.rse_process.command))
        try:
            self.rse_process.start()
        except StartError as exc:
            raise RseModelError(str(exc)) from None
        self.logger.info(
            "RSE model up (pid %d); its console log: %s" % (self.rse_process.pid, self.rse_log)
        )

    def stop_rse_model(self):
        model, self.rse_process = self.rse_process, None
        if model is not None:
            status = model.stop()
            self.logger.info("RSE model stopped (status %s)" % status)
