"""The demo's client container: its definition in the layer, and an OCI archive of it.

One definition serves the Yocto layer and the dev image. The layer's
``recipes-parsec/parsec-demo-client-container/`` holds its name, tag and settings
(``parsec-demo-client-container.inc``), the list of what it holds
(``files/client-container.files``), the systemd oneshot that loads its OCI archive into podman
at boot and the script that unit runs. The Yocto recipe builds the container with
meta-virtualization's image-oci; the dev image assembles the same container here from the
image's own ``ssl_client1`` (the program, the shared libraries it loads, the listed
directories) with the standard library: a layer tar, its config, manifest and index, written
as an OCI image layout in a tar archive, which the same unit loads.

Each run of the container is a Parsec application of its own: it runs as its own uid
(``PARSEC_DEMO_CLIENT_UID`` by default, the image's configured user; ``podman run --user``), and
with Unix peer credentials the application is the caller's uid. Its PSA storage is a private
tmpfs, or a directory of the machine handed over to that uid (``:U``).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from parsec_demo_machine import CLIENT_CONTAINER_UNIT, ClientContainerSteps, container_settings

from .errors import UserError
from .paths import layer_dir

#: The load unit's name on the machine (the layer's file of that name).
LOAD_UNIT = CLIENT_CONTAINER_UNIT
#: Debian architecture -> OCI (Go) architecture.
OCI_ARCH = {"amd64": "amd64", "arm64": "arm64"}
#: A fixed time for every file of the layer: the same inputs give the same archive.
EPOCH = 0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"


class ContainerError(UserError):
    pass


def recipe_dir() -> Path:
    return layer_dir() / "recipes-parsec/parsec-demo-client-container"


@dataclass(frozen=True)
class ClientContainer:
    """The client container as the layer defines it."""

    image: str
    tag: str
    workdir: str
    command: tuple[str, ...]
    path: str
    archive: str
    programs: tuple[str, ...]
    directories: tuple[str, ...]
    uid: int

    @property
    def reference(self) -> str:
        """name:tag, as podman knows the loaded image."""
        return f"{self.image}:{self.tag}"

    @classmethod
    def load(cls, directory: Path | None = None) -> ClientContainer:
        """The definition in ``directory`` (the layer's recipe directory by default)."""
        directory = directory or recipe_dir()
        inc = directory / "parsec-demo-client-container.inc"
        listing = directory / "files/client-container.files"
        try:
            settings = container_settings(inc.read_text())
            entries = parse_file_list(listing.read_text())
        except OSError as exc:
            raise ContainerError(f"cannot read the client container's definition: {exc}") from exc
        missing = [
            name
            for name in ("IMAGE", "TAG", "WORKDIR", "CMD", "PATH", "ARCHIVE", "UID")
            if f"PARSEC_DEMO_CLIENT_{name}" not in settings
        ]
        if missing:
            raise ContainerError(f"{inc} does not set PARSEC_DEMO_CLIENT_{missing[0]}")
        programs = tuple(e for e in entries if not e.endswith("/"))
        directories = tuple(e.rstrip("/") for e in entries if e.endswith("/"))
        if not programs:
            raise ContainerError(f"{listing} names no program")
        uid = settings["PARSEC_DEMO_CLIENT_UID"]
        if not uid.isdigit() or int(uid) == 0:
            raise ContainerError(
                f"{inc}: PARSEC_DEMO_CLIENT_UID must be a uid other than root's, not {uid!r}"
            )
        return cls(
            image=settings["PARSEC_DEMO_CLIENT_IMAGE"],
            tag=settings["PARSEC_DEMO_CLIENT_TAG"],
            workdir=settings["PARSEC_DEMO_CLIENT_WORKDIR"],
            command=tuple(settings["PARSEC_DEMO_CLIENT_CMD"].split()),
            path=settings["PARSEC_DEMO_CLIENT_PATH"],
            archive=settings["PARSEC_DEMO_CLIENT_ARCHIVE"],
            programs=programs,
            directories=directories,
            uid=int(uid),
        )

    @property
    def steps(self) -> ClientContainerSteps:
        """The steps with this container on a machine, as the layer's cases take them."""
        return ClientContainerSteps(self.reference, str(self.uid), self.workdir)

    def load_unit(self) -> str:
        """The systemd unit that loads the archive, with this container's archive and name."""
        text = (recipe_dir() / "files" / LOAD_UNIT).read_text()
        return text.replace("@ARCHIVE@", self.archive).replace("@REFERENCE@", self.reference)


def parse_file_list(text: str) -> list[str]:
    """The absolute paths of a file list: one a line, ``#`` comments, directories end in /."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("/") or ".." in PurePosixPath(line).parts or " " in line:
            raise ContainerError(f"line {number} of the container's file list: bad path {line!r}")
        entries.append(line)
    return entries


# --- the container's files, from a root file system --------------------------------------------


def resolve_in_root(root: Path, path: str, limit: int = 40) -> PurePosixPath:
    """``path`` inside ``root`` with every symbolic link followed as if ``root`` were ``/``:
    the path of the file it names, relative to ``root``'s ``/``."""
    parts = list(PurePosixPath(path).parts[1:])
    resolved = PurePosixPath("/")
    followed = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved.parent
            continue
        candidate = resolved / part
        on_disk = root / str(candidate).lstrip("/")
        if on_disk.is_symlink():
            followed += 1
            if followed > limit:
                raise ContainerError(f"too many symbolic links in {path} under {root}")
            target = PurePosixPath(str(on_disk.readlink()))
            if target.is_absolute():
                resolved = PurePosixPath("/")
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved = candidate
    return resolved


def shared_libraries(root: Path, program: str) -> list[str]:
    """The shared libraries ``program`` loads in ``root`` (its ELF interpreter included), as
    paths in ``root``: ``ldd`` run in a chroot, so that the image's own loader answers."""
    result = subprocess.run(
        ["chroot", str(root), "ldd", program], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ContainerError(f"ldd {program} in {root} failed: {result.stdout}{result.stderr}")
    return libraries_from_ldd(result.stdout)


def libraries_from_ldd(output: str) -> list[str]:
    """The absolute paths in ``ldd``'s output, each once: ``lib => /path (0x...)`` and the
    interpreter's ``/path (0x...)``; ``not found`` is an error, the vDSO has no file."""
    libraries: list[str] = []
    for line in output.splitlines():
        if "not found" in line:
            raise ContainerError(f"a shared library is missing: {line.strip()}")
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)", line)
        if match and match[1] not in libraries:
            libraries.append(match[1])
    return libraries


def container_files(root: Path, spec: ClientContainer) -> list[tuple[str, Path]]:
    """(path in the container, file in ``root``) of every program the list names and of the
    libraries it loads; links are resolved, each file is stored at the path that names it."""
    wanted: list[str] = []
    for program in spec.programs:
        for path in (program, *shared_libraries(root, program)):
            if path not in wanted:
                wanted.append(path)
    files = []
    for path in wanted:
        source = root / str(resolve_in_root(root, path)).lstrip("/")
        if not source.is_file():
            raise ContainerError(f"the client container's {path} is not a file in {root}")
        files.append((path, source))
    return files


# --- the OCI archive ------------------------------------------------------------------------------


def layer_tar(files: Iterable[tuple[str, Path]], directories: Iterable[str]) -> bytes:
    """An uncompressed tar of ``files`` (path in the layer, source) and empty ``directories``,
    with every parent directory, owned by root, dated EPOCH: the same input, the same bytes."""
    entries: dict[str, Path | None] = {}
    for path, file in files:
        entries[path.lstrip("/")] = file
    for directory in directories:
        entries.setdefault(directory.strip("/"), None)
    for name in list(entries):
        for parent in PurePosixPath(name).parents:
            if str(parent) != ".":
                entries.setdefault(str(parent), None)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            source = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if source is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
                continue
            data = source.read_bytes()
            info.size = len(data)
            info.mode = source.stat().st_mode & 0o7777
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(spec: ClientContainer, arch: str, layer: bytes) -> bytes:
    """An OCI image layout (image-spec 1.0: ``oci-layout``, ``index.json``, ``blobs/sha256``)
    in a tar, of one image with ``layer``; its index names it ``spec.reference``."""
    if arch not in OCI_ARCH:
        raise ContainerError(f"no OCI architecture for {arch}")
    blobs: dict[str, bytes] = {}
    layer_descriptor = _blob(blobs, layer, OCI_LAYER)
    config = {
        "architecture": OCI_ARCH[arch],
        "os": "linux",
        "config": {
            "Cmd": list(spec.command),
            "Env": [f"PATH={spec.path}"],
            "WorkingDir": spec.workdir,
            "User": f"{spec.uid}:{spec.uid}",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_descriptor["digest"]]},
        "history": [{"created_by": "parsec-demo image build: the client container's files"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _blob(blobs, _json(config), OCI_CONFIG),
        "layers": [layer_descriptor],
    }
    manifest_descriptor = _blob(blobs, _json(manifest), OCI_MANIFEST)
    manifest_descriptor["annotations"] = {REF_NAME: spec.reference}
    index = {"schemaVersion": 2, "manifests": [manifest_descriptor]}
    members = {
        "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
        "index.json": _json(index),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": data for d, data in blobs.items()},
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tar.addfile(info)
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), 0o644, EPOCH
            tar.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()


def install_into_image(root: Path, arch: str, spec: ClientContainer | None = None) -> Path:
    """The client container in the image at ``root``: its OCI archive, made from the image's
    own files, at ``spec.archive``, and the unit (enabled) and script that load it at boot."""
    spec = spec or ClientContainer.load()
    files = container_files(root, spec)
    archive = root / spec.archive.lstrip("/")
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(oci_archive(spec, arch, layer_tar(files, spec.directories)))
    unit = spec.load_unit()
    found = re.search(r"^ExecStart=(/\S+)", unit, re.M)
    if found is None:
        raise ContainerError(f"{LOAD_UNIT} in the layer has no ExecStart")
    script = root / found[1].lstrip("/")  # the layer's script, where its unit runs it
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_bytes((recipe_dir() / "files" / script.name).read_bytes())
    script.chmod(0o755)
    units = root / "etc/systemd/system"
    (units / LOAD_UNIT).write_text(unit)
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / LOAD_UNIT
    link.unlink(missing_ok=True)
    link.symlink_to(f"/etc/systemd/system/{LOAD_UNIT}")
    return archive


def definition_files() -> list[Path]:
    """The files of the definition, inputs of the dev image."""
    return sorted(p for p in recipe_dir().rglob("*") if p.is_file())
