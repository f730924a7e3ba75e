"""The CI pipelines: valid for their CI systems (check-jsonschema vendors the schemas) and sound
as pipelines, checked from their structure rather than from substrings:

- stages run in the declared order, and every job a job ``needs`` exists in an earlier stage;
- what a job reads from an earlier build (``build/tmp*/deploy/...``) is in the artifacts of a job
  it needs, and each artifact path is something the job's own commands write;
- every command a job runs exists: this repository's ``./tools`` entry points (with options they
  accept; ``parsec-demo`` command lines as its own parser reads them) and files, the kas
  configurations, the image recipe bitbake builds, and the upstream commands and variables as
  the pinned poky defines them (recorded below);
- the jobs read no program's output to drive the next step (no ``sed``, no machine booted in
  the background by ``run-fvp``): testimage boots the machine through the layer's controllers,
  and the JUnit reports come from the toolkit's ``report`` command reading the
  ``testresults.json`` testimage writes, kept by the job the report job needs.

Scripts are read as the shell reads them: each line split into simple commands at ``;``, ``&&``,
``||``, ``|`` and ``&``, redirections set aside, and the commands inside ``sh -c``,
``kas shell -c`` and ``$(...)`` read in turn.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from parsec_demo.paths import PROJECT_ROOT
from support.kas_configs import combined, rd1ae_stack

CI = PROJECT_ROOT / "ci"
GITLAB = CI / "gitlab-ci.yml"
GITHUB = PROJECT_ROOT / ".github/workflows/test.yml"
GITLAB_ROOT = PROJECT_ROOT / ".gitlab-ci.yml"
LAYER = PROJECT_ROOT / "meta-parsec-demo"

# --- upstream facts, read from poky at the commit kas/base.yml pins ---------------------------

#: kas/base.yml pins poky to this commit (yocto-5.0.15); the facts below were read there.
POKY_COMMIT = "72983ac391008ebceb45edc7a8f0f6d5f4fe715c"
#: scripts/lib/resulttool/*.py: the sub-commands resulttool registers.
RESULTTOOL_COMMANDS = {
    "log", "manualexecution", "merge", "regression", "regression-git", "report", "store",
}  # fmt: skip
#: scripts/oe-buildenv-internal: the variables bitbake takes from the environment (besides
#: those kas adds: its own and the configuration's ``env``).
BB_ENV_PASSTHROUGH_OE = {
    "MACHINE", "DISTRO", "TCMODE", "TCLIBC", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY",
    "https_proxy", "FTP_PROXY", "ftp_proxy", "FTPS_PROXY", "ftps_proxy", "ALL_PROXY",
    "all_proxy", "NO_PROXY", "no_proxy", "SSH_AGENT_PID", "SSH_AUTH_SOCK", "BB_SRCREV_POLICY",
    "SDKMACHINE", "BB_NUMBER_THREADS", "BB_NO_NETWORK", "PARALLEL_MAKE", "GIT_PROXY_COMMAND",
    "SOCKS5_PASSWD", "SOCKS5_USER", "SCREENDIR", "STAMPS_DIR", "BBPATH_EXTRA",
    "BB_SETSCENE_ENFORCE", "BB_LOGCONFIG",
}  # fmt: skip
#: kas (libkas.get_build_environ): the variables it adds to the passthrough list itself.
BB_ENV_PASSTHROUGH_KAS = {
    "SSTATE_DIR", "SSTATE_MIRRORS", "BB_HASHSERVE_DB_DIR", "BB_HASHSERVE",
    "BB_HASHSERVE_UPSTREAM", "DL_DIR", "TMPDIR",
}  # fmt: skip


#: meta/lib/oeqa/utils/__init__.py get_json_result_dir: testimage writes testresults.json into
#: ${LOG_DIR}/oeqa (unless OEQA_JSON_RESULT_DIR says otherwise), and adds to the one there;
#: meta/conf/bitbake.conf: LOG_DIR = "${TMPDIR}/log", TMPDIR ?= "${TOPDIR}/tmp" (kas: build/).
def results_file(config: str) -> str:
    return f"{build_dir(config)}/log/oeqa/testresults.json"


#: meta/classes-recipe/image-artifact-names.bbclass: IMAGE_NAME_SUFFIX ??= ".rootfs", part of
#: IMAGE_LINK_NAME, which names the deployed qemuboot.conf (qemuboot.bbclass).
IMAGE_NAME_SUFFIX = ".rootfs"

#: Programs a job may run besides the repository's own: the shell's and the CI images' (the kas
#: container, debian:bookworm), and, inside ``kas shell``, what the build environment provides.
SHELL_PROGRAMS = {
    "cd", "echo", "exit", "exec", "test", "true", "false", "set", "rm",
    "sh", "bash", "cat", "git", "kas", "apt-get",
    "lavacli",  # Debian's, installed by `parsec-demo setup lava`; its command lines are checked
}  # fmt: skip
#: What drove the machine by hand and read its output, before testimage's controllers did.
SCRAPING_PROGRAMS = {"sed", "grep", "head", "./tools/run-fvp", "sleep", "kill", "timeout"}
KAS_SHELL_PROGRAMS = {"bitbake", "resulttool", "oe-test", "runqemu"}
SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "!"}
OPERATORS = {";", "&&", "||", "|", "&", "(", ")"}
REDIRECTIONS = {">", ">>", "<", ">&", "<&", "&>", ">|"}


# --- reading scripts ------------------------------------------------------------------------------


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: The kas configuration (``a.yml:b.yml``) when the command runs inside ``kas shell``.
    kas_config: str | None = None
    #: Files its redirections name.
    redirected: list[str] = field(default_factory=list)

    @property
    def program(self) -> str:
        return self.argv[0]


def simple_commands(line: str, kas_config: str | None = None) -> Iterator[Command]:
    """The simple commands of one shell line, nested ones included."""
    substitutions = re.findall(r"\$\(([^()]*)\)", line)
    for inner in substitutions:
        yield from simple_commands(inner, kas_config)
    line = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    words: list[str] = []
    redirected: list[str] = []
    tokens = list(lexer)
    index = 0
    while index <= len(tokens):
        token = tokens[index] if index < len(tokens) else ";"
        index += 1
        if token in REDIRECTIONS:
            if words and words[-1].isdigit():  # the descriptor of 2>...
                words.pop()
            if index < len(tokens):
                target = tokens[index]
                index += 1
                if not (token in (">&", "<&") and target.isdigit()):  # >&1 names no file
                    redirected.append(target)
            continue
        if token not in OPERATORS:
            words.append(token)
            continue
        while words and words[0] in SHELL_KEYWORDS:
            words.pop(0)
        if words:
            yield from _unwrap(words, redirected, kas_config)
        words, redirected = [], []


def _unwrap(words: list[str], redirected: list[str], kas_config: str | None) -> Iterator[Command]:
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words:
        return
    command = Command(words, env, kas_config, redirected)
    yield command
    if words[0] == "timeout" and len(words) > 2:
        yield from _unwrap(words[2:], [], kas_config)
    elif words[0] in ("sh", "bash") and "-c" in words:
        yield from simple_commands(words[words.index("-c") + 1], kas_config)
    elif words[:2] == ["kas", "shell"] and "-c" in words:
        config = next(w for w in words[2:] if not w.startswith("-"))
        yield from simple_commands(words[words.index("-c") + 1], config)


def script_commands(script: list[str]) -> list[Command]:
    return [command for line in script for command in simple_commands(str(line))]


# --- the GitLab pipeline ----------------------------------------------------------------------


def gitlab() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(GITLAB.read_text())
    return document


def gitlab_jobs() -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in gitlab().items()
        if isinstance(job, dict) and "script" in job and not name.startswith(".")
    }


def job_commands(job: dict[str, Any]) -> list[Command]:
    return script_commands([*job.get("before_script", []), *job["script"]])


def kas_files(config: str) -> list[Path]:
    return [PROJECT_ROOT / part for part in config.split(":")]


def kas_settings(config: str) -> dict[str, Any]:
    """What a kas configuration sets (machine, env, local.conf blocks), includes merged."""
    merged = {"env": {}, "local_conf_header": {}, **combined(config)}
    for key in ("env", "local_conf_header"):
        merged[key] = merged[key] or {}
    return merged


def build_dir(config: str) -> str:
    """Where the build of a kas configuration leaves its files (TMPDIR under kas's build/)."""
    local_conf = "\n".join(kas_settings(config)["local_conf_header"].values())
    found = re.search(r'^\s*TMPDIR\s*=\s*"\$\{TOPDIR\}/([\w.-]+)"', local_conf, re.M)
    return f"build/{found.group(1) if found else 'tmp'}"


def image_name(config: str) -> str:
    """The image a kas configuration builds (its one target)."""
    target = kas_settings(config)["target"]
    (name,) = [target] if isinstance(target, str) else target
    return str(name)


JOB_IDS = sorted(gitlab_jobs())


def needs(job: dict[str, Any]) -> dict[str, bool]:
    """The jobs a job needs, each with whether it fetches that job's artifacts."""
    found = {}
    for needed in job.get("needs", []):
        if isinstance(needed, dict):
            found[needed["job"]] = bool(needed.get("artifacts", True))
        else:
            found[needed] = True
    return found


def test_stages_run_in_order_and_needs_point_back() -> None:
    pipeline = gitlab()
    stages = pipeline["stages"]
    assert stages == ["check", "build", "test", "report"]
    jobs = gitlab_jobs()
    assert {job["stage"] for job in jobs.values()} == set(stages), "every stage has a job"
    for name, job in jobs.items():
        for needed_name in needs(job):
            assert needed_name in jobs, f"{name} needs {needed_name}, which is not a job"
            assert stages.index(jobs[needed_name]["stage"]) < stages.index(job["stage"]), (
                f"{name} needs {needed_name}, which runs in a later or the same stage"
            )
    assert {n: needs(j) for n, j in jobs.items() if j.get("needs")} == {
        # The image comes back from sstate; deploy artifacts unpacked into the build directory
        # would clash with the files sstate installs there.
        "testimage-fvp-rd-kronos": {"build-fvp-rd-kronos": False},
        "testimage-qemuarm64": {"build-qemuarm64": False},
        "junit-fvp-rd-kronos": {"testimage-fvp-rd-kronos": True},
        "junit-qemuarm64": {"testimage-qemuarm64": True},
        # The LAVA jobs read the build's .fvpconf or qemuboot.conf and its deploy file names.
        "lava-fvp-rd-kronos": {"build-fvp-rd-kronos": True},
        "lava-qemuarm64": {"build-qemuarm64": True},
    }
    for name in ("junit-fvp-rd-kronos", "junit-qemuarm64"):
        assert jobs[name].get("when") == "always", f"{name}: reports also after a failed test"


def test_each_job_runs_what_its_stage_is_for() -> None:
    """The commands of each job, as programs and sub-commands, in order."""
    outline = {
        name: [
            " ".join(c.argv[:2]) if c.program in ("kas", "bitbake", "resulttool") else c.program
            for c in job_commands(job)
            if c.program not in ("echo", "exit", "sleep")
        ]
        for name, job in gitlab_jobs().items()
    }
    assert outline == {
        "kas-lock-check": ["kas dump", "kas lock", "git"],
        "offline-checks": ["./tools/test"],
        "build-qemuarm64": ["kas build"],
        "build-fvp-rd-kronos": ["kas build"],
        "testimage-fvp-rd-kronos": ["rm", "kas build"],
        "testimage-qemuarm64": ["rm", "kas build"],
        "junit-fvp-rd-kronos": ["./tools/parsec-demo"],
        "junit-qemuarm64": ["./tools/parsec-demo"],
        **{
            f"lava-{machine}": [
                "./tools/parsec-demo", "./tools/parsec-demo", "./tools/parsec-demo", "lavacli",
                "cat", "lavacli", "cat", "lavacli", "cat", "./tools/parsec-demo",
            ]
            for machine in ("fvp-rd-kronos", "qemuarm64")
        },
    }  # fmt: skip
    builds = {
        name: c.argv[2]
        for name, job in gitlab_jobs().items()
        for c in job_commands(job)
        if c.argv[:2] == ["kas", "build"]
    }
    assert builds == {
        "build-qemuarm64": "kas/base.yml:kas/qemuarm64.yml:kas/ci-cache.yml",
        "build-fvp-rd-kronos": "kas/fvp-rd-kronos.yml:kas/ci-cache.yml",
        "testimage-fvp-rd-kronos": "kas/fvp-rd-kronos.yml:kas/testimage.yml:kas/ci-cache.yml",
        "testimage-qemuarm64": "kas/base.yml:kas/qemuarm64.yml:kas/testimage.yml:kas/ci-cache.yml",
    }
    # A testimage job starts from no results: testimage adds to a testresults.json it finds.
    for name in ("testimage-fvp-rd-kronos", "testimage-qemuarm64"):
        first = job_commands(gitlab_jobs()[name])[0]
        assert first.argv == ["rm", "-rf", str(Path(results_file(builds[name])).parent)]


@pytest.mark.parametrize("name", ["testimage-fvp-rd-kronos", "testimage-qemuarm64"])
def test_a_testimage_job_builds_with_testimage_run_after_the_build(name: str) -> None:
    """``kas build`` of a configuration that has testimage run as part of the image's build
    (TESTIMAGE_AUTO), through a controller testimage can find for the machine."""
    [build] = [c for c in job_commands(gitlab_jobs()[name]) if c.argv[:2] == ["kas", "build"]]
    config = build.argv[2]
    settings = kas_settings(config)
    local_conf = "\n".join(settings["local_conf_header"].values())
    assert re.search(r'^\s*TESTIMAGE_AUTO\s*=\s*"1"', local_conf, re.M), config
    assert re.search(r'IMAGE_CLASSES\s*\+=\s*"[^"]*\btestimage\b', local_conf), config
    # The layer's image, or Arm's image with the layer's package group in it.
    image = image_name(config)
    installs = re.search(
        rf'IMAGE_INSTALL:append:pn-{image}\s*=\s*"[^"]*packagegroup-parsec', local_conf
    )
    assert list(LAYER.glob(f"recipes-*/**/{image}.bb")) or installs, f"{config}: {image}"
    machine = settings["machine"]
    targets = dict(re.findall(r'^\s*TEST_TARGET:([\w-]+)\s*=\s*"([^"]+)"', local_conf, re.M))
    controller = targets.get(machine) or targets.get("qemuall" if "qemu" in machine else "")
    assert controller, f"{config} sets no TEST_TARGET for {machine}"
    # Only the layer's controllers tell the cases where the RSE's console log is.
    defined = [
        path
        for path in (LAYER / "lib/oeqa/controllers").glob("*.py")
        if re.search(rf"^\s*class {controller}\(", path.read_text(), re.M)
    ]
    assert defined, f"{config}: TEST_TARGET {controller} is no class of the layer's controllers"


def test_no_job_drives_a_machine_by_reading_output() -> None:
    """No job boots a machine in the background and scrapes what it prints: no ``sed``, no
    ``run-fvp``, nothing sent to the background, no TEST_TARGET_IP handed to bitbake."""
    for name, job in gitlab_jobs().items():
        for line in [*job.get("before_script", []), *job["script"]]:
            lexer = shlex.shlex(str(line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            assert "&" not in list(lexer), f"{name} runs something in the background: {line}"
        for command in job_commands(job):
            assert command.program not in SCRAPING_PROGRAMS, f"{name} runs {command.program}"
            assert "TEST_TARGET_IP" not in command.env, f"{name} sets TEST_TARGET_IP"


def test_junit_comes_from_the_report_command_reading_what_testimage_wrote() -> None:
    """Each JUnit report is written by ``parsec-demo report junit`` (a command line its parser
    accepts) from testimage's testresults.json, which the job it needs keeps as an artifact,
    to the file the job hands GitLab as its JUnit report."""
    from parsec_demo.cli import build_parser

    jobs = gitlab_jobs()
    reporting = {
        name: job
        for name, job in jobs.items()
        if "junit" in job.get("artifacts", {}).get("reports", {}) and not name.startswith("lava-")
    }
    assert sorted(reporting) == ["junit-fvp-rd-kronos", "junit-qemuarm64"]
    for name, job in reporting.items():
        [command] = [c for c in job_commands(job) if c.program == "./tools/parsec-demo"]
        args = build_parser().parse_args(command.argv[1:])
        assert (args.command, args.report_format) == ("report", "junit"), command.argv
        assert job["artifacts"]["reports"]["junit"] == str(args.output)
        [needed] = needs(job)
        config = next(
            c.argv[2] for c in job_commands(jobs[needed]) if c.argv[:2] == ["kas", "build"]
        )
        assert str(args.testresults) == results_file(config)
        kept = [p.rstrip("/") for p in jobs[needed]["artifacts"]["paths"]]
        assert str(Path(results_file(config)).parent) in kept, f"{needed} does not keep it"
        assert jobs[needed]["artifacts"].get("when") == "always", "kept when tests fail too"
        machine = kas_settings(
            next(c.argv[2] for c in job_commands(jobs[needed]) if c.argv[:2] == ["kas", "build"])
        )["machine"]
        assert machine in name and machine in str(args.output)


@pytest.mark.parametrize("name", JOB_IDS)
def test_every_program_a_job_runs_exists(name: str) -> None:
    for command in job_commands(gitlab_jobs()[name]):
        program = command.program
        if "/" in program:
            path = PROJECT_ROOT / program
            assert path.is_file() and path.stat().st_mode & 0o111, f"{name}: {program} missing"
        elif command.kas_config is not None:
            assert program in SHELL_PROGRAMS | KAS_SHELL_PROGRAMS, f"{name}: {program}?"
        else:
            assert program in SHELL_PROGRAMS, f"{name}: {program} is not a known program"


@pytest.mark.parametrize("name", JOB_IDS)
def test_every_repository_path_a_job_names_exists(name: str) -> None:
    tracked = {p.name for p in PROJECT_ROOT.iterdir()} - {"build", "runs", ".venv", ".git"}
    for command in job_commands(gitlab_jobs()[name]):
        if command.program == "echo":
            continue  # a message, not paths
        for word in command.argv[1:]:
            for part in word.split(":") if word.endswith(".yml") else [word]:
                top = part.split("/", 1)[0]
                if "/" not in part or top not in tracked or any(c.isspace() for c in part):
                    continue
                found = list(PROJECT_ROOT.glob(part)) if "*" in part else [PROJECT_ROOT / part]
                assert found and all(p.exists() for p in found), (
                    f"{name}: {part} is not in the repository"
                )


@pytest.mark.parametrize("name", JOB_IDS)
def test_kas_runs_with_existing_configurations(name: str) -> None:
    for command in job_commands(gitlab_jobs()[name]):
        if command.program != "kas":
            continue
        assert command.argv[1] in {"build", "shell", "dump", "lock", "checkout"}, command.argv
        configs = [w for w in command.argv[2:] if w.endswith(".yml")]
        assert configs, f"{name}: kas {command.argv[1]} without a configuration"
        for path in kas_files(configs[0]):
            assert path.is_file(), f"{name}: {path} does not exist"


@pytest.mark.parametrize("name", JOB_IDS)
def test_bitbake_builds_a_recipe_of_the_layer_with_the_classes_its_task_needs(name: str) -> None:
    for command in job_commands(gitlab_jobs()[name]):
        if command.program != "bitbake":
            continue
        assert command.kas_config is not None, f"{name}: bitbake outside kas shell"
        task = command.argv[command.argv.index("-c") + 1] if "-c" in command.argv else "build"
        targets = [w for i, w in enumerate(command.argv[1:], 1) if not w.startswith("-")]
        targets = [w for w in targets if command.argv[command.argv.index(w) - 1] != "-c"]
        for target in targets:
            assert list(LAYER.glob(f"recipes-*/**/{target}.bb")), f"{name}: no recipe {target}"
        if task == "testimage":
            local_conf = "\n".join(kas_settings(command.kas_config)["local_conf_header"].values())
            assert re.search(r'IMAGE_CLASSES\s*\+=\s*"[^"]*\btestimage\b', local_conf), (
                f"{name}: testimage needs IMAGE_CLASSES += testimage in {command.kas_config}"
            )


@pytest.mark.parametrize("name", JOB_IDS)
def test_variables_set_for_bitbake_reach_it(name: str) -> None:
    """bitbake takes from the environment only the variables on its passthrough list."""
    for command in job_commands(gitlab_jobs()[name]):
        if command.program != "bitbake" or not command.env:
            continue
        assert command.kas_config is not None
        allowed = BB_ENV_PASSTHROUGH_OE | BB_ENV_PASSTHROUGH_KAS
        allowed |= set(kas_settings(command.kas_config)["env"])
        lost = sorted(set(command.env) - allowed)
        assert not lost, (
            f"{name}: {', '.join(lost)} set for bitbake but not passed through to it: add "
            f"them to the env of {command.kas_config}"
        )


@pytest.mark.parametrize("name", JOB_IDS)
def test_upstream_commands_exist_at_the_pinned_poky(name: str) -> None:
    base = yaml.safe_load((PROJECT_ROOT / "kas/base.yml").read_text())
    assert base["repos"]["poky"]["commit"] == POKY_COMMIT, "poky moved: read the facts again"
    for command in job_commands(gitlab_jobs()[name]):
        if command.program == "resulttool":
            assert command.argv[1] in RESULTTOOL_COMMANDS, (
                f"{name}: resulttool at poky {POKY_COMMIT[:12]} has no '{command.argv[1]}' "
                f"sub-command ({', '.join(sorted(RESULTTOOL_COMMANDS))})"
            )


def test_tools_are_given_options_they_accept() -> None:
    from parsec_demo.cli import build_parser

    helps: dict[str, str] = {}
    for name, job in gitlab_jobs().items():
        for command in job_commands(job):
            # ./tools/test passes its arguments to pytest (paths: checked above).
            if not command.program.startswith("./tools/") or command.program == "./tools/test":
                continue
            if command.program == "./tools/parsec-demo":
                build_parser().parse_args(command.argv[1:])  # a UsageError names what is wrong
                continue
            if command.program not in helps:
                helps[command.program] = subprocess.run(
                    [str(PROJECT_ROOT / command.program), "--help"],
                    capture_output=True, text=True, timeout=300, check=True,
                ).stdout  # fmt: skip
            for word in command.argv[1:]:
                option = word.split("=", 1)[0]
                if option.startswith("--"):
                    assert re.search(rf"(^|[\s,]){re.escape(option)}\b", helps[command.program]), (
                        f"{name}: {command.program} does not accept {option}"
                    )


def build_config(job: dict[str, Any]) -> str:
    """The kas configuration a build job builds."""
    (config,) = [c.argv[2] for c in job_commands(job) if c.argv[:2] == ["kas", "build"]]
    return config


def test_what_a_job_reads_from_a_build_is_in_the_artifacts_it_needs() -> None:
    """Every build file a job reads is kept by a build job it needs, under that build's
    TMPDIR, with the name that build deploys (image, machine, IMAGE_NAME_SUFFIX)."""
    jobs = gitlab_jobs()
    for name, job in jobs.items():
        fetched = [needed for needed, artifacts in needs(job).items() if artifacts]
        provided = [p.rstrip("/") for needed in fetched for p in jobs[needed]["artifacts"]["paths"]]
        for command in job_commands(job):
            if command.program in ("kas", "rm"):
                continue
            for word in command.argv[1:]:
                if not re.match(r"build/tmp\w*/", word):
                    continue
                assert any(word.startswith(p + "/") for p in provided), (
                    f"{name} reads {word}, which no job it needs keeps as an artifact"
                )
                match = re.fullmatch(r"(build/tmp\w*)/deploy/images/([^/]+)/(.+)", word)
                if not match or not match.group(3).endswith((".qemuboot.conf", ".fvpconf")):
                    continue
                tmpdir, machine, file_name = match.groups()
                [config] = [
                    build_config(jobs[n])
                    for n in fetched
                    if kas_settings(build_config(jobs[n]))["machine"] == machine
                ]
                assert tmpdir == build_dir(config), f"{name}: {config} builds in {tmpdir}"
                suffix = file_name.rsplit(".", 2 if file_name.endswith("boot.conf") else 1)
                expected = f"{image_name(config)}-{machine}{image_name_suffix(config)}."
                assert file_name.startswith(expected) and len(suffix) > 1, (
                    f"{name}: that build deploys {expected}..., not {file_name}"
                )


def image_name_suffix(config: str) -> str:
    """IMAGE_NAME_SUFFIX of a configuration's machine: Arm's RD-1 AE machine sets it empty."""
    stack = rd1ae_stack()["machine"]
    machine = kas_settings(config)["machine"]
    return str(stack["image_name_suffix"]) if machine == stack["name"] else IMAGE_NAME_SUFFIX


@pytest.mark.parametrize("name", JOB_IDS)
def test_each_artifact_is_written_by_its_job(name: str) -> None:
    job = gitlab_jobs()[name]
    artifacts = job.get("artifacts", {})
    paths = list(artifacts.get("paths", []))
    paths += [path for report in artifacts.get("reports", {}).values() for path in [report]]
    commands = job_commands(job)
    configs = [
        c.kas_config if c.kas_config else c.argv[2]
        for c in commands
        if c.kas_config or c.argv[:2] == ["kas", "build"]
    ]
    machines = {kas_settings(config).get("machine") for config in configs}
    build_dirs = {build_dir(config) for config in configs}
    words = {w.rstrip("/") for c in commands for w in [*c.argv[1:], *c.redirected]}
    for path in paths:
        first = path.split("/", 1)[0].rstrip("/")
        deploy = re.match(r"(build/tmp\w*)/deploy/images/([^/]+)/", path)
        if deploy:
            assert deploy.group(2) in machines, f"{name}: {path} is not what its build makes"
            assert deploy.group(1) in build_dirs, f"{name}: {path} is not where it builds"
        elif re.match(r"build/tmp\w*/", path):
            assert machines, f"{name}: {path} but no bitbake runs in this job"
            assert path.split("/")[1] in {d.split("/")[1] for d in build_dirs}, path
        else:
            assert first in words or path.rstrip("/") in words, (
                f"{name}: artifact {path} is not written by the job's commands"
            )
    if "reports" in artifacts:
        assert artifacts.get("when") == "always"


# --- the GitHub workflow and .ci/run ---------------------------------------------------------


def test_the_github_workflow_checks_out_then_runs_the_suite_and_keeps_the_runs() -> None:
    workflow = yaml.safe_load(GITHUB.read_text())
    assert list(workflow["jobs"]) == ["test"]
    steps = workflow["jobs"]["test"]["steps"]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    checkout = uses.index("actions/checkout")
    runs = [
        (i, script_commands(str(step["run"]).splitlines()))
        for i, step in enumerate(steps)
        if "run" in step
    ]
    suite = [i for i, commands in runs if [c.argv for c in commands] == [["./tools/test"]]]
    assert suite and suite[0] > checkout, "the suite runs, after the checkout"
    for i, commands in runs:
        for command in commands:
            if "/" in command.program:
                assert i > checkout, f"step {i} runs {command.program} before the checkout"
                assert (PROJECT_ROOT / command.program).is_file()
            else:
                assert command.program in SHELL_PROGRAMS, command.program
    # The runs directory, where the suite's machines, demos and validation reports go, is kept.
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload.get("if") == "always()" and upload["with"]["path"].rstrip("/") == "runs"
    from parsec_demo.paths import runs_root

    assert runs_root() == PROJECT_ROOT / "runs"


def test_ci_run_execs_the_suite_from_the_checkout() -> None:
    script = (PROJECT_ROOT / ".ci/run").read_text().splitlines()
    commands = script_commands([line for line in script if line and not line.startswith("#")])
    assert [c.argv for c in commands][-1] == ["exec", "./tools/test"]
    assert any(c.program == "cd" for c in commands), "it runs from the repository's root"
    assert (PROJECT_ROOT / "tools/test").stat().st_mode & 0o111


def test_both_services_find_their_pipeline_where_they_look() -> None:
    """GitLab reads .gitlab-ci.yml at the root (here: an include of ci/gitlab-ci.yml), GitHub
    the workflows in .github/workflows/: no settings change is needed for either."""
    root = yaml.safe_load(GITLAB_ROOT.read_text())
    assert root == {"include": [{"local": "ci/gitlab-ci.yml"}]}
    assert (PROJECT_ROOT / root["include"][0]["local"]) == GITLAB
    assert GITHUB.is_file()
    assert not (CI / "github").exists(), "the workflow lives where GitHub runs it"


# --- the schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        (GITLAB, "vendor.gitlab-ci"),
        (GITLAB_ROOT, "vendor.gitlab-ci"),
        (GITHUB, "vendor.github-workflows"),
    ],
    ids=["gitlab", "gitlab-root", "github"],
)
def test_pipelines_follow_their_schemas(path: Path, schema: str) -> None:
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_script_reader_splits_as_the_shell_does() -> None:
    line = (
        "timeout 9 sh -c 'until grep -q up x.log; do sleep 1; done' && A=1 kas shell "
        'k/a.yml:k/b.yml -c "B=2 bitbake -c testimage img" > out 2>&1 || exit $(cat n) &'
    )
    found = [(c.argv, c.env, c.kas_config, c.redirected) for c in simple_commands(line)]
    assert found == [
        (["cat", "n"], {}, None, []),
        (["timeout", "9", "sh", "-c", "until grep -q up x.log; do sleep 1; done"], {}, None, []),
        (["sh", "-c", "until grep -q up x.log; do sleep 1; done"], {}, None, []),
        (["grep", "-q", "up", "x.log"], {}, None, []),
        (["sleep", "1"], {}, None, []),
        (
            ["kas", "shell", "k/a.yml:k/b.yml", "-c", "B=2 bitbake -c testimage img"],
            {"A": "1"}, None, ["out"],
        ),
        (["bitbake", "-c", "testimage", "img"], {"B": "2"}, "k/a.yml:k/b.yml", []),
        (["exit", "SUBSTITUTED"], {}, None, []),
    ]  # fmt: skip


# --- the LAVA jobs ---------------------------------------------------------------------------

#: What the LAVA jobs' scripts need from GitLab, as a pipeline has it.
GITLAB_ENV = {
    "CI_API_V4_URL": "https://gitlab.lab.internal/api/v4",
    "CI_PROJECT_ID": "7",
    "CI_PROJECT_URL": "https://gitlab.lab.internal/parsec/parsec-demo",
    "BUILD_QEMUARM64_JOB_ID": "1001",
    "BUILD_FVP_RD_KRONOS_JOB_ID": "1002",
    "LAVA_FVP_DOCKER": "registry.lab.internal/arm/fvp-rd-1-ae:11.27.20",
}


def _yocto_deploy(workspace: Path, machine: str) -> tuple[str, str]:
    """What the build job of ``machine`` leaves in its deploy directory, as far as the LAVA
    job reads it: that directory and the name of the first image LAVA downloads."""
    config = build_config(gitlab_jobs()[f"build-{machine}"])
    directory = f"{build_dir(config)}/deploy/images/{machine}"
    deploy = workspace / directory
    deploy.mkdir(parents=True)
    link_name = f"{image_name(config)}-{machine}{image_name_suffix(config)}"
    if machine == "qemuarm64":
        for name in ("Image", f"{link_name}.ext4"):
            (deploy / name).write_bytes(b"image")
        (deploy / f"{link_name}.qemuboot.conf").write_text(
            f"[config_bsp]\nIMAGE_LINK_NAME = {link_name}\n"
            "QB_DEFAULT_KERNEL = Image\nQB_DEFAULT_FSTYPE = ext4\nQB_MACHINE = -machine virt\n"
            "QB_CPU = -cpu cortex-a57\nQB_SYSTEM_NAME = qemu-system-aarch64\nQB_MEM = -m 1024\n"
            "QB_KERNEL_CMDLINE_APPEND = console=ttyAMA0\n"
        )
        return directory, "Image"
    from support.rd1ae import RD1AE_FILES, RD1AE_FVPCONF, RD1AE_IMAGE

    assert f"{link_name}.wic" == RD1AE_IMAGE, "the fixture is the build's image"
    for name in RD1AE_FILES:
        (deploy / name).write_bytes(b"image")
    (deploy / f"{link_name}.fvpconf").write_text(json.dumps(RD1AE_FVPCONF))
    parameters = RD1AE_FVPCONF["parameters"].values()
    return directory, next(v for v in parameters if v in RD1AE_FILES)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("machine", "build_job_id"), [("qemuarm64", "1001"), ("fvp-rd-kronos", "1002")]
)
def test_the_lava_jobs_submit_wait_and_collect_with_lavacli_against_a_lava_api(
    tmp_path: Path, machine: str, build_job_id: str
) -> None:
    """A LAVA job's script, run by bash in a workspace with what its build job leaves, real
    lavacli (Debian's) against a stand-in of LAVA's XML-RPC API: the submitted job is the
    generated one, images come from the build job's artifacts, and the results become the
    JUnit report GitLab is given."""
    from support.lava_standin import LAVA_RESULTS, LavaStandin

    job = gitlab_jobs()[f"lava-{machine}"]
    assert job["rules"] == [{"if": "$LAVA_URI"}], "runs only where a LAVA server is named"
    workspace = tmp_path / "workspace"
    directory, first_image = _yocto_deploy(workspace, machine)
    script = [
        line.replace("./tools/parsec-demo", str(PROJECT_ROOT / "tools/parsec-demo"))
        for line in job["script"]
        if "setup lava" not in line  # ./tools/test installed Debian's lava-common and lavacli
    ]
    with LavaStandin(LAVA_RESULTS) as lava:
        env = {
            **GITLAB_ENV,
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LAVA_URI": f"http://ci:secret-token@127.0.0.1:{lava.port}/RPC2",
        }
        result = subprocess.run(
            ["bash", "-e", "-c", "\n".join(script)],
            cwd=workspace, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        ((job_id, submitted),) = lava.submitted.items()
    assert (workspace / "lava-job-id").read_text().strip() == str(job_id)
    assert yaml.safe_load(submitted) == yaml.safe_load((workspace / "lava-job.yaml").read_text())
    deploy_action = yaml.safe_load(submitted)["actions"][0]["deploy"]
    first = next(iter(deploy_action["images"].values()))
    assert first["url"] == (
        f"https://gitlab.lab.internal/api/v4/projects/7/jobs/{build_job_id}/artifacts/"
        f"{directory}/{first_image}"
    )
    (definition,) = next(a["test"] for a in yaml.safe_load(submitted)["actions"] if "test" in a)[
        "definitions"
    ]
    assert definition["repository"] == GITLAB_ENV["CI_PROJECT_URL"] + ".git"
    junit = workspace / job["artifacts"]["reports"]["junit"]
    assert 'failures="3"' in junit.read_text()
    for path in job["artifacts"]["paths"]:
        assert (workspace / path).exists(), f"artifact {path} was not written"
