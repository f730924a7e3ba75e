"""The CI pipeline definitions are valid for their CI systems (check-jsonschema vendors the
schemas) and run what they claim to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from parsec_demo.paths import PROJECT_ROOT

CI = PROJECT_ROOT / "ci"


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        (CI / "gitlab-ci.yml", "vendor.gitlab-ci"),
        (CI / "github/workflows/test.yml", "vendor.github-workflows"),
    ],
    ids=["gitlab", "github"],
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


def test_the_gitlab_pipeline_builds_tests_and_reports() -> None:
    pipeline = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    jobs = {
        name: job for name, job in pipeline.items() if isinstance(job, dict) and "script" in job
    }
    scripts = {name: " ".join(map(str, job["script"])) for name, job in jobs.items()}
    assert any("kas lock" in s for s in scripts.values())
    assert any("kas/base.yml:kas/qemuarm64.yml" in s and "kas build" in s for s in scripts.values())
    assert any(
        "kas/base.yml:kas/fvp-rd1-ae.yml" in s and "kas build" in s for s in scripts.values()
    )
    assert any("testimage" in s for s in scripts.values())
    assert any("resulttool junit" in s for s in scripts.values())
    for job in jobs.values():
        assert job.get("stage") in pipeline["stages"]
        for needed in job.get("needs", []):
            assert needed in jobs
    reports = [
        job["artifacts"]["reports"]["junit"]
        for job in jobs.values()
        if "reports" in job.get("artifacts", {})
    ]
    assert reports


def test_the_github_workflow_runs_the_suite() -> None:
    workflow = yaml.safe_load((CI / "github/workflows/test.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert any(step.get("run") == "./tools/test" for step in steps)
    assert (PROJECT_ROOT / ".ci/run").read_text().strip().endswith("exec ./tools/test")
