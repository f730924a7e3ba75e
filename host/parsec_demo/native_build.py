"""Building the demo's C programs on this machine: Mbed TLS 3.6 with the layer's patches, and
the Parsec secure-element driver.

The layer is the single source of truth. The Mbed TLS version and the patch order are read from
the recipe (``parsec-mbedtls-demo_<PV>.bb``), the SHA-256 of Debian's tarball of that release
from ``parsec-mbedtls-source.inc``, the configuration from ``mbedtls-demo.config``; the driver
from ``target/parsec-se-driver``, as its recipe builds it. The source comes from Debian's source
package of that version (trixie carries 3.6.6), fetched with ``apt-get source`` through a
private sources list under ``~/.cache/parsec-demo/apt`` (the system's apt configuration is never
touched), and its tarball must match the recipe's checksum.

The build lives in the user's cache, in ``~/.cache/parsec-demo/host/<hash of its inputs>/``
(``paths.cache_root``), so every checkout of the same sources reuses it. The driver is built
twice: as the demo links it, and, for the tests only, with AddressSanitizer and
UndefinedBehaviorSanitizer (``PARSEC_SE_DRIVER_SANITIZE``) in ``driver-sanitize/``: its unit
tests and the harness that drives its entry points (``bin/parsec-se-driver-tests-sanitized``,
``bin/parsec-se-driver-harness``). Both builds also make the load generator
``parsec-se-driver-bench`` (linked with the patched Mbed TLS's ``libmbedcrypto``, built
first): ``bin/parsec-se-driver-bench`` for ``parsec-demo bench parsec``,
``bin/parsec-se-driver-bench-sanitized`` for its test.

Every step logs to ``logs/<step>.log`` there; a failed step says which and prints the tail of
its log. A finished build records the hash of all its inputs, so nothing is rebuilt until an
input changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from parsec_demo_processes import log_failure

from .errors import UserError
from .paths import cache_root, layer_dir, project_root

DEBIAN_SOURCE_PACKAGE = "mbedtls"
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The demo's programs and where Mbed TLS's build puts them: the client and the servers, the
#: client's key tool (the Parsec SE driver's tools/parsec_client_key.c) and Mbed TLS's
#: cert_write, which issues the client's certificate from its CSR.
PROGRAM_DIRS = {
    "ssl_client1": "programs/ssl",
    "ssl_server": "programs/ssl",
    "ssl_server2": "programs/ssl",
    "parsec_client_key": "programs/ssl",
    "cert_write": "programs/x509",
}
PROGRAMS = tuple(PROGRAM_DIRS)

#: Progress of the build; the command line shows it as ``[build] ...`` lines.
logger = logging.LoggerAdapter(logging.getLogger(__name__), {"tag": "build"})


class BuildError(UserError):
    pass


# The repository's parts, found when a build needs them (importing this module needs none).


def demo_recipe_dir() -> Path:
    return layer_dir() / "recipes-parsec/parsec-tls-demo"


def driver_dir() -> Path:
    """The Parsec SE driver's sources (with its tools, load generator and tests): the
    machine-side C code, beside the target's Python package."""
    return project_root() / "target/parsec-se-driver"


def contracts_dir() -> Path:
    """The Parsec contracts (one copy for the driver, the service and the recipes)."""
    return project_root() / "contracts/parsec"


def build_root() -> Path:
    return project_root() / "build"


def host_build_dir(fingerprint: str) -> Path:
    """The host build of the inputs whose hash is ``fingerprint``, in the user's cache."""
    return cache_root() / "host" / fingerprint[:16]


def input_name(path: Path) -> str:
    """How an input file is named in a fingerprint: relative to the checkout, to the user's
    cache (the image's SSH key), or to the installed toolkit package for its own files."""
    for base, prefix in (
        (project_root(), Path()),
        (cache_root(), Path("cache")),
        (Path(__file__).resolve().parent, Path("parsec_demo")),
    ):
        if path.is_relative_to(base):
            return str(prefix / path.relative_to(base))
    raise ValueError(f"{path} is neither in the checkout, the cache nor the toolkit")


@dataclass(frozen=True)
class MbedtlsRecipe:
    """What the layer's recipe pins: version, tarball checksum, patches, configuration."""

    version: str
    sha256: str
    patches: tuple[Path, ...]
    config: Path

    @classmethod
    def load(cls, recipe_dir: Path | None = None) -> MbedtlsRecipe:
        recipe_dir = recipe_dir or demo_recipe_dir()
        recipes = sorted(recipe_dir.glob("parsec-mbedtls-demo_*.bb"))
        if len(recipes) != 1:
            raise BuildError(f"expected one parsec-mbedtls-demo recipe in {recipe_dir}")
        recipe = recipes[0]
        version = recipe.stem.split("_", 1)[1]
        source_inc = recipe_dir / "parsec-mbedtls-source.inc"
        checksum = re.search(
            r'^PARSEC_DEMO_DEBIAN_ORIG_SHA256\s*=\s*"([0-9a-f]{64})"', source_inc.read_text(), re.M
        )
        if checksum is None:
            raise BuildError(f"{source_inc.name} pins no PARSEC_DEMO_DEBIAN_ORIG_SHA256")
        files = re.findall(r"file://([^\s;\"\\]+)", recipe.read_text())
        patches = tuple(recipe_dir / "files" / f for f in files if f.endswith(".patch"))
        configs = [recipe_dir / "files" / f for f in files if f.endswith(".config")]
        if len(configs) != 1:
            raise BuildError(f"{recipe.name} must name one .config file")
        for path in (*patches, *configs):
            if not path.is_file():
                raise BuildError(f"{recipe.name} names {path.name}, which is missing")
        return cls(version, checksum.group(1), patches, configs[0])

    def config_actions(self) -> list[tuple[str, str]]:
        actions = []
        for line in self.config.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            action, _, option = line.partition(" ")
            if action not in ("set", "unset") or not option:
                raise BuildError(f"{self.config.name}: cannot read {line!r}")
            actions.append((action, option.strip()))
        return actions


@dataclass(frozen=True)
class HostBuild:
    """Where a finished host build put its programs."""

    root: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    def program(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def driver_tests(self) -> Path:
        return self.bin_dir / "parsec-se-driver-tests"

    @property
    def driver_tests_sanitized(self) -> Path:
        """The driver's unit tests built with ASan and UBSan."""
        return self.bin_dir / "parsec-se-driver-tests-sanitized"

    @property
    def driver_harness(self) -> Path:
        """The driver's entry points driven from stdin, built with ASan and UBSan."""
        return self.bin_dir / "parsec-se-driver-harness"

    @property
    def driver_bench(self) -> Path:
        """psa_verify_hash through Mbed TLS's PSA core and the driver from N processes."""
        return self.bin_dir / "parsec-se-driver-bench"

    @property
    def driver_bench_sanitized(self) -> Path:
        """The load generator built with ASan and UBSan, for its test."""
        return self.bin_dir / "parsec-se-driver-bench-sanitized"

    @property
    def client_key_sanitized(self) -> Path:
        """parsec_client_key built with ASan and UBSan (with the driver), for its tests."""
        return self.bin_dir / "parsec_client_key-sanitized"

    @property
    def test_programs(self) -> tuple[Path, ...]:
        return (self.driver_tests, self.driver_tests_sanitized, self.driver_harness)

    @property
    def driver_programs(self) -> tuple[Path, ...]:
        """Everything the driver's two builds put in ``bin/``."""
        return (
            *self.test_programs,
            self.driver_bench,
            self.driver_bench_sanitized,
            self.client_key_sanitized,
        )

    @property
    def source_dir(self) -> Path:
        return self.root / "mbedtls-src"


def run_step(
    step: str,
    command: Sequence[str | Path],
    log_dir: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run one build command (of the host build or the dev image), its command line and output
    appended to the step's log, ``<log_dir>/<step>.log``; a failure is a BuildError with the
    log's last lines."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{step}.log"
    words = [str(c) for c in command]
    logger.debug("$ %s  (in %s, log %s)", shlex.join(words), cwd or ".", log)
    with open(log, "a") as out:
        out.write(f"$ {shlex.join(words)}\n")
        out.flush()
        result = subprocess.run(words, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        headline = f"step '{step}' failed (exit {result.returncode})"
        raise BuildError(log_failure(headline, log))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the source -------------------------------------------------------------------------------


def _apt_options(apt_dir: Path) -> list[str]:
    return [
        "-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def fetch_source(recipe: MbedtlsRecipe, log_dir: Path) -> Path:
    """The Mbed TLS tarball of the recipe's version, from Debian, checked against the pin."""
    sources = cache_root() / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    with open(sources / ".lock", "w") as lock:  # one download at a time, whoever asks
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_source_locked(recipe, sources, log_dir)


def _fetch_source_locked(recipe: MbedtlsRecipe, sources: Path, log_dir: Path) -> Path:
    tarball = sources / f"{DEBIAN_SOURCE_PACKAGE}_{recipe.version}.orig.tar.bz2"
    if tarball.exists() and sha256_of(tarball) == recipe.sha256:
        return tarball
    apt_dir = cache_root() / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "sources.list").write_text(f"deb-src {DEBIAN_MIRROR} {DEBIAN_SUITE} main\n")
    options = _apt_options(apt_dir)
    logger.info(f"fetching the Debian source package of Mbed TLS {recipe.version} ({DEBIAN_SUITE})")
    run_step("fetch-source", ["apt-get", *options, "update"], log_dir)
    listing = subprocess.run(
        ["apt-cache", *options, "showsrc", DEBIAN_SOURCE_PACKAGE],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    versions = re.findall(r"^Version: (\S+)$", listing.stdout, re.M)
    wanted = [v for v in versions if v.split("-")[0].split(":")[-1] == recipe.version]
    if not wanted:
        raise BuildError(
            f"Debian {DEBIAN_SUITE} has no {DEBIAN_SOURCE_PACKAGE} {recipe.version} "
            f"(it has {', '.join(versions) or 'none'})"
        )
    run_step(
        "fetch-source",
        ["apt-get", *options, "source", "--download-only", f"{DEBIAN_SOURCE_PACKAGE}={wanted[0]}"],
        log_dir,
        cwd=sources,
    )
    actual = sha256_of(tarball)
    if actual != recipe.sha256:
        tarball.rename(tarball.with_suffix(".rejected"))
        raise BuildError(
            f"{tarball.name} has SHA-256 {actual}, the recipe pins {recipe.sha256}: refusing it"
        )
    return tarball


def prepare_tree(recipe: MbedtlsRecipe, tarball: Path, destination: Path, log_dir: Path) -> Path:
    """Unpack, apply the layer's patches in recipe order, apply the demo configuration."""
    if destination.exists():
        shutil.rmtree(destination)
    staging = destination.with_name(destination.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    # GNU tar (essential on Debian) refuses members that would land outside the staging
    # directory, on every Python: tarfile's extraction filters need Python 3.11.4, newer than
    # Debian 12's 3.11.2. Ownership and modes are the extracting user's.
    run_step(
        "unpack",
        ["tar", "-xf", tarball, "-C", staging, "--no-same-owner", "--no-same-permissions"],
        log_dir,
    )
    [top] = list(staging.iterdir())
    for patch in recipe.patches:
        logger.info(f"applying {patch.name}")
        run_step("patch", ["patch", "-p1", "--forward", "--batch", "-i", patch], log_dir, cwd=top)
    for action, option in recipe.config_actions():
        run_step(
            "configure", [sys.executable, "scripts/config.py", action, option], log_dir, cwd=top
        )
    top.rename(destination)
    shutil.rmtree(staging)
    return destination


def check_patches_apply(recipe: MbedtlsRecipe | None = None) -> list[str]:
    """Apply the patches to a scratch copy of the pinned source; returns the patch names."""
    recipe = recipe or MbedtlsRecipe.load()
    scratch = build_root() / "patch-check"
    log_dir = scratch / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    tarball = fetch_source(recipe, log_dir)
    prepare_tree(recipe, tarball, scratch / "tree", log_dir)
    shutil.rmtree(scratch)
    return [p.name for p in recipe.patches]


# --- the build --------------------------------------------------------------------------------


def inputs_fingerprint(recipe: MbedtlsRecipe) -> str:
    digest = hashlib.sha256(recipe.sha256.encode())
    files = [*recipe.patches, recipe.config, Path(__file__).resolve()]
    files += sorted(p for d in (driver_dir(), contracts_dir()) for p in d.rglob("*") if p.is_file())
    for path in files:
        digest.update(input_name(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _cmake(
    step: str,
    source: Path,
    build_dir: Path,
    options: Sequence[str],
    log_dir: Path,
    targets: Sequence[str] = (),
) -> None:
    """Configure and build one CMake project; its output goes to ``<step>.log``."""
    run_step(step, ["cmake", "-S", source, "-B", build_dir, *options], log_dir)
    build: list[str | Path] = ["cmake", "--build", build_dir, f"-j{os.cpu_count() or 2}"]
    if targets:
        build += ["--target", *targets]
    run_step(step, build, log_dir)


def build_host(force: bool = False) -> HostBuild:
    """Build (if any input changed) and return the host build of the demo programs.

    One build at a time: a second caller (another test session, the demo) waits for the first
    one's lock and then finds the build done."""
    recipe = MbedtlsRecipe.load()
    fingerprint = inputs_fingerprint(recipe)
    host_build = host_build_dir(fingerprint)
    host_build.mkdir(parents=True, exist_ok=True)
    with open(host_build / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_host_locked(recipe, fingerprint, host_build, force)


def _build_host_locked(
    recipe: MbedtlsRecipe, fingerprint: str, host_build: Path, force: bool
) -> HostBuild:
    result = HostBuild(host_build)
    stamp = host_build / "inputs.sha256"
    if (
        not force
        and stamp.exists()
        and stamp.read_text().strip() == fingerprint
        and all(result.program(p).exists() for p in PROGRAMS)
        and all(p.exists() for p in result.driver_programs)
    ):
        return result
    logger.info(
        "Building Mbed TLS's programs and the Parsec SE driver for this machine (the first "
        "time, or after a change to their sources; about two minutes, then they are reused)"
    )
    started = time.monotonic()
    log_dir = host_build / "logs"
    driver_build = host_build / "driver"
    sanitized_build = host_build / "driver-sanitize"
    mbedtls_build = host_build / "mbedtls"
    for stale in (log_dir, driver_build, sanitized_build, mbedtls_build):
        if stale.exists():  # a CMake cache remembers its source paths: start clean
            shutil.rmtree(stale)
    stamp.unlink(missing_ok=True)
    tarball = fetch_source(recipe, log_dir)
    logger.info(f"preparing Mbed TLS {recipe.version} with {len(recipe.patches)} patches")
    source = prepare_tree(recipe, tarball, result.source_dir, log_dir)
    driver_libraries = f"{driver_build / 'libparsec-se-driver.a'};protobuf-c"
    mbedtls_options = [
        "-DENABLE_TESTING=OFF",
        "-DMBEDTLS_FATAL_WARNINGS=ON",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        f"-DPARSEC_SE_DRIVER_LIBRARIES={driver_libraries}",
        f"-DPARSEC_SE_DRIVER_SOURCE_DIR={driver_dir()}",
    ]
    # libmbedcrypto and libmbedx509 first (they do not need the driver): the driver's load
    # generator and its sanitized parsec_client_key link them.
    logger.info("building Mbed TLS's libmbedcrypto and libmbedx509")
    _cmake(
        "mbedtls", source, mbedtls_build, mbedtls_options, log_dir,
        targets=("mbedcrypto", "mbedx509"),
    )  # fmt: skip
    driver_options = [
        f"-DMBEDTLS_INCLUDE_DIR={source / 'include'}",
        f"-DPARSEC_CONTRACTS_DIR={contracts_dir()}",
        "-DPARSEC_SE_DRIVER_WERROR=ON",
        f"-DPARSEC_SE_DRIVER_MBEDCRYPTO_LIBRARY={mbedtls_build / 'library/libmbedcrypto.a'}",
        f"-DPARSEC_SE_DRIVER_MBEDX509_LIBRARY={mbedtls_build / 'library/libmbedx509.a'}",
    ]

    logger.info("building the Parsec SE driver and its load generator")
    _cmake(
        "driver",
        driver_dir(),
        driver_build,
        [*driver_options, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
        log_dir,
    )
    logger.info("building the Parsec SE driver's tests with ASan and UBSan")
    sanitize = ["-DCMAKE_BUILD_TYPE=Debug", "-DPARSEC_SE_DRIVER_SANITIZE=ON"]
    _cmake("driver-sanitize", driver_dir(), sanitized_build, [*driver_options, *sanitize], log_dir)
    logger.info(f"building {', '.join(PROGRAMS)} (warnings are errors)")
    _cmake("mbedtls", source, mbedtls_build, mbedtls_options, log_dir, targets=PROGRAMS)

    result.bin_dir.mkdir(parents=True, exist_ok=True)
    for program in PROGRAMS:
        shutil.copy2(mbedtls_build / PROGRAM_DIRS[program] / program, result.program(program))
    shutil.copy2(driver_build / "parsec-se-driver-tests", result.driver_tests)
    shutil.copy2(sanitized_build / "parsec-se-driver-tests", result.driver_tests_sanitized)
    shutil.copy2(sanitized_build / "parsec-se-driver-harness", result.driver_harness)
    shutil.copy2(driver_build / "parsec-se-driver-bench", result.driver_bench)
    shutil.copy2(sanitized_build / "parsec-se-driver-bench", result.driver_bench_sanitized)
    shutil.copy2(sanitized_build / "parsec_client_key", result.client_key_sanitized)
    stamp.write_text(fingerprint + "\n")
    logger.info(f"built in {time.monotonic() - started:.0f} s: {result.bin_dir}")
    return result
