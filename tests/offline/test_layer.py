"""Offline checks of the Yocto layer and the kas configurations: everything that can be known
without a Yocto build host (kas's own schema, oelint-adv, the layer's structure, the patches)."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tomllib
import types
import unittest
from pathlib import Path
from typing import Any

import jsonschema
import kas
import parsec_demo_machine as machine_steps
import pytest
import yaml
from kas.configschema import CONFIGSCHEMA

from parsec_demo.client_container import LOAD_UNIT, ClientContainer
from parsec_demo.native_build import (
    DEBIAN_SOURCE_PACKAGE,
    MbedtlsRecipe,
    check_patches_apply,
    sha256_of,
)
from parsec_demo.paths import PROJECT_ROOT, cache_root, layer_module
from parsec_demo.validate.runner import case_modules
from support.kas_configs import KAS, combined, load, rd1ae_stack

LAYER = PROJECT_ROOT / "meta-parsec-demo"
#: The machine-side C code, and where the recipes that build it fetch the project.
DRIVER_SOURCE = PROJECT_ROOT / "target/parsec-se-driver"
PROJECT_IN_WORKDIR = "${WORKDIR}/parsec-demo/"
#: The layer's oeqa case modules, as TEST_SUITES names them.
LAYER_CASE_MODULES = case_modules(LAYER / "lib/oeqa/runtime/cases")
#: The documented combinations (README).
COMBINATIONS = [
    "kas/base.yml:kas/qemuarm64.yml",
    "kas/base.yml:kas/qemuarm64.yml:kas/testimage.yml",
    "kas/fvp-rd-kronos.yml",
    "kas/fvp-rd-kronos.yml:kas/testimage.yml",
    "kas/base.yml:kas/qemuarm64.yml:kas/ci-cache.yml",
    "kas/fvp-rd-kronos.yml:kas/ci-cache.yml",
    "kas/base.yml:kas/qemuarm64.yml:kas/testimage.yml:kas/ci-cache.yml",
    "kas/fvp-rd-kronos.yml:kas/testimage.yml:kas/ci-cache.yml",
]
#: Combinations on Arm's RD-1 AE stack, which brings its own layers at its own pins.
ON_ARM_STACK = [c for c in COMBINATIONS if c.startswith("kas/fvp-rd-kronos.yml")]
#: kas files read by other kas versions than the project's: the overlay of Arm's build is
#: included by users who configured it with Arm's kas 4.x (file format 16 at most).
KAS_FORMATS = {"rd1ae-overlay.yml": 14}
#: The upstream layers' own layer.conf facts at the pinned commits.
UPSTREAM_LAYERS = Path(__file__).with_name("upstream_layers.yml")


def kas_files() -> list[Path]:
    return sorted(KAS.glob("*.yml"))


@pytest.mark.parametrize("path", kas_files(), ids=lambda p: p.name)
def test_kas_files_follow_kas_schema(path: Path) -> None:
    errors = [e.message for e in jsonschema.Draft7Validator(CONFIGSCHEMA).iter_errors(load(path))]
    assert errors == []
    version = load(path)["header"]["version"]
    assert version == KAS_FORMATS.get(path.name, kas.__file_version__), "the intended format"
    for include in load(path)["header"].get("includes", []):
        if isinstance(include, str):
            assert (PROJECT_ROOT / include).is_file(), (
                f"{include}: kas reads it from the repository"
            )


@pytest.mark.parametrize("config", COMBINATIONS)
def test_documented_combinations_are_complete_configurations(config: str) -> None:
    merged = combined(config)
    merged["header"] = {"version": kas.__file_version__}
    assert list(jsonschema.Draft7Validator(CONFIGSCHEMA).iter_errors(merged)) == []
    assert merged["machine"] and merged["target"]
    # The demo's own images build on poky; Arm's build keeps its own distribution.
    assert merged["distro"] == ("nodistro" if config in ON_ARM_STACK else "poky")
    repos = merged["repos"]
    for part in config.split(":"):
        for include in load(PROJECT_ROOT / part)["header"].get("includes", []):
            if isinstance(include, dict):
                assert include["repo"] in repos, f"include from unknown repo {include['repo']}"
    assert "meta-parsec-demo" in repos["parsec-demo"]["layers"]


def enabled_layers(repos: dict[str, Any]) -> list[tuple[str, str]]:
    """(repository, layer path) pairs a merged configuration enables; kas takes a repository
    without a ``layers`` entry as one layer at its root."""
    return [
        (name, layer)
        for name, repo in repos.items()
        for layer in ((repo or {}).get("layers") or {".": None})
    ]


@pytest.mark.parametrize("config", [c for c in COMBINATIONS if c not in ON_ARM_STACK])
def test_every_layer_dependency_is_enabled(config: str) -> None:
    """On the project's own configurations; Arm's stack enables its layers at its own pins
    (proved by kas and BitBake on a real checkout: test_the_rd1ae_build_parses_...)."""
    merged = combined(config)
    facts = load(UPSTREAM_LAYERS)
    ours = variables((LAYER / "conf/layer.conf").read_text())
    declared: dict[str, list[str]] = {}
    for repo, layer in enabled_layers(merged["repos"]):
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


def test_repositories_are_pinned() -> None:
    """Every repository at a full commit on scarthgap, but Arm's, at its release tag."""
    repos: dict[str, Any] = {}
    for path in kas_files():
        repos.update(load(path).get("repos", {}))
    lock = load(KAS / "base.lock.yml")["overrides"]["repos"]
    stack = rd1ae_stack()
    for name, repo in repos.items():
        if not repo or "url" not in repo:
            continue  # this repository, or one a fragment declares
        if name == "sw-ref-stack":
            assert (repo["url"], repo["tag"]) == (stack["url"], stack["release"])
            # kas refuses a tag and a branch together, and Arm's base.yml gives every
            # repository a default branch: this one's is removed.
            assert "branch" in repo and repo["branch"] is None, "the release, not a branch"
            continue
        assert re.fullmatch(r"[0-9a-f]{40}", repo.get("commit", "")), f"{name} is not pinned"
        assert repo.get("branch") == "scarthgap"
        if name in lock:
            assert lock[name]["commit"] == repo["commit"], f"{name}: lock file and config differ"


def test_the_rd1ae_configuration_is_arm_s_v1_1_build() -> None:
    """kas/fvp-rd-kronos.yml is the build Arm's menu composes for the RD-1 AE demo: its
    repository at the release, its machine, its fragments in the menu's order, then the
    project's overlay; the images land where Arm's baremetal build puts them."""
    stack = rd1ae_stack()
    config = load(KAS / "fvp-rd-kronos.yml")
    includes = config["header"]["includes"]
    arm = [i["file"] for i in includes if isinstance(i, dict) and i["repo"] == "sw-ref-stack"]
    assert arm == stack["kconfig"]["includes"]
    assert includes[-1] == "kas/rd1ae-overlay.yml", "the overlay last: it adds to Arm's build"
    assert config["machine"] == stack["kconfig"]["MACHINE"] == stack["machine"]["name"]
    merged = combined("kas/fvp-rd-kronos.yml")
    assert merged["defaults"]["repos"]["branch"], "Arm's default branch is in the merge"
    assert merged["repos"]["sw-ref-stack"]["branch"] is None, "so the tag alone pins it"
    assert merged["target"] == [stack["layer"]["image"]]
    assert stack["kconfig"]["eula_variable"] in merged["env"], "Arm's stack passes the EULA"
    assert f'"${{TOPDIR}}/{stack["machine"]["tmpdir"]}"' in "".join(
        merged["local_conf_header"].values()
    )
    assert "machine" not in load(KAS / "rd1ae-overlay.yml"), "the menu chooses the machine"


@pytest.fixture
def arm_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kas work directory with a stand-in of Arm's sw-ref-stack: its kas fragments as the
    facts describe them, in a git repository, and kas's context for its own code."""
    import argparse

    from kas.context import create_global_context

    work = tmp_path / "work"
    monkeypatch.setenv("KAS_WORK_DIR", str(work))
    create_global_context(
        argparse.Namespace(no_color=True, update=False, force_checkout=False, skip=[])
    )
    arm = work / "sw-ref-stack"
    for name, content in rd1ae_stack()["fragments"].items():
        (arm / name).parent.mkdir(parents=True, exist_ok=True)
        (arm / name).write_text(yaml.safe_dump({"header": {"version": 16}, **content}))
    identity = ["-c", "user.name=stand-in", "-c", "user.email=stand-in@lab.internal"]
    for command in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "fragments"]):
        subprocess.run(["git", "-C", str(arm), *command], check=True)
    return arm


def test_kas_itself_reads_the_rd1ae_configuration(arm_stand_in: Path, tmp_path: Path) -> None:
    """kas's own include handler and repository factory on kas/fvp-rd-kronos.yml: every include
    resolves, and Arm's repository is pinned by its tag alone (kas refuses a tag with a
    branch, and Arm's base.yml gives every repository a default branch)."""
    from kas.includehandler import IncludeHandler
    from kas.repos import Repo

    handler = IncludeHandler([str(KAS / "fvp-rd-kronos.yml")])
    config, missing = handler.get_config(
        repos={"sw-ref-stack": str(arm_stand_in), "parsec-demo": str(PROJECT_ROOT)}
    )
    assert missing == []
    assert config["machine"] == "fvp-rd-kronos"
    defaults = config.get("defaults", {}).get("repos", {})
    repo = Repo.factory("sw-ref-stack", config["repos"]["sw-ref-stack"], defaults, str(tmp_path))
    assert (repo.tag, repo.branch) == (rd1ae_stack()["release"], None)
    assert list(config["repos"]["parsec-demo"]["layers"]) == ["meta-parsec-demo"]


def test_a_menu_configured_build_takes_the_readme_s_file_beside_it(arm_stand_in: Path) -> None:
    """The README's way in for a user who configured Arm's stack with ``kas menu``: the menu's
    .config.yaml (as kas's menu plugin writes it) and the README's kas file beside it,
    concatenated by kas's own include handler (both outside any repository)."""
    from kas.includehandler import IncludeHandler

    work = arm_stand_in.parent
    stack = rd1ae_stack()
    menu = {
        "header": {"version": 16, "includes": stack["kconfig"]["includes"]},
        "_source_dir": str(arm_stand_in),
        "local_conf_header": {"__menu_config_vars": 'MACHINE = "fvp-rd-kronos"'},
    }
    (work / ".config.yaml").write_text(yaml.safe_dump(menu))
    readme = (PROJECT_ROOT / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "rd1ae-overlay" in b]
    users = yaml.safe_load(block)
    assert users["repos"]["parsec-demo"]["url"] == "<this repository>"
    users["repos"]["parsec-demo"] = {"path": str(PROJECT_ROOT)}
    (work / "parsec-demo.yml").write_text(yaml.safe_dump(users))
    handler = IncludeHandler([str(work / ".config.yaml"), str(work / "parsec-demo.yml")])
    config, missing = handler.get_config(
        repos={"sw-ref-stack": str(arm_stand_in), "parsec-demo": str(PROJECT_ROOT)}
    )
    assert missing == []
    assert "parsec-demo-rd1ae" in config["local_conf_header"]
    assert "meta-parsec-demo" in config["repos"]["parsec-demo"]["layers"]
    assert users["header"]["version"] <= 16, "Arm's kas 4.x reads it"


def test_no_configuration_names_a_machine_that_does_not_exist() -> None:
    """Every machine override of the layer and the kas files is a machine a build has:
    poky's QEMU machines and Arm's fvp-rd-kronos."""
    known = {"qemuall", "qemuarm64", rd1ae_stack()["machine"]["name"]}
    places = [*metadata_files(), *kas_files(), PROJECT_ROOT / "ci/gitlab-ci.yml"]
    places += list((PROJECT_ROOT / "lava").rglob("*.yaml"))
    for path in places:
        text = path.read_text()
        assert "rd1-ae" not in text and "rd1ae.yml" not in text, path.name
        for override in re.findall(r"^\s*[A-Z_]+(?::[\w-]+)*:((?:fvp|qemu)[\w-]*)\b", text, re.M):
            assert override in known, f"{path.name}: {override} is no machine"


def overlay_settings() -> dict[str, str]:
    return variables(load(KAS / "rd1ae-overlay.yml")["local_conf_header"]["parsec-demo-rd1ae"])


def test_the_overlay_replaces_upstream_s_demo_deliberately() -> None:
    """One provider of each name: upstream's demo recipes are masked and the layer's recipes
    of the same names take their place; upstream's test leaves TEST_SUITES, the layer's
    cases join it; the machine's Parsec is upstream Parsec, the target the layer's FVP
    controller."""
    stack = rd1ae_stack()
    conf = overlay_settings()
    masks = [re.compile(m) for m in conf["BBMASK"].split()]
    for name, path in stack["layer"]["demo_recipes"].items():
        upstream = f"/work/sw-ref-stack/{stack['layer']['path']}/{path}"
        assert any(m.search(upstream) for m in masks), f"upstream's {name} is not masked"
        ours = list(LAYER.glob(f"recipes-*/**/{name}_*.bb"))
        assert ours, f"the layer has no {name} to take its place"
        assert not any(m.search(str(o)) for m in masks for o in ours), f"ours {name} is masked"
    for recipe in metadata_files():
        assert not any(m.search(str(recipe)) for m in masks), f"{recipe.name} is masked"
    assert conf["TEST_SUITES:remove"].split() == [stack["layer"]["test_module"]]
    # Every case module of the layer, and only those.
    assert sorted(conf["TEST_SUITES:append"].split()) == LAYER_CASE_MODULES
    assert not list(LAYER.rglob(f"{stack['layer']['test_module']}.py")), "no second copy"
    controller = conf[f"TEST_TARGET:{stack['machine']['name']}"]
    fvp = (LAYER / "lib/oeqa/controllers/parsec_demo_fvp.py").read_text()
    assert re.search(rf"class {controller}\(OEFVPTarget\)", fvp)
    assert 'RSE_CONSOLE = "rse"' in fvp and "rse" in stack["machine"]["consoles"]
    assert conf["PARSEC_DEMO_SERVICE"].split()[0] == "parsec-service", "upstream Parsec"
    image = stack["layer"]["image"]
    assert conf[f"IMAGE_INSTALL:append:pn-{image}"].split() == ["packagegroup-parsec-tls-demo"]


#: A kas work directory in which Arm's RD-1 AE stack is checked out (sw-ref-stack at v1.1 and
#: the layers its fragments name, as ``kas checkout kas/fvp-rd-kronos.yml`` leaves them).
RD1AE_WORKDIR = os.environ.get("PARSEC_DEMO_RD1AE_WORKDIR")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not RD1AE_WORKDIR,
    reason="PARSEC_DEMO_RD1AE_WORKDIR names no kas work directory with Arm's RD-1 AE stack",
)
def test_the_rd1ae_build_parses_with_kas_and_bitbake(tmp_path: Path) -> None:
    """kas reads kas/fvp-rd-kronos.yml with Arm's fragments and BitBake parses the build for
    fvp-rd-kronos: the layer's demo is the one baremetal-image installs, upstream's test has
    left the suites and the layer's controller drives the FVP."""
    assert RD1AE_WORKDIR
    kas_program = Path(sys.executable).with_name("kas")
    env = {**os.environ, "KAS_WORK_DIR": RD1AE_WORKDIR, "ARM_FVP_EULA_ACCEPT": "1"}
    command = [str(kas_program), "shell", str(KAS / "fvp-rd-kronos.yml"), "-c"]
    result = subprocess.run(
        [*command, "bitbake -e baremetal-image; bitbake -e parsec-mbedtls-demo"],
        env=env, capture_output=True, text=True, timeout=3000,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    values = dict(re.findall(r'^([A-Za-z_][\w:-]*)="(.*)"$', output, re.M))
    assert values["MACHINE"] == "fvp-rd-kronos"
    assert "test_40_parsec" not in values["TEST_SUITES"].split()
    assert set(LAYER_CASE_MODULES) <= set(values["TEST_SUITES"].split())
    assert values["TEST_TARGET"] == "ParsecDemoFVPTarget"
    files = re.findall(r'^FILE="(.*)"$', output, re.M)
    assert any("meta-parsec-demo/recipes-parsec/" in f for f in files), files


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


def test_testimage_runs_every_case_module_of_the_layer() -> None:
    """kas/testimage.yml's TEST_SUITES: poky's ping and ssh, then each of the layer's case
    files (one feature each), so that a new case file cannot be left out."""
    local_conf = combined("kas/base.yml:kas/qemuarm64.yml:kas/testimage.yml")["local_conf_header"]
    suites = variables("\n".join(local_conf.values()))["TEST_SUITES"].split()
    assert suites[:2] == ["ping", "ssh"] and sorted(suites[2:]) == LAYER_CASE_MODULES


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


def fetches_the_project(recipe: Path) -> bool:
    """Whether the recipe's source is the project's repository, unpacked as S."""
    values = variables(recipe.read_text())
    return (
        values.get("SRC_URI", "").split()[:1] == ["${PARSEC_DEMO_GIT_URI}"]
        and values.get("S") == "${WORKDIR}/git"
    )


def test_license_checksums_match_the_files() -> None:
    for recipe in layer_files("*.bb"):
        chksum = variables(recipe.read_text()).get("LIC_FILES_CHKSUM", "")
        for name, md5 in re.findall(r"file://([^;\s]+);md5=([0-9a-f]{32})", chksum):
            if name.startswith("${WORKDIR}/"):  # a file the recipe fetches from files/
                path = recipe.parent / "files" / name.removeprefix("${WORKDIR}/")
                assert hashlib.md5(path.read_bytes()).hexdigest() == md5, f"{recipe.name}: {name}"
                continue
            if (
                name == "LICENSE"
                and "MBEDTLS_SRC_URI" in recipe.read_text()
                and "driver" not in recipe.name
            ):
                continue  # Mbed TLS's own LICENSE, checked against the source below
            source = variables(recipe.read_text()).get("S", "")
            if name.startswith("${PARSEC_SE_DRIVER_SOURCE}/"):
                path = DRIVER_SOURCE / name.removeprefix("${PARSEC_SE_DRIVER_SOURCE}/")
            elif fetches_the_project(recipe):
                path = PROJECT_ROOT / name  # S is the repository's top
            elif source.startswith(PROJECT_IN_WORKDIR):
                path = PROJECT_ROOT / source.removeprefix(PROJECT_IN_WORKDIR) / name
            else:
                path = recipe.parent / "files" / name
            assert hashlib.md5(path.read_bytes()).hexdigest() == md5, f"{recipe.name}: {name}"


PATCH_CHECK = """
from parsec_demo.native_build import check_patches_apply
print(" ".join(check_patches_apply()))
"""


def cached_source(recipe: MbedtlsRecipe) -> Path:
    """Where a build keeps the recipe's Mbed TLS tarball (native_build.fetch_source)."""
    return cache_root() / "sources" / f"{DEBIAN_SOURCE_PACKAGE}_{recipe.version}.orig.tar.bz2"


@pytest.mark.slow
def test_the_patches_apply_to_the_pinned_source(request: pytest.FixtureRequest) -> None:
    """The layer's patches apply, in recipe order, to the source the build fetched (checked
    against the recipe's SHA-256): offline, in a network namespace of its own when this runs
    as root. Where no build has fetched it yet, the suite's host build does first."""
    recipe = MbedtlsRecipe.load()
    tarball = cached_source(recipe)
    if not (tarball.is_file() and sha256_of(tarball) == recipe.sha256):
        request.getfixturevalue("host_build")
    assert sha256_of(tarball) == recipe.sha256
    if os.geteuid() == 0 and shutil.which("unshare"):
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


# The layer on its own: a copy of meta-parsec-demo/ is the whole layer.


def test_the_layer_has_no_symbolic_links() -> None:
    assert [str(p.relative_to(LAYER)) for p in LAYER.rglob("*") if p.is_symlink()] == []


def metadata_files(root: Path = LAYER) -> list[Path]:
    """The layer's BitBake metadata (recipes, appends, includes, classes, configuration)."""
    suffixes = {".bb", ".bbappend", ".inc", ".bbclass", ".conf"}
    return sorted(p for p in root.rglob("*") if p.suffix in suffixes and "/files/" not in str(p))


def test_no_path_in_the_metadata_leaves_the_layer() -> None:
    for path in metadata_files():
        text = path.read_text()
        assert "../" not in text, f"{path.relative_to(LAYER)}: a relative path out of its folder"
        assert str(PROJECT_ROOT) not in text, f"{path.relative_to(LAYER)}: a path of this checkout"
        assert not re.search(r"file://\$\{(LAYERDIR|PARSEC_DEMO_LAYERDIR|THISDIR)\}/\.\.", text)
    # The layer finds its project's source itself: no build configuration has to.
    for path in kas_files():
        assert not re.search(r"PARSEC_DEMO_(GIT_URI|SRCREV)", path.read_text()), path.name


def test_a_copied_layer_has_every_file_its_recipes_name(tmp_path: Path) -> None:
    copy = tmp_path / "meta-parsec-demo"
    shutil.copytree(LAYER, copy, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for recipe in metadata_files(copy):
        text = recipe.read_text()
        if recipe.suffix in (".bb", ".bbappend"):
            search = [recipe.parent / "files", recipe.parent / recipe.stem.split("_")[0]]
            for name in src_uri_files(recipe):
                assert any((d / name).exists() for d in search), f"{recipe.name}: {name}"
        for required in re.findall(r"^(?:require|include)\s+(\S+)", text, re.M):
            assert (recipe.parent / required).is_file() or (copy / required).is_file(), required
    # The test PKI the cases install (parsec_demo_machine.PKI_FILES) is in the layer's files.
    for name in machine_steps.PKI_FILES:
        assert (copy / "lib/oeqa/runtime/files/parsec_tls_demo" / name).is_file(), name


def test_no_placeholder_address_reaches_a_build_or_a_job() -> None:
    """No address on a host that cannot be real in the layer, the kas files, the pipelines or
    the LAVA test definition and device files; the recipes' HOMEPAGE is the checkout's own."""
    source = layer_module("parsec_demo_source")
    places = [*LAYER.rglob("*"), *KAS.glob("*.yml"), *(PROJECT_ROOT / "lava").rglob("*")]
    places += [PROJECT_ROOT / ".gitlab-ci.yml", PROJECT_ROOT / "ci/gitlab-ci.yml"]
    places += list((PROJECT_ROOT / ".github").rglob("*.yml"))
    for path in places:
        if not path.is_file() or path.suffix in (".pem", ".key") or ".example." in path.name:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # not text: a compiled file of a build
        for host in re.findall(r"(?:\b[a-z+]+://(?:[^@/\s]+@)?|\bgit@)([\w.-]+)", text):
            assert not source.is_reserved_host(host), f"{path.relative_to(PROJECT_ROOT)}: {host}"
    assert "PARSEC_DEMO_REPOSITORY" not in (LAYER / "conf/layer.conf").read_text()
    for recipe in layer_files("*.bb"):
        assert variables(recipe.read_text())["HOMEPAGE"] == "${PARSEC_DEMO_HOMEPAGE}", recipe.name


def test_the_layer_finds_its_source_in_the_checkout_it_lives_in(tmp_path: Path) -> None:
    """conf/layer.conf's defaults, as BitBake computes them (lib/parsec_demo_source.py): the
    clone the layer is in, at its HEAD, and the web address of its origin without the token
    a CI clone carries; nothing for a layer copied out of its repository."""
    source = layer_module("parsec_demo_source")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    origin = "https://gitlab-ci-token:secret@git.lab.internal/arm/parsec-demo.git"
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", origin], check=True)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()

    class Data(dict[str, str]):
        def getVar(self, name: str) -> str | None:  # BitBake's datastore API
            return self.get(name)

    # What conf/layer.conf reads once.
    layer = str(clone / "meta-parsec-demo")
    d = Data(PARSEC_DEMO_LAYERDIR=layer, PARSEC_DEMO_CHECKOUT=source.checkout_of(layer))
    d["PARSEC_DEMO_CHECKOUT_HEAD"] = source.head_commit(d["PARSEC_DEMO_CHECKOUT"])
    assert d["PARSEC_DEMO_CHECKOUT"] == str(clone)
    assert source.bitbake_git_uri(d) == f"git://{clone};protocol=file;nobranch=1"
    assert source.bitbake_srcrev(d) == head
    assert source.bitbake_homepage(d) == "https://git.lab.internal/arm/parsec-demo"
    assert source.clone_address(origin) == "https://git.lab.internal/arm/parsec-demo.git"
    copied = tmp_path / "copy" / "meta-parsec-demo"
    shutil.copytree(LAYER, copied, ignore=shutil.ignore_patterns("__pycache__"))
    assert source.checkout_of(str(copied)) == ""
    assert source.head_commit("") == ""
    assert source.bitbake_homepage(Data(PARSEC_DEMO_CHECKOUT="")) == ""


def test_the_project_recipes_fetch_the_project_at_one_commit() -> None:
    """The service and the RSE model build the project's repository; the SE driver takes its
    contracts from it. No recipe carries a copy of the contracts or of the target package."""
    recipes = {p.name.split("_")[0]: p for p in layer_files("*.bb")}
    for name in ("parsec-demo-service", "parsec-demo-rse-model-native"):
        values = variables(recipes[name].read_text())
        assert fetches_the_project(recipes[name]), name
        assert values["SRCREV"] == "${PARSEC_DEMO_SRCREV}"
    # The machine-side C code (the driver, its tool, load generator and tests) comes from the
    # same revision as the contracts it must agree with, for the driver and the programs alike.
    for name in ("parsec-se-driver", "parsec-mbedtls-demo"):
        values = variables(recipes[name].read_text())
        assert "${PARSEC_DEMO_GIT_URI};destsuffix=parsec-demo;name=project" in values["SRC_URI"]
        assert values["SRCREV_project"] == "${PARSEC_DEMO_SRCREV}"
        assert "file://parsec-se-driver" not in values["SRC_URI"], name
    driver = variables(recipes["parsec-se-driver"].read_text())
    assert driver["S"] == PROJECT_IN_WORKDIR + "target/parsec-se-driver"
    assert (
        "-DPARSEC_CONTRACTS_DIR=${WORKDIR}/parsec-demo/contracts/parsec" in driver["EXTRA_OECMAKE"]
    )
    programs = variables(recipes["parsec-mbedtls-demo"].read_text())
    assert programs["PARSEC_SE_DRIVER_SOURCE"] == driver["S"]
    assert (DRIVER_SOURCE / "CMakeLists.txt").is_file()
    assert not list(LAYER.rglob("*.c")) and not list(LAYER.rglob("*.h")), "no C code in the layer"
    assert not list(LAYER.rglob("*.proto")) and not list(LAYER.rglob("parsec_service"))


def test_the_checkout_has_what_the_recipes_build() -> None:
    """The recipes fetch this repository at HEAD: the target package with the contracts build
    that takes PROTOC, the contracts, the RSE model's distribution with its console script,
    and a service that notifies systemd if the layer's unit waits for it."""
    assert (PROJECT_ROOT / "contracts/parsec/psa_key_attributes.proto").is_file()
    assert (PROJECT_ROOT / "target/pyproject.toml").is_file()
    assert "PROTOC" in (PROJECT_ROOT / "target/build_contracts.py").read_text()
    model = tomllib.loads((PROJECT_ROOT / "rse-model/pyproject.toml").read_text())["project"]
    assert model["scripts"] == {"parsec-demo-rse-model": "parsec_rse_model.command:main"}
    unit = next(LAYER.rglob("parsec-demo.service")).read_text()
    if re.search(r"^Type=notify$", unit, re.M):
        service_manager = PROJECT_ROOT / "target/parsec_service/service_manager.py"
        assert "READY=1" in service_manager.read_text()


def test_the_model_s_recipe_builds_the_model_alone() -> None:
    """parsec-demo-rse-model-native builds rse-model/ (no toolkit, nothing deleted after), on
    the service recipe's native variant, which installs the package without unit or config."""
    recipes = LAYER / "recipes-parsec/parsec-tls-demo"
    model_text = next(recipes.glob("parsec-demo-rse-model-native_*.bb")).read_text()
    model = variables(model_text)
    assert model["PEP517_SOURCE_PATH"] == "${S}/rse-model"
    assert "do_install" not in model_text
    needed = {"parsec-demo-service-native", "python3-cryptography-native"}
    assert set(model["RDEPENDS:${PN}"].split()) == needed
    assert needed <= set(model["DEPENDS"].split())
    service_text = next(recipes.glob("parsec-demo-service_*.bb")).read_text()
    assert variables(service_text)["BBCLASSEXTEND"] == "native"
    assert re.findall(r"^do_install\S*\(\)", service_text, re.M) == [
        "do_install:append:class-target()"
    ]


def test_the_image_stages_the_rse_model_for_testimage_on_qemu() -> None:
    image_text = next(LAYER.rglob("parsec-tls-demo-image.bb")).read_text()
    image = variables(image_text)
    staged = image["PARSEC_DEMO_TESTIMAGE_DEPENDS:qemuall"].split()
    assert staged == [
        "parsec-demo-rse-model-native:do_populate_sysroot",
        "parsec-demo-rse-model-native:do_addto_recipe_sysroot",
    ]
    depends = re.findall(r'^do_testimage\[depends\] \+= "(.*)"$', image_text, re.M)
    assert depends == ["${PARSEC_DEMO_TESTIMAGE_DEPENDS}"]
    assert image["PARSEC_DEMO_TESTIMAGE_DEPENDS"] == ""


def test_the_target_gets_no_host_toolkit_and_no_cryptography() -> None:
    service = variables(next(LAYER.rglob("parsec-demo-service_*.bb")).read_text())
    assert service["PEP517_SOURCE_PATH"] == "${S}/target"
    runtime = service["RDEPENDS:${PN}:class-target"].split()
    assert "python3-cryptography" not in runtime and "python3-protobuf" in runtime
    group = variables(next(LAYER.rglob("packagegroup-parsec-tls-demo.bb")).read_text())
    assert not any("rse-model" in r or "cryptography" in r for r in group["RDEPENDS:${PN}"].split())


CONTAINER_DIR = LAYER / "recipes-parsec/parsec-demo-client-container"


def test_the_client_container_is_an_oci_image_of_the_client() -> None:
    """meta-virtualization's OCI image support: the container and oci image types, the tag
    and settings from the one definition (the .inc the toolkit reads too), no linux-dummy."""
    text = (CONTAINER_DIR / "parsec-demo-client-container.bb").read_text()
    recipe = variables(text)
    assert re.search(r"^inherit image image-oci$", text, re.M)
    assert "require parsec-demo-client-container.inc" in text.splitlines()
    assert recipe["IMAGE_FSTYPES"] == "container oci"
    assert recipe["IMAGE_CONTAINER_NO_DUMMY"] == "1"
    assert recipe["IMAGE_INSTALL"] == "parsec-mbedtls-demo"
    assert recipe["IMAGE_FEATURES"] == "" and recipe["NO_RECOMMENDATIONS"] == "1"
    assert recipe["OCI_IMAGE_TAG"] == "${PARSEC_DEMO_CLIENT_TAG}"
    assert recipe["OCI_IMAGE_ENTRYPOINT"] == ""
    assert recipe["OCI_IMAGE_ENTRYPOINT_ARGS"] == "${PARSEC_DEMO_CLIENT_CMD}"
    assert recipe["OCI_IMAGE_WORKINGDIR"] == "${PARSEC_DEMO_CLIENT_WORKDIR}"
    assert recipe["OCI_IMAGE_RUNTIME_UID"] == "${PARSEC_DEMO_CLIENT_UID}", "not root"
    assert recipe["PARSEC_DEMO_CLIENT_FILES"] == "${THISDIR}/files/client-container.files"
    assert "parsec_demo_client_container_files;" in recipe["ROOTFS_POSTPROCESS_COMMAND"]
    spec = ClientContainer.load(CONTAINER_DIR)
    assert spec.reference == "localhost/parsec-demo-client:1"
    assert spec.command == ("ssl_client1",) and "/run/parsec" in spec.directories


def test_the_image_carries_the_container_and_loads_it_at_boot() -> None:
    load_recipe = CONTAINER_DIR / "parsec-demo-client-container-load_0.1.0.bb"
    text = load_recipe.read_text()
    recipe = variables(text)
    depends = re.findall(r'^do_install\[depends\] \+= "(.*)"$', text, re.M)
    assert depends == ["parsec-demo-client-container:do_image_complete"]
    # image-oci's link in DEPLOY_DIR_IMAGE: <IMAGE_BASENAME>-<OCI_IMAGE_TAG>-oci.tar
    assert recipe["PARSEC_DEMO_CLIENT_OCI"] == (
        "${DEPLOY_DIR_IMAGE}/parsec-demo-client-container-${PARSEC_DEMO_CLIENT_TAG}-oci.tar"
    )
    assert "install -m 0644 ${PARSEC_DEMO_CLIENT_OCI} ${D}${PARSEC_DEMO_CLIENT_ARCHIVE}" in text
    assert recipe["PACKAGE_ARCH"] == "${MACHINE_ARCH}"
    assert recipe["SYSTEMD_SERVICE:${PN}"] == "parsec-demo-client-container.service"
    assert recipe["RDEPENDS:${PN}"] == "podman"
    for placeholder in ("@ARCHIVE@", "@REFERENCE@"):
        assert f"s|{placeholder}|" in text
        assert placeholder in (CONTAINER_DIR / "files" / LOAD_UNIT).read_text()
    group = variables(next(LAYER.rglob("packagegroup-parsec-tls-demo.bb")).read_text())
    assert "parsec-demo-client-container-load" in group["RDEPENDS:${PN}"].split()
    script = CONTAINER_DIR / "files/load-client-container"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0


# The README, as yocto-check-layer's test_readme reads it (scripts/lib/checklayer/cases/
# common.py): the first README* file, not empty; a README that mentions another README is let
# off the rest, so this one must not; "maintainer", "patch" and an email address.


def layer_readme() -> Path:
    found = sorted(glob.glob(str(LAYER / "[Rr][Ee][Aa][Dd][Mm][Ee]*")))
    assert found, "the layer has no README"
    return Path(found[0])


def test_the_readme_passes_yocto_check_layers_readme_checks() -> None:
    text = layer_readme().read_text()
    assert text.strip()
    assert not re.search("README", text, re.IGNORECASE), "it would be let off the checks"
    assert "maintainer" in text.lower() and "patch" in text.lower()
    assert re.match(r"[^@]+@[^@]+", text)
    # And the substance behind the keywords.
    sections = re.findall(r"^## (.+)$", text, re.M)
    assert {"Dependencies", "Recipes", "kas files", "Maintainer", "Patches"} <= set(sections)
    assert re.search(r"^[^\n]*<[\w.+-]+@[\w.-]+\.[a-z]+>$", text, re.M), "maintainer's address"
    assert not re.search(r"\b[Ss]tep \d", text), "no internal step numbers"
    for recipe in layer_files("*.bb", "*.bbappend"):
        name = recipe.stem.split("_")[0] + ("_%.bbappend" if recipe.suffix == ".bbappend" else "")
        assert f"`{name}`" in text, f"the recipe table lacks {name}"
    for kas_file in (p.name for p in kas_files() if not p.name.endswith(".lock.yml")):
        assert f"`{kas_file}`" in text
    conf = variables((LAYER / "conf/layer.conf").read_text())
    for collection in conf["LAYERDEPENDS_parsec-demo"].split():
        assert f"`{collection}`" in text, f"the dependency table lacks {collection}"


POKY = os.environ.get("PARSEC_DEMO_POKY")
needs_poky = pytest.mark.skipif(not POKY, reason="PARSEC_DEMO_POKY names no poky checkout")


@needs_poky
def test_poky_checklayer_passes_the_readme() -> None:
    """yocto-check-layer's own test_readme, run on this layer as a software layer."""
    assert POKY
    for lib in (Path(POKY) / "scripts/lib", Path(POKY) / "meta/lib", Path(POKY) / "bitbake/lib"):
        if str(lib) not in sys.path:
            sys.path.insert(0, str(lib))
    from checklayer import LayerType  # type: ignore[import-not-found]
    from checklayer.cases.common import CommonCheckLayer  # type: ignore[import-not-found]

    context = types.SimpleNamespace(
        layer={"type": LayerType.SOFTWARE, "path": str(LAYER), "name": "meta-parsec-demo"}
    )

    case = CommonCheckLayer("test_readme")
    case.tc = context
    result = unittest.TestResult()
    case.run(result)
    assert result.testsRun == 1 and not result.skipped
    assert result.failures == [] and result.errors == []


def build_directory(tmp_path: Path, layers: list[str], local_conf: str) -> Path:
    """A BitBake build directory with these layers and this local.conf."""
    build = tmp_path / "build"
    (build / "conf").mkdir(parents=True)
    (build / "conf/bblayers.conf").write_text(
        f'BBPATH = "${{TOPDIR}}"\nBBFILES ?= ""\nBBLAYERS = "{" ".join(layers)}"\n'
    )
    (build / "conf/local.conf").write_text(local_conf)
    return build


#: A parse of poky's meta and this layer alone: the other layers it depends on are not there, so
#: the configuration says so (LAYERDEPENDS, the bbappend of meta-parsec's recipe, the container
#: image, whose image-oci class is meta-virtualization's); it parses
#: only, so the host tools a build needs, the sanity checks and the network are left out.
PARSE_ALONE_CONF = """
MACHINE = "qemuarm64"
DISTRO = ""
LAYERDEPENDS_parsec-demo = "core"
BBMASK += "/parsec-demo-client-container/parsec-demo-client-container\\.bb$"
BB_DANGLINGAPPENDS_WARNONLY = "1"
INHERIT:remove = "sanity"
HOSTTOOLS:remove = "chrpath cpio diffstat gawk"
BB_NO_NETWORK = "1"
INIT_MANAGER = "systemd"
"""


@needs_poky
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_copy_of_the_layer_parses_with_poky_alone(tmp_path: Path) -> None:
    """``bitbake -p`` with poky's meta and a copy of the layer (no repository around it)."""
    assert POKY
    layer = tmp_path / "meta-parsec-demo"
    shutil.copytree(LAYER, layer, ignore=shutil.ignore_patterns("__pycache__"))
    # Out of its repository, the layer is told where the project's source is.
    build = build_directory(
        tmp_path, [f"{POKY}/meta", str(layer)], PARSE_ALONE_CONF + COPIED_LAYER_SOURCE
    )
    result = run_bitbake(["-p"], build, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"Parsing of \d+ \.bb files complete .* 0 errors", output), output[-2000:]
    assert "ERROR" not in output, output[-4000:]
    # Without that, one line says which settings it needs.
    (build / "conf/local.conf").write_text(PARSE_ALONE_CONF)
    query = ["-r", "parsec-demo-service", "--value", "-q", "SRCREV"]
    result = run_bitbake(query, build, tmp_path, program="bitbake-getvar")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "set PARSEC_DEMO_GIT_URI and PARSEC_DEMO_SRCREV" in output, output[-4000:]


#: A copied layer's source: a mirror of the project (parsing only: nothing is fetched).
COPIED_LAYER_SOURCE = """
PARSEC_DEMO_GIT_URI = "git://git.lab.internal/parsec-demo.git;protocol=https;branch=main"
PARSEC_DEMO_SRCREV = "0123456789abcdef0123456789abcdef01234567"
"""


@needs_poky
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_clone_s_layer_added_with_bitbake_layers_builds_its_own_source(tmp_path: Path) -> None:
    """What a user does in any scarthgap build: ``bitbake-layers add-layer`` of the layer in a
    clone of the project, no file edited. With PARSEC_DEMO_YOCTO_LAYERS the layers it depends on
    are added first, as a user adds them; without, the parse says LAYERDEPENDS is met. The
    recipes then fetch the clone at its HEAD."""
    assert POKY
    clone = tmp_path / "parsec-demo"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    conf = TASK_GRAPH_CONF if YOCTO_LAYERS else PARSE_ALONE_CONF
    build = build_directory(tmp_path, [f"{POKY}/meta", f"{POKY}/meta-poky"], conf)
    if YOCTO_LAYERS:
        layers = [str(Path(YOCTO_LAYERS) / relative) for relative in DEPENDENCY_LAYERS]
        added = run_bitbake(["add-layer", *layers], build, tmp_path, program="bitbake-layers")
        assert added.returncode == 0, (added.stdout + added.stderr)[-3000:]
    added = run_bitbake(
        ["add-layer", str(clone / "meta-parsec-demo")], build, tmp_path, program="bitbake-layers"
    )
    assert added.returncode == 0, (added.stdout + added.stderr)[-3000:]
    assert str(clone / "meta-parsec-demo") in (build / "conf/bblayers.conf").read_text()
    for variable, expected in [
        ("SRCREV", head),
        ("SRC_URI", f"git://{clone};protocol=file;nobranch=1"),
    ]:
        query = ["-r", "parsec-demo-service", "--value", "-q", variable]
        result = run_bitbake(query, build, tmp_path, program="bitbake-getvar")
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        assert result.stdout.split()[0] == expected, f"{variable}: {result.stdout[-500:]}"


def run_bitbake(
    args: list[str],
    build: Path,
    tmp_path: Path,
    passed: dict[str, str] | None = None,
    program: str = "bitbake",
) -> subprocess.CompletedProcess[str]:
    """poky's bitbake (or another ``program`` of it) with ``args`` in the build directory
    ``build``; ``passed``: variables set in its environment and put on its passthrough list,
    as kas does with its ``env``."""
    assert POKY
    # BitBake insists on the en_US.UTF-8 locale: compiled here when the system lacks it.
    locales = tmp_path / "locale"
    locales.mkdir(exist_ok=True)
    subprocess.run(
        ["localedef", "-i", "en_US", "-f", "UTF-8", str(locales / "en_US.UTF-8")],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        "PATH": f"{POKY}/bitbake/bin:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LANG": "en_US.UTF-8",
        "LOCPATH": str(locales),
        "BB_ENV_PASSTHROUGH_ADDITIONS": " ".join(["LOCPATH", *(passed or {})]),
        **(passed or {}),
    }
    return subprocess.run(
        [program, *args], cwd=build, env=env, capture_output=True, text=True, timeout=2400
    )


#: A directory holding the other layers the layer depends on (scarthgap checkouts named as
#: their repositories): meta-openembedded, meta-security, meta-clang, meta-virtualization.
YOCTO_LAYERS = os.environ.get("PARSEC_DEMO_YOCTO_LAYERS")
#: Those layers' collections, as kas/base.yml enables them (meta-filesystems for
#: meta-virtualization).
DEPENDENCY_LAYERS = (
    "meta-openembedded/meta-oe",
    "meta-openembedded/meta-python",
    "meta-openembedded/meta-networking",
    "meta-openembedded/meta-filesystems",
    "meta-security/meta-parsec",
    "meta-clang",
    "meta-virtualization",
)
TASK_GRAPH_CONF = """
MACHINE = "qemuarm64"
DISTRO = "poky"
DISTRO_FEATURES:append = " virtualization seccomp"
INIT_MANAGER = "systemd"
INHERIT:remove = "sanity"
HOSTTOOLS:remove = "chrpath cpio diffstat gawk"
BB_NO_NETWORK = "1"
"""


@needs_poky
@pytest.mark.slow
@pytest.mark.timeout(2400)
@pytest.mark.skipif(
    not YOCTO_LAYERS, reason="PARSEC_DEMO_YOCTO_LAYERS names no directory of the other layers"
)
def test_the_task_graphs_build_the_client_container_and_the_model_alone(tmp_path: Path) -> None:
    """``bitbake -g`` with copies of every layer the layer depends on: the image's task graph
    builds the client container with meta-virtualization's image-oci and installs its OCI
    archive through parsec-demo-client-container-load; the RSE model's builds the model alone,
    on the target package's native variant and cryptography."""
    assert POKY and YOCTO_LAYERS
    layers = [f"{POKY}/meta", f"{POKY}/meta-poky"]
    for relative in DEPENDENCY_LAYERS:
        top = relative.split("/")[0]
        if not (tmp_path / top).exists():
            shutil.copytree(Path(YOCTO_LAYERS) / top, tmp_path / top, symlinks=True)
        layers.append(str(tmp_path / relative))
    shutil.copytree(
        LAYER, tmp_path / "meta-parsec-demo", ignore=shutil.ignore_patterns("__pycache__")
    )
    layers.append(str(tmp_path / "meta-parsec-demo"))
    build = build_directory(tmp_path, layers, TASK_GRAPH_CONF + COPIED_LAYER_SOURCE)
    result = run_bitbake(["-g", "parsec-tls-demo-image"], build, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    check_task_graph((build / "task-depends.dot").read_text())
    result = run_bitbake(["-g", "parsec-demo-rse-model-native"], build, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    check_model_task_graph((build / "task-depends.dot").read_text())


def check_task_graph(graph: str) -> None:
    """The client container in ``bitbake -g parsec-tls-demo-image``'s task-depends.dot."""
    edges = set(re.findall(r'^"([^"]+)" -> "([^"]+)"', graph, re.M))
    container, load = "parsec-demo-client-container", "parsec-demo-client-container-load"
    # Its rootfs is the client's package; the container type is a tar (IMAGE_TYPEDEP), which
    # image-oci's umoci turns into the OCI image; do_image_complete waits for both.
    assert (f"{container}.do_rootfs", "parsec-mbedtls-demo.do_package_write_rpm") in edges
    assert (f"{container}.do_image_oci", f"{container}.do_image_tar") in edges
    assert (f"{container}.do_image_oci", "umoci-native.do_populate_sysroot") in edges
    assert (f"{container}.do_image_complete", f"{container}.do_image_oci") in edges
    # The image's rootfs takes the package that installs the archive, made after it.
    assert (f"{load}.do_install", f"{container}.do_image_complete") in edges
    assert ("parsec-tls-demo-image.do_rootfs", f"{load}.do_package_write_rpm") in edges


def check_model_task_graph(graph: str) -> None:
    """The RSE model in ``bitbake -g parsec-demo-rse-model-native``'s task-depends.dot: its
    sysroot has the target package's native variant and cryptography, and nothing of the
    toolkit's dependencies or of protobuf is built for it."""
    edges = set(re.findall(r'^"([^"]+)" -> "([^"]+)"', graph, re.M))
    model = "parsec-demo-rse-model-native"
    for needed in ("parsec-demo-service-native", "python3-cryptography-native"):
        assert (f"{model}.do_prepare_recipe_sysroot", f"{needed}.do_populate_sysroot") in edges
    recipes = {task.rpartition(".")[0] for edge in edges for task in edge}
    for absent in ("python3-paramiko-native", "python3-pexpect-native", "python3-pyyaml-native"):
        assert absent not in recipes, f"{absent} is built for the model"
    model_needs = {b.rpartition(".")[0] for a, b in edges if a.startswith(f"{model}.")}
    assert "protobuf-native" not in model_needs and "python3-protobuf-native" not in model_needs


def test_the_ci_cache_sets_the_shared_state_mirror_and_the_hash_server_from_the_environment() -> (
    None
):
    config = load(KAS / "ci-cache.yml")
    names = {"PARSEC_DEMO_SSTATE_MIRROR", "PARSEC_DEMO_HASHSERVE", "PARSEC_DEMO_HASHSERVE_UPSTREAM"}
    assert set(config["env"]) == names, "kas passes exactly these to bitbake"
    assert config["env"]["PARSEC_DEMO_SSTATE_MIRROR"] is None, "no default: the runner names it"
    assert config["env"]["PARSEC_DEMO_HASHSERVE"] is None
    conf = variables(config["local_conf_header"]["ci-cache"])
    assert conf["BB_SIGNATURE_HANDLER"] == "OEEquivHash"
    assert conf["BB_HASHSERVE"] == "${PARSEC_DEMO_HASHSERVE}"
    assert conf["BB_HASHSERVE_UPSTREAM"] == "${PARSEC_DEMO_HASHSERVE_UPSTREAM}"
    assert conf["SSTATE_MIRRORS"] == (
        "file://.* ${PARSEC_DEMO_SSTATE_MIRROR}/PATH;downloadfilename=PATH"
    )


@needs_poky
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_ci_cache_reaches_bitbake_with_a_running_hash_server(tmp_path: Path) -> None:
    """What kas does with ci-cache.yml (its env names on bitbake's passthrough list, its
    local_conf_header in local.conf), against poky's own bitbake-hashserv: ``bitbake -e`` shows
    the hash server, the signature handler and the mirror the runner's environment named."""
    assert POKY
    config = load(KAS / "ci-cache.yml")
    port = socket_port()
    server = subprocess.Popen(
        [f"{POKY}/bitbake/bin/bitbake-hashserv", "--bind", f"127.0.0.1:{port}",
         "--database", str(tmp_path / "hashserv.db")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        local_conf = PARSE_ALONE_CONF + config["local_conf_header"]["ci-cache"]
        build = build_directory(tmp_path, [f"{POKY}/meta", str(LAYER)], local_conf)
        env = {
            "PARSEC_DEMO_SSTATE_MIRROR": "https://sstate.lab.internal/parsec-demo",
            "PARSEC_DEMO_HASHSERVE": f"127.0.0.1:{port}",
            "PARSEC_DEMO_HASHSERVE_UPSTREAM": "",
        }
        result = run_bitbake(["-e"], build, tmp_path, env)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    values = dict(re.findall(r'^([A-Z_]+)="(.*)"$', result.stdout, re.M))
    assert values["BB_HASHSERVE"] == f"127.0.0.1:{port}"
    assert values["BB_SIGNATURE_HANDLER"] == "OEEquivHash"
    assert values["SSTATE_MIRRORS"] == (
        "file://.* https://sstate.lab.internal/parsec-demo/PATH;downloadfilename=PATH"
    )


def socket_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
