"""The Dockerfile: hadolint finds nothing, and the image is built the way the deployment needs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Dockerfile, parse_dockerfile

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
# A Python base image pinned to a patch release, such as python:3.11.13-slim-bookworm.
PINNED_SLIM_PYTHON = re.compile(r"python:3\.\d+\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?")


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: install the dev extras (pip install -e '.[dev]')"
    return found


def test_dockerfile_passes_hadolint() -> None:
    completed = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_hadolint_rejects_unpinned_base(tmp_path: Path) -> None:
    # The lint step must be able to fail: an unpinned base image is a finding.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install cspm-watch\n")

    completed = subprocess.run(
        [_hadolint(), str(bad)], capture_output=True, text=True, timeout=60, check=False
    )

    assert completed.returncode != 0
    assert "DL3007" in completed.stdout


def test_dockerfile_stages_share_pinned_slim_base(dockerfile: Dockerfile) -> None:
    names = [stage.name for stage in dockerfile.stages]

    assert names == ["build", "runtime"]
    for stage in dockerfile.stages:
        assert PINNED_SLIM_PYTHON.fullmatch(stage.base), stage.base


def test_dockerfile_installs_from_lock_file(dockerfile: Dockerfile) -> None:
    runs = " ".join(item.arguments for item in dockerfile.stage("build").all("RUN"))

    assert "--constraint constraints.txt" in runs
    assert "--editable ." in runs
    assert "compileall" in runs


def test_dockerfile_runtime_runs_as_non_root(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.stage("runtime")
    user = runtime.last("USER")

    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert gid.isdigit()
    assert int(gid) != 0


def test_dockerfile_runtime_command_and_health(dockerfile: Dockerfile) -> None:
    runtime = dockerfile.stage("runtime")
    entrypoint, command = runtime.last("ENTRYPOINT"), runtime.last("CMD")
    expose, healthcheck = runtime.last("EXPOSE"), runtime.last("HEALTHCHECK")
    volume, workdir = runtime.last("VOLUME"), runtime.last("WORKDIR")

    assert entrypoint is not None
    assert command is not None
    # Exec form, so that the service itself is PID 1 and receives SIGTERM.
    assert entrypoint.exec_form() + command.exec_form() == ["cspm-watch", "run"]
    assert expose is not None
    assert expose.arguments == "8080"
    assert healthcheck is not None
    flags, words = healthcheck.flags_and_words()
    assert "timeout" in flags
    assert words[0] == "CMD"
    assert volume is not None
    assert volume.exec_form() == ["/data"]
    assert workdir is not None
    assert workdir.arguments == "/data"


def test_dockerfile_runtime_copies_only_build_output(dockerfile: Dockerfile) -> None:
    copies = dockerfile.stage("runtime").all("COPY")

    assert len(copies) == 1
    flags, words = copies[0].flags_and_words()
    assert flags == {"from": "build"}
    assert words == ["/opt/cspm-watch", "/opt/cspm-watch"]


def test_dockerignore_admits_every_copied_source(dockerfile: Dockerfile) -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}

    assert patterns[0] == "*"
    for copy in dockerfile.stage("build").all("COPY"):
        _, words = copy.flags_and_words()
        for source in words[:-1]:
            assert source in admitted, f"line {copy.line}: {source} is excluded by .dockerignore"
    assert "tests" not in admitted
