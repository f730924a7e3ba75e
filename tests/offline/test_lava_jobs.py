"""LAVA job definitions made by `parsec-demo lava job`, checked by LAVA's own schema (Debian's
lava-common, through `parsec-demo lava check`), and what they ask of LAVA."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from parsec_demo.image_build import write_qemuboot
from parsec_demo.lava.check import check
from parsec_demo.lava.jobs import TEST_DEFINITION, FarmSettings, SettingsError
from parsec_demo.paths import project_root
from support.lava_standin import LAVA_RESULTS
from support.rd1ae import RD1AE_FILES, RD1AE_FVPCONF
from support.toolkit_cli import python_command

ROOT = project_root()
#: The project's repository as the tests' farm knows it (a CI clone's origin is a local path).
REPOSITORY = "https://git.lab.internal/parsec/parsec-demo.git"
SETTINGS = [
    "images_url=https://artifacts.lab.internal/deploy",
    "fvp_docker=registry.lab.internal/arm/fvp-rd-1-ae:11.27.20",
    f"testdef_repository={REPOSITORY}",
]


@pytest.fixture
def fvpconf(tmp_path: Path) -> Path:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    for name in RD1AE_FILES:
        (deploy / name).write_bytes(b"image")
    path = deploy / "baremetal-image-fvp-rd-kronos.fvpconf"
    path.write_text(json.dumps({**RD1AE_FVPCONF, "fvp-bindir": "/opt/fvp"}))
    return path


@pytest.fixture
def qemuboot(tmp_path: Path) -> Path:
    """A dev image's directory with its qemuboot.conf, as `image build` writes it."""
    image = tmp_path / "image"
    image.mkdir()
    for name in ("vmlinuz", "initrd.img", "rootfs.ext4"):
        (image / name).write_bytes(b"image")
    manifest = {
        "arch": "arm64", "kernel": "vmlinuz", "initrd": "initrd.img", "rootfs": "rootfs.ext4",
        "cmdline": "root=/dev/vda rw console=ttyAMA0 quiet", "qemu": "qemu-system-aarch64",
        "machine": "virt", "cpu": "cortex-a57", "console": "ttyAMA0", "ssh_key": "/k",
        "ssh_host_key": "ssh-ed25519 AAAA", "inputs": "0", "built": "1 s",
    }  # fmt: skip
    (image / "manifest.json").write_text(json.dumps(manifest))
    write_qemuboot(image)
    (conf,) = image.glob("*.qemuboot.conf")
    return conf


def _job(
    kind: str,
    config: Path,
    tmp_path: Path,
    *settings: str,
    defaults: list[str] = SETTINGS,
    checkout: Path | None = None,
) -> dict[str, Any]:
    out = tmp_path / f"{kind}.yaml"
    command = python_command("lava", "job", kind, str(config), "-o", str(out))
    for setting in [*defaults, *settings]:
        command += ["--set", setting]
    env = {**os.environ, **({"PARSEC_DEMO_ROOT": str(checkout)} if checkout else {})}
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60, env=env)
    data: dict[str, Any] = yaml.safe_load(out.read_text())
    return data


def _action(job: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(a[kind] for a in job["actions"] if kind in a)
    return found


def test_the_generated_jobs_and_the_test_definition_pass_lava_s_own_schema(
    fvpconf: Path, qemuboot: Path, tmp_path: Path
) -> None:
    _job("fvp", fvpconf, tmp_path)
    _job("qemu", qemuboot, tmp_path)
    jobs = [tmp_path / "fvp.yaml", tmp_path / "qemu.yaml"]
    result = subprocess.run(
        python_command("lava", "check", *map(str, jobs)), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{job}: valid" for job in jobs]
    (testdef,) = check("testdef", [ROOT / TEST_DEFINITION])
    assert testdef.valid, testdef.line


def test_lava_s_schema_catches_a_broken_job(fvpconf: Path, tmp_path: Path) -> None:
    job = _job("fvp", fvpconf, tmp_path)
    del _action(job, "boot")["console_string"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(job))
    (verdict,) = check("job", [broken])
    assert not verdict.valid and "console_string" in verdict.line
    result = subprocess.run(python_command("lava", "check", str(broken)), capture_output=True)
    assert result.returncode == 1


def test_the_fvp_job_deploys_every_file_the_model_loads_and_names_it_by_its_label(
    fvpconf: Path, tmp_path: Path
) -> None:
    job = _job("fvp", fvpconf, tmp_path)
    images = _action(job, "deploy")["images"]
    deploy = "https://artifacts.lab.internal/deploy"
    assert images == {
        "baremetal_image_fvp_rd_kronos_wic": {"url": f"{deploy}/baremetal-image-fvp-rd-kronos.wic"},
        "rse_rom_image_img": {"url": f"{deploy}/rse-rom-image.img"},
        "rse_flash_image_img": {"url": f"{deploy}/rse-flash-image.img"},
        "ap_flash_image_img": {"url": f"{deploy}/ap-flash-image.img"},
        "encrypted_cm_provisioning_bundle_0_bin": {
            "url": f"{deploy}/encrypted_cm_provisioning_bundle_0.bin"
        },
    }
    boot = _action(job, "boot")
    arguments = boot["arguments"]
    assert (
        "--parameter ros.board.virtioblockdevice.image_path={BAREMETAL_IMAGE_FVP_RD_KRONOS_WIC}"
        in arguments
    )
    assert "--parameter css.sysctrl.rse.rom.raw_image={RSE_ROM_IMAGE_IMG}" in arguments
    data = "--data css.sysctrl.rse.cpu={ENCRYPTED_CM_PROVISIONING_BUNDLE_0_BIN}@0x31000000"
    assert data in arguments
    assert "--parameter ros.board.virtio_net.hostbridge.userNetworking=1" in arguments
    assert "--parameter css.sysctrl.terminal_rse_uart.start_telnet=0" in arguments
    assert boot["docker"]["name"] == "registry.lab.internal/arm/fvp-rd-1-ae:11.27.20"
    assert boot["image"] == "/opt/fvp/FVP_RD_1_AE"
    assert boot["license_variable"] == "ARMLMD_LICENSE_FILE=8224@licenses.lab.internal"
    # The Linux console is the connection; the others (the RSE's among them) are feedback
    # consoles LAVA records. An FVP announces a terminal by its own name.
    announce = "terminal_ns_uart0: Listening for serial connection on port 5000"
    match = re.match(boot["console_string"], announce)
    assert match and match.group("PORT") == "5000"
    assert not any(re.match(f, announce) for f in boot["feedbacks"])
    rse_announce = "terminal_rse_uart: Listening for serial connection on port 5003"
    (rse,) = [m for m in (re.match(f, rse_announce) for f in boot["feedbacks"]) if m]
    assert rse.group("NAME") == "terminal_rse_uart"
    assert rse.group("PORT") == "5003"


def test_the_qemu_job_starts_the_rse_model_before_the_boot_and_records_its_console(
    qemuboot: Path, tmp_path: Path
) -> None:
    job = _job("qemu", qemuboot, tmp_path, "rse_socket=/run/lava-rse/rse.sock")
    kinds = [next(iter(action)) for action in job["actions"]]
    assert kinds == ["deploy", "command", "boot", "test", "command"]
    assert job["actions"][1]["command"]["name"] == "parsec_demo_rse_start"
    assert job["actions"][4]["command"]["name"] == "parsec_demo_rse_console"
    context = job["context"]
    assert (context["arch"], context["machine"], context["cpu"]) == ("arm64", "virt", "cortex-a57")
    assert (
        "-chardev socket,id=rse,path=/run/lava-rse/rse.sock,reconnect=1" in context["extra_options"]
    )
    assert "-device virtserialport,bus=vser0.0,chardev=rse,name=rse" in context["extra_options"]
    assert "-smp 2" in context["extra_options"], "the qemuboot.conf's QB_SMP"
    fewer = _job("qemu", qemuboot, tmp_path, "qemu_cpus=1")["context"]["extra_options"]
    assert "-smp 1" in fewer and "-smp 2" not in fewer, "the farm's qemu_cpus"
    images = _action(job, "deploy")["images"]
    assert images["kernel"]["image_arg"] == (
        "-kernel {kernel} -append 'root=/dev/vda rw console=ttyAMA0 ip=dhcp'"
    )
    assert images["initrd"]["image_arg"] == "-initrd {initrd}"
    assert images["rootfs"]["url"] == "https://artifacts.lab.internal/deploy/rootfs.ext4"


def _clone(tmp_path: Path, origin: str) -> Path:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", origin], check=True)
    return clone


def test_the_test_definition_comes_from_the_checkout_s_origin_at_its_commit(
    fvpconf: Path, tmp_path: Path
) -> None:
    """By default the repository the checkout was cloned from, without the credentials a CI
    clone's origin carries, at the checkout's commit."""
    clone = _clone(tmp_path, "https://gitlab-ci-token:s3cret@git.lab.internal/grp/parsec-demo.git")
    job = _job("fvp", fvpconf, tmp_path, defaults=SETTINGS[:2], checkout=clone)
    (definition,) = _action(job, "test")["definitions"]
    assert definition["path"] == TEST_DEFINITION and (ROOT / TEST_DEFINITION).is_file()
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    assert definition["revision"] == head.stdout.strip()
    assert definition["repository"] == "https://git.lab.internal/grp/parsec-demo.git"
    assert definition["parameters"] == {
        "CLIENT_IMAGE": "localhost/parsec-demo-client:1",
        "CLIENT_UID": "61000",
    }


def test_a_checkout_with_a_local_origin_asks_for_the_repository(
    fvpconf: Path, tmp_path: Path
) -> None:
    clone = _clone(tmp_path, str(ROOT))
    command = python_command("lava", "job", "fvp", str(fvpconf))
    for setting in SETTINGS[:2]:
        command += ["--set", setting]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PARSEC_DEMO_ROOT": str(clone)}
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "these settings have no value: testdef_repository" in line
    assert "origin remote is not a network address" in line


@pytest.mark.parametrize(
    ("setting", "refusal"),
    [
        ("testdef_repository=https://git.example/parsec-demo.git", "names no real host"),
        ("testdef_repository=/srv/parsec-demo", "no network address a LAVA worker can clone"),
        ("images_url=https://artifacts.example.com/deploy", "names no real host"),
        ("fvp_docker=registry.test/fvp:1", "names no real registry"),
    ],
)
def test_lava_check_refuses_an_address_no_farm_can_reach(
    fvpconf: Path, tmp_path: Path, setting: str, refusal: str
) -> None:
    _job("fvp", fvpconf, tmp_path, setting)
    job = tmp_path / "fvp.yaml"
    result = subprocess.run(
        python_command("lava", "check", str(job)), capture_output=True, text=True
    )
    assert result.returncode == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{job}: invalid: ") and refusal in line, line


def test_settings_come_from_a_file_then_set_and_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "farm.yml"
    path.write_text("images_url: https://a.example\njob_timeout_minutes: 90\ntags: [fvp]\n")
    settings = FarmSettings.load(path, ["job_timeout_minutes=45"])
    assert (settings.images_url, settings.job_timeout_minutes, settings.tags) == (
        "https://a.example",
        45,
        ["fvp"],
    )
    example = FarmSettings.load(ROOT / "lava/farm-settings.example.yml")
    assert example.fvp_docker
    with pytest.raises(SettingsError, match="unknown setting colour"):
        FarmSettings.load(None, ["colour=blue"])
    with pytest.raises(SettingsError, match="job_timeout_minutes must be int"):
        FarmSettings.load(None, ["job_timeout_minutes=soon"])
    with pytest.raises(SettingsError, match="expected NAME=VALUE"):
        FarmSettings.load(None, ["images_url"])


def test_a_user_mistake_is_one_line(fvpconf: Path, tmp_path: Path) -> None:
    for args, expected in [
        (["job", "fvp", str(fvpconf)], "these settings have no value: images_url, fvp_docker"),
        (["job", "qemu", str(tmp_path / "none.conf"), "--set", "images_url=x"], "no such file"),
        (["job", "fvp", str(fvpconf), "--settings", str(tmp_path / "none.yml")], "cannot read"),
    ]:
        result = subprocess.run(python_command("lava", *args), capture_output=True, text=True)
        assert result.returncode == 1, result
        (line,) = result.stderr.splitlines()
        assert line.startswith("parsec-demo lava job: ") and expected in line, line
    # lava run says so before it builds or installs anything.
    result = subprocess.run(
        python_command("lava", "run", "--set", "qemu_cpu=1"), capture_output=True, text=True
    )
    assert result.returncode == 1, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("parsec-demo lava run: --set: unknown setting qemu_cpu"), line


# --- a job's results -------------------------------------------------------------------------


def test_a_lava_job_s_results_become_the_validation_s_reports(tmp_path: Path) -> None:
    from parsec_demo.validate.reports import read_testresults

    source = tmp_path / "lava-results.yaml"
    source.write_text(yaml.safe_dump(LAVA_RESULTS))
    report = tmp_path / "report"
    result = subprocess.run(
        python_command("lava", "results", str(source), "--job-id", "42", "--machine",
                       "qemuarm64", "-o", str(report)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "2 passed, 1 skipped, 3 failed"
    (run,) = read_testresults(report / "testresults.json").items()
    result_id, (configuration, cases) = run
    assert result_id == "runtime_parsec-tls-demo-image_qemuarm64_42"
    assert configuration["LAVA_JOB_ID"] == "42"
    assert sorted((c.name, c.status) for c in cases) == sorted(
        [
            ("lava.lava.auto-login-action", "PASSED"),
            ("lava.parsec-tls-demo.parsec-ping", "PASSED"),
            ("lava.parsec-tls-demo.tls-handshake-in-container", "FAILED"),
            ("lava.parsec-tls-demo.no-container-left", "SKIPPED"),
            ("lava.lava.parsec_demo_rse_console", "FAILED"),
            ("lava.lava.job", "FAILED"),
        ]
    )
    by_name = {c.name: c for c in cases}
    assert by_name["lava.lava.auto-login-action"].duration == 3.2
    assert "error_msg: command failed" in by_name["lava.lava.job"].log
    junit = (report / "junit.xml").read_text()
    assert 'failures="3"' in junit and 'skipped="1"' in junit
    assert "lava.parsec-tls-demo.tls-handshake-in-container" in (report / "report.html").read_text()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{}", "is not LAVA's results of a job"),
        ("- {suite: lava, name: job}", "test case 1 has no result"),
        ("- {suite: lava, name: job, result: maybe}", "test case 1 has the result 'maybe'"),
        ("[unclosed", "cannot read it as YAML"),
    ],
)
def test_results_that_are_not_lava_s_are_one_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    source = tmp_path / "results.yaml"
    source.write_text(content)
    result = subprocess.run(
        python_command("lava", "results", str(source), "--job-id", "1", "--machine", "m"),
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("parsec-demo lava results: ") and expected in line, line


def test_the_images_list_names_every_deployed_file(qemuboot: Path, tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    subprocess.run(
        python_command("lava", "job", "qemu", str(qemuboot), "--set", "images_url=https://a",
                       "--set", f"testdef_repository={REPOSITORY}",
                       "-o", str(tmp_path / "job.yaml"), "--images-list", str(listing)),
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    files = [Path(line) for line in listing.read_text().splitlines()]
    assert [f.name for f in files] == ["vmlinuz", "initrd.img", "rootfs.ext4"]
    assert all(f.is_file() and f.parent == qemuboot.parent for f in files)


def test_the_device_dictionary_renders_with_lava_s_templates_and_passes_its_schema() -> None:
    """lava/devices/qemu-parsec-demo.jinja2 as lava-server renders it (its own qemu.jinja2 and
    base.jinja2, from Debian's lava-server), valid for LAVA, with the user commands the QEMU
    job calls and the RSE socket the job attaches."""
    from parsec_demo.lava.check import render_device

    dictionary = ROOT / "lava/devices/qemu-parsec-demo.jinja2"
    (verdict,) = check("device", [dictionary])
    assert verdict.valid, verdict.line
    device = yaml.safe_load(render_device(dictionary))
    users = device["commands"]["users"]
    defaults = FarmSettings()
    start = users[defaults.rse_start_command]
    assert f"--socket {defaults.rse_socket} " in start["do"] + " "
    assert start["do"].startswith("systemd-run ") and start["undo"].startswith("systemctl stop ")
    assert "parsec-demo-rse-model " in start["do"]
    assert users[defaults.rse_evidence_command]["do"].startswith("cat /run/parsec-demo-lava/")
    assert "qemu" in device["actions"]["boot"]["methods"]


def test_lava_run_s_log_gives_the_cases_in_the_results_api_s_shape(tmp_path: Path) -> None:
    from parsec_demo.lava.local_run import results_of_log

    log = tmp_path / "lava-run.log"
    log.write_text(
        '{"dt": "2026-12-03T06:29:01", "lvl": "target", "msg": "  . Verifying ... ok"}\n'
        '{"dt": "2026-12-03T06:29:02", "lvl": "results", "msg": {"case": "parsec-ping", '
        '"definition": "0_parsec-tls-demo", "result": "pass", "duration": "1.50"}}\n'
        '{"dt": "2026-12-03T06:29:08", "lvl": "results", "msg": {"case": "job", '
        '"definition": "lava", "result": "fail", "error_msg": "boot failed", '
        '"error_type": "Infrastructure"}}\n'
    )
    cases = results_of_log(log)
    assert [(c["suite"], c["name"], c["result"]) for c in cases] == [
        ("0_parsec-tls-demo", "parsec-ping", "pass"),
        ("lava", "job", "fail"),
    ]
    from parsec_demo.lava.results import case_results

    results = case_results(cases)
    assert [(r.name, r.status, r.duration) for r in results] == [
        ("lava.parsec-tls-demo.parsec-ping", "PASSED", 1.5),
        ("lava.lava.job", "FAILED", 0.0),
    ]
    assert results[1].log == "error_msg: boot failed\nerror_type: Infrastructure"


# --- the local dispatcher's view of this toolkit ---------------------------------------------


def test_the_local_dispatcher_gets_a_separate_interpreter_but_keeps_its_own_usr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lava run`` binds the toolkit's interpreter into the dispatcher's root for the RSE
    model, unless it is the distribution's own (/usr): bound there it would hide the root's
    /usr, lava-run with it. The root must then have that Python itself, or the run stops with
    one line."""
    from parsec_demo.lava import local_run

    root = tmp_path / "dispatcher"
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    monkeypatch.setattr(sys, "base_prefix", "/root/.pyenv/versions/3.11.7")
    assert local_run.interpreter_binds(root) == [Path("/root/.pyenv/versions/3.11.7")]
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    with pytest.raises(local_run.LocalRunError, match=f"has no /usr/bin/{version}"):
        local_run.interpreter_binds(root)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin" / version).touch()
    assert local_run.interpreter_binds(root) == []
