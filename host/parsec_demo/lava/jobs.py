"""LAVA job definitions for the validation on a test farm, made from what a build leaves.

- :func:`fvp_job`: the RD-1 AE FVP from its ``.fvpconf`` (meta-arm's fvpboot): every file the
  model loads that lies in the deploy directory becomes a deployed image (``to: fvp``) and the
  model's arguments name it by its label, as LAVA substitutes (``{LABEL}``); the model runs in
  the FVP docker image the settings name; the default console is found by its terminal's
  announcement (``console_string``) and the RSE's console is a feedback console, whose output
  LAVA records in the job log while the test runs.
- :func:`qemu_job`: a QEMU machine from a ``qemuboot.conf`` (the Yocto image's, or the dev
  image's that ``image build`` writes): kernel, initrd and root disk deployed to tmpfs, the
  machine's CPU, memory and kernel command line in the job. The RSE model runs beside QEMU on
  the dispatcher, started and stopped by the device dictionary's user commands
  (``lava/devices/``), and QEMU attaches its socket as the virtio-serial port ``rse``; the
  model's console log is printed into the job by a second user command after the test.

Both run the test definition ``lava/testdefs/parsec-tls-demo.yaml`` from this project's
repository. Settings (image URLs, docker image, timeouts, device type) come from a small YAML
file and ``--set`` (:class:`FarmSettings`); the output is a plain job dictionary, dumped as YAML
by the command line and checked with LAVA's own schema by ``parsec-demo lava check``.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from parsec_demo_rse import qemu_options

from ..client_container import ClientContainer
from ..errors import UserError
from ..machine.fvp import FvpConfig
from ..machine.qemu import QemuConfig
from ..paths import layer_module, project_root

#: The test definition every job runs, as a path in this project's repository.
TEST_DEFINITION = "lava/testdefs/parsec-tls-demo.yaml"
#: The login and shell prompts of both images (root logs in without a password on the console).
LOGIN_PROMPT = "login:"
SHELL_PROMPT = r"root@[^:\s]+:~#"
ANNOUNCEMENT = "Listening for serial connection on port (?P<PORT>\\d+)"


class SettingsError(UserError):
    pass


@dataclass
class FarmSettings:
    """What a farm and a pipeline decide about a job; each has a default but the URLs."""

    #: Where the deploy directory's files are served (each image is ``<images_url>/<name>``).
    images_url: str = ""
    device_type: str = ""
    job_name: str = ""
    #: The project repository LAVA clones the test definition from, and its revision.
    testdef_repository: str = ""
    testdef_revision: str = ""
    job_timeout_minutes: int = 120
    boot_timeout_minutes: int = 60
    test_timeout_minutes: int = 30
    priority: str = "medium"
    visibility: str = "public"
    tags: list[str] = field(default_factory=list)
    #: FVP: the docker image that holds the model, the model's path in it, and the licence
    #: variable LAVA passes to it (default: the .fvpconf's ARMLMD_LICENSE_FILE).
    fvp_docker: str = ""
    fvp_binary: str = ""
    fvp_license_variable: str = ""
    #: QEMU: the RSE model's socket on the dispatcher, and the device dictionary's user
    #: commands that start it (stopping it at the job's end) and print its console log.
    rse_socket: str = "/run/parsec-demo-lava/rse.sock"
    rse_start_command: str = "parsec_demo_rse_start"
    rse_evidence_command: str = "parsec_demo_rse_console"
    #: QEMU: the guest's vCPUs (0: the qemuboot.conf's QB_SMP). Under TCG each vCPU is a busy
    #: host thread: on a worker that runs several jobs, more vCPUs than the cores a job gets
    #: cost CPU (the guest spins on its own locks) rather than time.
    qemu_cpus: int = 0

    @classmethod
    def load(cls, path: Path | None = None, overrides: list[str] | None = None) -> FarmSettings:
        """The settings of the YAML file ``path`` (a mapping of these names), then each
        ``NAME=VALUE`` of ``overrides``; unknown names and wrong types are a SettingsError."""
        values: dict[str, Any] = dict(project_defaults())
        if path is not None:
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise SettingsError(f"cannot read the farm settings {path}: {exc}") from None
            if not isinstance(data, dict):
                raise SettingsError(f"{path}: farm settings must be a mapping of names")
            values.update(data)
        for override in overrides or []:
            name, sep, value = override.partition("=")
            if not sep:
                raise SettingsError(f"--set {override!r}: expected NAME=VALUE")
            values[name.strip()] = yaml.safe_load(value) if value else ""
        return cls.from_mapping(values, str(path) if path else "--set")

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str) -> FarmSettings:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise SettingsError(
                f"{source}: unknown setting {', '.join(unknown)} (known: {', '.join(fields)})"
            )
        converted: dict[str, Any] = {}
        for name, value in values.items():
            kind = fields[name].type
            if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
                converted[name] = value
            elif kind == "str" and isinstance(value, str | int | float):
                converted[name] = str(value)
            elif kind == "list[str]" and isinstance(value, list):
                converted[name] = [str(item) for item in value]
            else:
                raise SettingsError(f"{source}: {name} must be {kind}, not {value!r}")
        return cls(**converted)

    def require(self, *names: str) -> None:
        missing = [name for name in names if not getattr(self, name)]
        if missing:
            hints = "; ".join(MISSING_HINTS[name] for name in missing if name in MISSING_HINTS)
            raise SettingsError(
                f"these settings have no value: {', '.join(missing)} "
                f"(give them in the settings file or with --set NAME=VALUE"
                f"{'; ' + hints if hints else ''})"
            )

    def image_url(self, path: Path) -> str:
        return f"{self.images_url.rstrip('/')}/{path.name}"


def project_defaults() -> dict[str, str]:
    """The test definition's source by default: the repository this checkout was cloned from
    (its ``origin`` remote, without credentials), at this checkout's commit. A checkout whose
    origin is not a network address gives no repository: the job then asks for the setting."""
    source = layer_module("parsec_demo_source")
    root = str(project_root())
    defaults: dict[str, str] = {}
    repository = str(source.clone_address(source.remote_url(root)))
    if repository:
        defaults["testdef_repository"] = repository
    revision = str(source.head_commit(root))
    if revision:
        defaults["testdef_revision"] = revision
    return defaults


#: Why a setting that has no value by default has none, for the one-line error.
MISSING_HINTS = {
    "testdef_repository": "this checkout's origin remote is not a network address a LAVA "
    "worker can clone",
    "testdef_revision": "this checkout has no commit",
}


def _header(settings: FarmSettings, default_name: str, default_device: str) -> dict[str, Any]:
    job: dict[str, Any] = {
        "device_type": settings.device_type or default_device,
        "job_name": settings.job_name or default_name,
        "timeouts": {
            "job": {"minutes": settings.job_timeout_minutes},
            "connection": {"minutes": 2},
        },
        "priority": settings.priority,
        "visibility": settings.visibility,
    }
    if settings.tags:
        job["tags"] = list(settings.tags)
    return job


def _test_action(settings: FarmSettings) -> dict[str, Any]:
    container = ClientContainer.load()
    return {
        "test": {
            "timeout": {"minutes": settings.test_timeout_minutes},
            "definitions": [
                {
                    "repository": settings.testdef_repository,
                    "from": "git",
                    "revision": settings.testdef_revision,
                    "path": TEST_DEFINITION,
                    "name": "parsec-tls-demo",
                    "parameters": {
                        "CLIENT_IMAGE": container.reference,
                        "CLIENT_UID": str(container.uid),
                    },
                }
            ],
        }
    }


def _login(settings: FarmSettings) -> dict[str, Any]:
    return {
        "timeout": {"minutes": settings.boot_timeout_minutes},
        "prompts": [SHELL_PROMPT],
        "auto_login": {"login_prompt": LOGIN_PROMPT, "username": "root"},
    }


class _Images:
    """The files a job deploys: label -> URL, each file once, labels as LAVA allows them."""

    def __init__(self, settings: FarmSettings) -> None:
        self.settings = settings
        self.urls: dict[str, dict[str, str]] = {}
        self._labels: dict[Path, str] = {}

    def label(self, path: Path, preferred: str = "") -> str:
        path = path.resolve()
        if path not in self._labels:
            base = re.sub(r"[^a-z0-9]+", "_", (preferred or path.name).lower()).strip("_")
            label, n = base or "image", 1
            while label in self.urls:
                n += 1
                label = f"{base}_{n}"
            self._labels[path] = label
            self.urls[label] = {"url": self.settings.image_url(path)}
        return self._labels[path]


def fvp_job(fvpconf: Path, settings: FarmSettings) -> dict[str, Any]:
    """The LAVA job that boots the FVP an ``.fvpconf`` describes and runs the test
    definition, the RSE's console recorded as a feedback console."""
    _exists(fvpconf)
    settings.require("images_url", "fvp_docker", "testdef_repository", "testdef_revision")
    try:
        config = FvpConfig.load(fvpconf)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {fvpconf}: {exc}") from None
    default = config.consoles.get("default")
    if default is None:
        raise SettingsError(f"{fvpconf} names no default console (consoles: default)")
    images = _Images(settings)

    def deployed(value: str) -> str:
        """``value``, or ``{LABEL}`` if it names a file of the deploy directory."""
        path = config.directory / value
        if value and not Path(value).is_absolute() and path.is_file():
            return "{" + images.label(path).upper() + "}"
        return value.replace("{", "{{").replace("}", "}}")

    arguments: list[str] = []
    for key, value in config.parameters.items():
        arguments.append(f"--parameter {shlex.quote(key)}={_quoted(deployed(value))}")
    for item in config.data:
        target, _, rest = item.partition("=")
        name, at, address = rest.partition("@")
        arguments.append(f"--data {shlex.quote(target)}={_quoted(deployed(name))}{at}{address}")
    for key, value in config.applications.items():
        arguments.append(f"--application {shlex.quote(key)}={_quoted(deployed(value))}")
    for terminal in config.terminals:
        arguments.append(f"--parameter {shlex.quote(terminal + '.start_telnet=0')}")
    arguments += [shlex.quote(arg) for arg in config.args]
    if not images.urls:
        raise SettingsError(f"{fvpconf}: none of the files it names is in {config.directory}")
    license_variable = settings.fvp_license_variable or (
        f"ARMLMD_LICENSE_FILE={config.env['ARMLMD_LICENSE_FILE']}"
        if "ARMLMD_LICENSE_FILE" in config.env
        else ""
    )
    binary = settings.fvp_binary or (
        str(Path(config.bindir) / config.exe) if config.bindir else config.exe
    )
    feedbacks = [
        f"(?P<NAME>{re.escape(terminal)}): {ANNOUNCEMENT}"
        for alias, terminal in config.consoles.items()
        if alias != "default"
    ]
    boot: dict[str, Any] = {
        "method": "fvp",
        "docker": {"name": settings.fvp_docker, "local": False},
        "image": binary,
        "console_string": f"{re.escape(default)}: {ANNOUNCEMENT}",
        "arguments": arguments,
        **_login(settings),
    }
    if feedbacks:
        boot["feedbacks"] = feedbacks
    if license_variable:
        boot["license_variable"] = license_variable
    job = _header(settings, f"parsec-tls-demo on {config.exe}", "fvp")
    job["actions"] = [
        {
            "deploy": {
                "to": "fvp",
                "timeout": {"minutes": settings.boot_timeout_minutes},
                "images": images.urls,
            }
        },
        {"boot": boot},
        _test_action(settings),
    ]
    return job


def _exists(path: Path) -> None:
    if not path.is_file():
        raise SettingsError(f"{path}: no such file")


def _quoted(argument: str) -> str:
    """Shell-quoted, but a lone ``{LABEL}`` stays bare for LAVA's substitution."""
    return argument if re.fullmatch(r"\{[A-Z0-9_]+\}", argument) else shlex.quote(argument)


def qemu_job(qemuboot: Path, settings: FarmSettings) -> dict[str, Any]:
    """The LAVA job that boots the QEMU machine a ``qemuboot.conf`` describes, with the RSE
    model beside it on the dispatcher, and runs the test definition."""
    _exists(qemuboot)
    settings.require("images_url", "testdef_repository", "testdef_revision")
    try:
        config = QemuConfig.from_qemuboot(qemuboot)
    except (OSError, KeyError, ValueError) as exc:
        raise SettingsError(f"cannot read {qemuboot} as a qemuboot.conf: {exc}") from None
    images = _Images(settings)
    deploy: dict[str, dict[str, str]] = {}
    kernel = images.label(config.kernel, "kernel")
    # LAVA knows the boot started by the kernel's "Linux version" line, which quiet hides.
    cmdline = " ".join(word for word in config.cmdline.split() if word != "quiet")
    deploy[kernel] = {
        **images.urls[kernel],
        "image_arg": f"-kernel {{{kernel}}} -append {shlex.quote(cmdline)}",
    }
    initrd = config.initrd
    if "-initrd" in config.extra:  # the dev image's qemuboot.conf has it in QB_OPT_APPEND
        initrd = Path(config.extra[config.extra.index("-initrd") + 1])
    if initrd is not None:
        label = images.label(initrd, "initrd")
        deploy[label] = {**images.urls[label], "image_arg": f"-initrd {{{label}}}"}
    rootfs = _rootfs_file(config.rootfs_options)
    label = images.label(rootfs, "rootfs")
    deploy[label] = {
        **images.urls[label],
        "image_arg": f"-drive format=raw,file={{{label}}},if=virtio",
    }
    arch = config.qemu.removeprefix("qemu-system-")
    rse = _pairs(qemu_options(str(settings.rse_socket), config.virtio_serial))
    context: dict[str, Any] = {
        "arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch),
        "netdevice": "user",
        # LAVA's test overlay disk as a virtio disk: the machines have no IDE controller (the
        # Arm virt machine) or no driver for it (the dev image).
        "guestfs_interface": "virtio",
        "memory": config.memory_mb,
        "extra_options": [
            f"-smp {settings.qemu_cpus or config.smp}",
            *(shlex.join(pair) for pair in rse),
        ],
    }
    for pair in _pairs(config.machine + config.cpu):
        if len(pair) == 2 and pair[0] in ("-machine", "-cpu"):
            context[pair[0].removeprefix("-")] = pair[1]
    job = _header(settings, f"parsec-tls-demo on {qemuboot.name}", "qemu")
    job["context"] = context
    job["actions"] = [
        {
            "deploy": {
                "to": "tmpfs",
                "timeout": {"minutes": settings.boot_timeout_minutes},
                "images": deploy,
            }
        },
        {"command": {"name": settings.rse_start_command, "timeout": {"minutes": 2}}},
        {"boot": {"method": "qemu", "media": "tmpfs", **_login(settings)}},
        _test_action(settings),
        {"command": {"name": settings.rse_evidence_command, "timeout": {"minutes": 2}}},
    ]
    return job


def _rootfs_file(options: list[str]) -> Path:
    for option in options:
        for part in option.split(","):
            if part.startswith("file="):
                return Path(part.removeprefix("file="))
    raise SettingsError(f"no root disk file in the QEMU options {shlex.join(options)}")


def _pairs(words: list[str]) -> list[list[str]]:
    """``-opt value`` words grouped as LAVA's ``extra_options`` lists them, one per entry."""
    pairs: list[list[str]] = []
    for word in words:
        if word.startswith("-") or not pairs:
            pairs.append([word])
        else:
            pairs[-1].append(word)
    return pairs


def deployed_files(job: dict[str, Any], config: Path) -> list[Path]:
    """The local files a job made from ``config`` deploys: each image URL's file name, in the
    configuration's directory (where the build left them)."""
    deploy = next(action["deploy"] for action in job["actions"] if "deploy" in action)
    directory = config.resolve().parent
    return [directory / str(image["url"]).rsplit("/", 1)[-1] for image in deploy["images"].values()]


def dump(job: dict[str, Any]) -> str:
    """The job as LAVA's YAML (keys in the order given)."""
    text: str = yaml.safe_dump(job, sort_keys=False, default_flow_style=False, width=100)
    return text
