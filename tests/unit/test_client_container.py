"""The client container's definition (the layer's files) and the OCI archive the dev image makes."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from parsec_demo_machine import container_settings

from parsec_demo.client_container import (
    ClientContainer,
    ContainerError,
    layer_tar,
    libraries_from_ldd,
    oci_archive,
    parse_file_list,
    recipe_dir,
    resolve_in_root,
)

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd5a1f2000)
\tlibprotobuf-c.so.1 => /lib/x86_64-linux-gnu/libprotobuf-c.so.1 (0x00007f1c0a1c2000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f1c09fe1000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f1c0a1f5000)
"""


def test_the_layer_defines_the_container_once() -> None:
    spec = ClientContainer.load()
    assert spec.reference == "localhost/parsec-demo-client:1"
    assert spec.programs == ("/usr/bin/ssl_client1", "/usr/bin/parsec_client_key")
    assert "/run/parsec" in spec.directories and spec.workdir in spec.directories
    assert spec.archive == "/usr/share/parsec-demo/parsec-demo-client-oci.tar"
    # Its own uid, hence its own Parsec application; its PSA storage a private tmpfs.
    assert spec.uid == 61000
    assert spec.steps.run(["ssl_client1", "127.0.0.1"]) == (
        "podman run --rm --network host -v /run/parsec:/run/parsec --user 61000:61000 "
        "--tmpfs /work:rw,mode=0700,U localhost/parsec-demo-client:1 ssl_client1 127.0.0.1"
    )
    assert "-v" not in spec.steps.run(["ssl_client1"], mount_parsec=False)
    assert "--user 61001:61001 " in spec.steps.run(["ssl_client1"], uid=61001)
    # A persistent client key's PSA record lives in a directory of the machine, handed over to
    # the container's uid.
    assert spec.steps.run(["parsec_client_key", "destroy", "key_id=1"], workdir_from="/k") == (
        "podman run --rm --network host -v /run/parsec:/run/parsec --user 61000:61000 "
        "-v /k:/work:U localhost/parsec-demo-client:1 parsec_client_key destroy key_id=1"
    )
    unit = spec.load_unit()
    assert "@" not in unit
    assert f"ExecStart=/usr/libexec/parsec-demo/load-client-container {spec.archive} " in unit
    assert unit.rstrip().endswith("WantedBy=multi-user.target")


def test_settings_and_file_list_parsing() -> None:
    settings = container_settings('A_B = "x"\nC = "${datadir}/y"\n# D = "no"\nE = "${unknown}"\n')
    assert settings == {"A_B": "x", "C": "/usr/share/y", "E": "${unknown}"}
    assert parse_file_list("# c\n\n/usr/bin/a\n/run/x/\n") == ["/usr/bin/a", "/run/x/"]
    for bad in ("usr/bin/a", "/usr/../etc/passwd", "/a b"):
        with pytest.raises(ContainerError, match="line 1 of the container's file list"):
            parse_file_list(bad + "\n")


def test_ldd_output_gives_each_library_once() -> None:
    assert libraries_from_ldd(LDD_OUTPUT + LDD_OUTPUT) == [
        "/lib/x86_64-linux-gnu/libprotobuf-c.so.1",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ]
    with pytest.raises(ContainerError, match=r"libfoo\.so\.1 => not found"):
        libraries_from_ldd("\tlibfoo.so.1 => not found\n")


def test_links_resolve_inside_the_root_not_the_host(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(b"libc")
    (tmp_path / "lib").symlink_to("usr/lib")  # usrmerge, relative
    (tmp_path / "usr/lib64").mkdir()
    (tmp_path / "lib64").symlink_to("/usr/lib64")  # absolute: inside the root
    (tmp_path / "usr/lib64/ld.so").symlink_to("../lib/x86_64-linux-gnu/libc.so.6")
    assert str(resolve_in_root(tmp_path, "/lib/x86_64-linux-gnu/libc.so.6")) == (
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    )
    assert str(resolve_in_root(tmp_path, "/lib64/ld.so")) == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ContainerError, match="too many symbolic links"):
        resolve_in_root(tmp_path, "/loop")


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None
        return extracted.read()


def test_oci_archive_is_a_valid_reproducible_layout(tmp_path: Path) -> None:
    program = tmp_path / "ssl_client1"
    program.write_bytes(b"\x7fELF client")
    program.chmod(0o755)
    library = tmp_path / "libc.so.6"
    library.write_bytes(b"\x7fELF libc")
    library.chmod(0o644)
    spec = ClientContainer.load()
    files = [("/usr/bin/ssl_client1", program), ("/lib/x86_64-linux-gnu/libc.so.6", library)]
    layer = layer_tar(files, spec.directories)
    assert layer == layer_tar(reversed(files), spec.directories)  # order and time do not matter

    entries = members(layer)
    assert set(entries) == {
        "usr", "usr/bin", "usr/bin/ssl_client1", "lib", "lib/x86_64-linux-gnu",
        "lib/x86_64-linux-gnu/libc.so.6", "run", "run/parsec", "work", "tmp",
    }  # fmt: skip
    assert entries["usr/bin/ssl_client1"].mode == 0o755 and entries["run/parsec"].isdir()
    assert entries["tmp"].mode == 0o1777
    assert all(e.uid == 0 and e.gid == 0 and e.mtime == 0 for e in entries.values())
    assert read(layer, "usr/bin/ssl_client1") == b"\x7fELF client"

    archive = oci_archive(spec, "arm64", layer)
    assert archive == oci_archive(spec, "arm64", layer)
    assert json.loads(read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    for name in members(archive):  # every blob is named by its digest
        if name.startswith("blobs/sha256/") and members(archive)[name].isfile():
            assert hashlib.sha256(read(archive, name)).hexdigest() == name.rsplit("/", 1)[1]
    index = json.loads(read(archive, "index.json"))
    (descriptor,) = index["manifests"]
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": spec.reference}
    manifest_blob = read(archive, "blobs/sha256/" + descriptor["digest"][7:])
    assert len(manifest_blob) == descriptor["size"]
    manifest = json.loads(manifest_blob)
    assert manifest["mediaType"] == descriptor["mediaType"]
    (layer_descriptor,) = manifest["layers"]
    assert read(archive, "blobs/sha256/" + layer_descriptor["digest"][7:]) == layer
    assert layer_descriptor["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    config = json.loads(read(archive, "blobs/sha256/" + manifest["config"]["digest"][7:]))
    assert config["architecture"] == "arm64" and config["os"] == "linux"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer_descriptor["digest"]]}
    assert config["config"]["Cmd"] == ["ssl_client1"]
    assert config["config"]["WorkingDir"] == spec.workdir
    assert config["config"]["User"] == "61000:61000", "not root: an application of its own"
    with pytest.raises(ContainerError, match="no OCI architecture for mips"):
        oci_archive(spec, "mips", layer)


#: A stand-in for podman on PATH, for the load script's logic: its image names in a file.
FAKE_PODMAN = """#!/bin/sh
echo "$*" >> "$STATE/calls"
case "$1 $2" in
    "image exists") grep -qxF "$3" "$STATE/images" ;;
    "load -q")
        [ -z "$LOADED_AS" ] || echo "Loaded image: $LOADED_AS"
        [ -z "$LOADED_AS" ] || echo "$LOADED_AS" >> "$STATE/images" ;;
    "tag "*) echo "$3" >> "$STATE/images" ;;
    "untag "*) grep -vxF "$3" "$STATE/images" > "$STATE/kept"; mv "$STATE/kept" "$STATE/images" ;;
    *) exit 99 ;;
esac
"""


def run_load_script(tmp_path: Path, loaded_as: str, present: str = "") -> tuple[int, str, str]:
    state = tmp_path / "state"
    state.mkdir(parents=True)
    (state / "images").write_text(present)
    (state / "calls").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(FAKE_PODMAN)
    (bin_dir / "podman").chmod(0o755)
    script = recipe_dir() / "files/load-client-container"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STATE": str(state), "LOADED_AS": loaded_as}
    result = subprocess.run(
        ["sh", str(script), "/usr/share/x.tar", "localhost/parsec-demo-client:1"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    return result.returncode, (state / "images").read_text(), result.stderr


def test_the_load_script_names_the_image_whatever_podman_called_it(tmp_path: Path) -> None:
    reference = "localhost/parsec-demo-client:1"
    # A Yocto archive's index names only the tag: podman's name for it is replaced.
    assert run_load_script(tmp_path / "a", "localhost/1:latest") == (0, reference + "\n", "")
    # The dev image's archive names the reference: nothing to rename.
    assert run_load_script(tmp_path / "b", reference) == (0, reference + "\n", "")
    # An image without a name keeps its id and gets the reference.
    status, images, _ = run_load_script(tmp_path / "c", "sha256:" + "ab" * 32)
    assert status == 0 and images.splitlines()[-1] == reference
    # Already there: not loaded again.
    assert run_load_script(tmp_path / "d", "", present=reference + "\n")[:2] == (
        0,
        reference + "\n",
    )
    assert "load" not in (tmp_path / "d/state/calls").read_text()
    status, _, error = run_load_script(tmp_path / "e", "")
    assert (
        status == 1
        and error == "load-client-container: podman loaded no image from /usr/share/x.tar\n"
    )
