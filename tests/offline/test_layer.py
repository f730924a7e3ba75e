"""Offline checks of the Yocto layer and the kas configurations: everything that can be known
without a Yocto build host (kas's own schema, oelint-adv, the layer's structure, the patches)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import jsonschema
import kas
import pytest
import yaml
from kas.configschema import CONFIGSCHEMA

from parsec_demo.native_build import (
    DEBIAN_SOURCE_PACKAGE,
    MbedtlsRecipe,
    build_root,
    check_patches_apply,
    sha256_of,
)
from parsec_demo.paths import PROJECT_ROOT

LAYER = PROJECT_ROOT / "meta-parsec-demo"
KAS = PROJECT_ROOT / "kas"
#: The documented combinations (README).
COMBINATIONS = [
    ["base.yml", "qemuarm64.yml"],
    ["base.yml", "qemuarm64.yml", "testimage.yml"],
    ["base.yml", "fvp-rd1-ae.yml"],
    ["base.yml", "fvp-rd1-ae.yml", "testimage.yml"],
]
#: Repositories whose commit could not be read here; `kas lock` pins them.
UNPINNED = {"meta-arm-auto-solutions"}
#: The upstream layers' own layer.conf facts at the pinned commits.
UPSTREAM_LAYERS = Path(__file__).with_name("upstream_layers.yml")


def kas_files() -> list[Path]:
    return sorted(KAS.glob("*.yml"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def merge(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """kas's merge of configuration dictionaries (later files win, dictionaries merge)."""
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into


def resolve(path: Path) -> dict[str, Any]:
    config = load(path)
    merged: dict[str, Any] = {}
    for include in config.get("header", {}).get("includes", []):
        if isinstance(include, str):
            merge(merged, resolve(path.parent / include))
    return merge(merged, config)


def combined(files: list[str]) -> dict[str, Any]:
    """The configuration kas builds from ``kas build a.yml:b.yml:...``."""
    merged: dict[str, Any] = {}
    for name in files:
        merge(merged, resolve(KAS / name))
    return merged


@pytest.mark.parametrize("path", kas_files(), ids=lambda p: p.name)
def test_kas_files_follow_kas_schema(path: Path) -> None:
    errors = [e.message for e in jsonschema.Draft7Validator(CONFIGSCHEMA).iter_errors(load(path))]
    assert errors == []
    assert load(path)["header"]["version"] == kas.__file_version__, "the current format"


@pytest.mark.parametrize("files", COMBINATIONS, ids=":".join)
def test_documented_combinations_are_complete_configurations(files: list[str]) -> None:
    merged = combined(files)
    merged["header"] = {"version": kas.__file_version__}
    assert list(jsonschema.Draft7Validator(CONFIGSCHEMA).iter_errors(merged)) == []
    assert merged["distro"] == "poky" and merged["machine"] and merged["target"]
    repos = merged["repos"]
    for include in (i for f in files for i in load(KAS / f)["header"].get("includes", [])):
        if isinstance(include, dict):
            assert include["repo"] in repos, f"include from unknown repo {include['repo']}"
        else:
            assert (KAS / include).is_file()
    assert "meta-parsec-demo" in repos["parsec-demo"]["layers"]


def enabled_layers(repos: dict[str, Any]) -> list[tuple[str, str]]:
    """(repository, layer path) pairs a merged configuration enables; kas takes a repository
    without a ``layers`` entry as one layer at its root."""
    return [
        (name, layer)
        for name, repo in repos.items()
        for layer in ((repo or {}).get("layers") or {".": None})
    ]


@pytest.mark.parametrize("files", COMBINATIONS, ids=":".join)
def test_every_layer_dependency_is_enabled(files: list[str]) -> None:
    merged = combined(files)
    facts = load(UPSTREAM_LAYERS)
    ours = variables((LAYER / "conf/layer.conf").read_text())
    declared: dict[str, list[str]] = {}
    for repo, layer in enabled_layers(merged["repos"]):
        if repo in UNPINNED:
            continue  # its own kas file brings its layers; not readable here
        if repo == "parsec-demo":
            declared["parsec-demo"] = ours["LAYERDEPENDS_parsec-demo"].split()
            continue
        assert repo in facts and layer in facts[repo]["layers"], (
            f"{repo}/{layer}: add its layer.conf facts to {UPSTREAM_LAYERS.name}"
        )
        assert facts[repo]["commit"] == merged["repos"][repo]["commit"], (
            f"{repo}: {UPSTREAM_LAYERS.name} was read at another commit"
        )
        fact = facts[repo]["layers"][layer]
        declared[fact["collection"]] = fact["depends"]
    missing = {
        collection: sorted(set(depends) - set(declared))
        for collection, depends in declared.items()
        if set(depends) - set(declared)
    }
    assert missing == {}, "layers whose dependencies no repository enables"


def test_repositories_are_pinned_to_full_commits() -> None:
    repos: dict[str, Any] = {}
    for path in kas_files():
        repos.update(load(path).get("repos", {}))
    lock = load(KAS / "base.lock.yml")["overrides"]["repos"]
    for name, repo in repos.items():
        if not repo or "url" not in repo:
            continue  # this repository
        if name in UNPINNED:
            assert "commit" not in repo
            continue
        assert re.fullmatch(r"[0-9a-f]{40}", repo.get("commit", "")), f"{name} is not pinned"
        assert repo.get("branch") == "scarthgap" or name == "meta-arm-auto-solutions"
        if name in lock:
            assert lock[name]["commit"] == repo["commit"], f"{name}: lock file and config differ"


def layer_files(*patterns: str) -> list[Path]:
    return sorted(
        p for pattern in patterns for p in LAYER.rglob(pattern) if "/files/" not in str(p)
    )


def test_oelint_adv_finds_nothing() -> None:
    files = [str(p) for p in layer_files("*.bb", "*.bbappend", "*.inc", "*.conf", "*.bbclass")]
    oelint = Path(sys.executable).with_name("oelint-adv")
    result = subprocess.run(
        [str(oelint), *files], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", (
        result.stdout + result.stderr
    )


def variables(text: str) -> dict[str, str]:
    """Top-level ``NAME = "value"`` assignments (continuation lines joined)."""
    joined = re.sub(r"\\\n", " ", text)
    return {
        m[0]: m[1]
        for m in re.findall(r'^([A-Za-z0-9_:${}\-.]+)\s*[?:+.]*=\s*"(.*)"\s*$', joined, re.M)
    }


def test_layer_conf_declares_the_layer() -> None:
    conf = variables((LAYER / "conf/layer.conf").read_text())
    assert conf["BBFILE_COLLECTIONS"].strip() == "parsec-demo"
    assert conf["BBFILE_PATTERN_parsec-demo"] == "^${LAYERDIR}/"
    assert conf["BBFILE_PRIORITY_parsec-demo"].isdigit()
    assert "scarthgap" in conf["LAYERSERIES_COMPAT_parsec-demo"].split()
    depends = conf["LAYERDEPENDS_parsec-demo"].split()
    assert {"core", "openembedded-layer", "networking-layer", "parsec-layer"} <= set(depends)
    assert (LAYER / "lib/oeqa/runtime/cases").is_dir()
    # BitBake puts a layer's lib/ on the path only for the namespaces addpylib names: without
    # it, testimage finds neither the layer's cases' helpers nor its controllers.
    lines = (LAYER / "conf/layer.conf").read_text().splitlines()
    assert "addpylib ${LAYERDIR}/lib oeqa" in [line.strip() for line in lines]


def test_recipes_live_in_recipes_directories() -> None:
    for recipe in layer_files("*.bb", "*.bbappend"):
        relative = recipe.relative_to(LAYER)
        assert relative.parts[0].startswith("recipes-") and len(relative.parts) == 3, relative


def src_uri_files(recipe: Path) -> list[str]:
    uris = " ".join(v for k, v in variables(recipe.read_text()).items() if k.startswith("SRC_URI"))
    return re.findall(r"file://([^\s;\"]+)", uris)


def test_every_src_uri_file_exists_and_patches_say_upstream_status() -> None:
    referenced: set[Path] = set()
    for recipe in layer_files("*.bb", "*.bbappend"):
        search = [recipe.parent / "files", recipe.parent / recipe.stem.split("_")[0]]
        for name in src_uri_files(recipe):
            found = [d / name for d in search if (d / name).exists()]
            assert found, f"{recipe.name}: file://{name} is missing"
            referenced.add(found[0].resolve())
            if name.endswith((".patch", ".diff")):
                assert re.search(r"^Upstream-Status: \S", found[0].read_text(), re.M), name
    for patch in LAYER.rglob("*.patch"):
        assert patch.resolve() in referenced, f"{patch.name} is in no SRC_URI"


def test_license_checksums_match_the_files() -> None:
    for recipe in layer_files("*.bb"):
        chksum = variables(recipe.read_text()).get("LIC_FILES_CHKSUM", "")
        for name, md5 in re.findall(r"file://([^;\s]+);md5=([0-9a-f]{32})", chksum):
            if (
                name == "LICENSE"
                and "MBEDTLS_SRC_URI" in recipe.read_text()
                and "driver" not in recipe.name
            ):
                continue  # Mbed TLS's own LICENSE, checked against the source below
            candidates = [
                recipe.parent / "files" / name,
                recipe.parent / "files" / "parsec-se-driver" / name,
            ]
            path = next(p for p in candidates if p.exists())
            assert hashlib.md5(path.read_bytes()).hexdigest() == md5, f"{recipe.name}: {name}"


#: Set to 1 to let the patch check fetch the Mbed TLS source when nothing has cached it yet.
ALLOW_NETWORK = "PARSEC_DEMO_ALLOW_NETWORK"
PATCH_CHECK = """
from parsec_demo.native_build import check_patches_apply
print(" ".join(check_patches_apply()))
"""


def cached_source(recipe: MbedtlsRecipe) -> Path:
    """Where a build keeps the recipe's Mbed TLS tarball (native_build.fetch_source)."""
    return build_root() / "sources" / f"{DEBIAN_SOURCE_PACKAGE}_{recipe.version}.orig.tar.bz2"


def test_the_patches_apply_to_the_pinned_source() -> None:
    """The layer's patches apply, in recipe order, to the source the build already fetched
    (checked against the recipe's SHA-256): offline, in a network namespace of its own when
    this runs as root. Without that source, the test skips unless the network is allowed."""
    recipe = MbedtlsRecipe.load()
    tarball = cached_source(recipe)
    cached = tarball.is_file() and sha256_of(tarball) == recipe.sha256
    if not cached:
        if os.environ.get(ALLOW_NETWORK) != "1":
            pytest.skip(
                f"no Mbed TLS {recipe.version} source in {tarball.parent} (a host build caches "
                f"it, e.g. ./tools/demo --host; {ALLOW_NETWORK}=1 lets this test fetch it)"
            )
        assert check_patches_apply(recipe) == [p.name for p in recipe.patches]
    elif os.geteuid() == 0 and shutil.which("unshare"):
        result = subprocess.run(
            ["unshare", "--net", sys.executable, "-c", PATCH_CHECK],
            capture_output=True, text=True, timeout=600,
            env={**os.environ, "PARSEC_DEMO_ROOT": str(PROJECT_ROOT)},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split() == [p.name for p in recipe.patches]
    else:
        assert check_patches_apply(recipe) == [p.name for p in recipe.patches]
    with tarfile.open(tarball) as archive:
        [member] = [
            m
            for m in archive.getmembers()
            if m.name.count("/") == 1 and m.name.endswith("/LICENSE")
        ]
        licence = archive.extractfile(member)
        assert licence is not None
        md5 = hashlib.md5(licence.read()).hexdigest()
    demo = next(LAYER.rglob("parsec-mbedtls-demo_*.bb")).read_text()
    assert f"file://LICENSE;md5={md5}" in demo
