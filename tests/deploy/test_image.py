"""The container image, reproduced without a Docker engine.

No Docker engine runs where the tests run, so this test replays the Dockerfile instead of
building it. The build stage's COPY and RUN steps run with every image path moved under a
temporary root, and its venv is made by the interpreter behind the tests. Then the runtime
stage's command (`cspm-watch run`) starts from its WORKDIR with its ENV, answers its own
HEALTHCHECK command, and stops on SIGTERM. What this cannot check: the base image itself, the
user and group that `useradd` creates, and a read-only root filesystem as the kernel enforces
it (the test checks instead that nothing under the image's /opt changes at run time).

pip's cache is kept (the Dockerfile turns it off), so a second run downloads nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service.runtime import EXIT_SIGTERM
from tests.deploy.dockerfile import Dockerfile, Stage, expand, parse_dockerfile, parse_env
from tests.scanning.support import scenario
from tests.support.simulators import SimulatorFactory

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The absolute directories of the image, moved under the temporary root.
IMAGE_DIRECTORIES = ("/opt/cspm-watch", "/data")
# The .dockerignore entries that matter inside the copied directories.
IGNORED_IN_CONTEXT = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.db", "*.db-wal", "*.db-shm", "*.migrate-lock"
)
PIP_TIMEOUT_S = 540
DAEMON_TIMEOUT_S = 30.0

pytestmark = pytest.mark.slow


class ImageReplay:
    """The Dockerfile's stages replayed under `root`, a stand-in for the image's filesystem."""

    def __init__(self, dockerfile: Dockerfile, root: Path, base_bin: Path) -> None:
        self.dockerfile = dockerfile
        self.root = root
        self.base_bin = base_bin
        root.mkdir(parents=True)

    def in_root(self, text: str) -> str:
        for directory in IMAGE_DIRECTORIES:
            text = text.replace(directory, f"{self.root}{directory}")
        return text

    def base_environment(self) -> dict[str, str]:
        # The base image's PATH, with its python replaced by the interpreter running the tests.
        return {
            "PATH": f"{self.base_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "root"),
            "LANG": "C.UTF-8",
        }

    def build(self, stage: Stage) -> dict[str, str]:
        """Run the COPY, ENV, WORKDIR and RUN steps of the build stage; return its ENV."""
        environ = self.base_environment()
        workdir = self.root
        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                values = parse_env(instruction.arguments, environ)
                environ.update({key: self.in_root(value) for key, value in values.items()})
            elif instruction.keyword == "WORKDIR":
                workdir = Path(self.in_root(expand(instruction.arguments, environ)))
                workdir.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "COPY":
                self._copy(instruction.flags_and_words()[1], workdir)
            elif instruction.keyword == "RUN":
                self._run(instruction.arguments, environ, workdir)
        return environ

    def runtime_environment(self, stage: Stage) -> tuple[dict[str, str], Path]:
        """Return the runtime stage's ENV and WORKDIR, moved under the root."""
        environ = self.base_environment()
        workdir = self.root
        for instruction in stage.instructions:
            if instruction.keyword == "ENV":
                values = parse_env(instruction.arguments, environ)
                environ.update({key: self.in_root(value) for key, value in values.items()})
            elif instruction.keyword == "WORKDIR":
                workdir = Path(self.in_root(instruction.arguments))
        environ["HOME"] = str(workdir)
        return environ, workdir

    def _copy(self, words: list[str], workdir: Path) -> None:
        *sources, destination = words
        target = workdir / destination if not destination.startswith("/") else None
        target = target or Path(self.in_root(destination))
        for source in sources:
            origin = PROJECT_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=IGNORED_IN_CONTEXT)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)

    def _run(self, command: str, environ: dict[str, str], workdir: Path) -> None:
        run_environ = {key: value for key, value in environ.items() if key != "PIP_NO_CACHE_DIR"}
        run_environ["PIP_CACHE_DIR"] = str(Path.home() / ".cache" / "pip")
        completed = subprocess.run(
            ["/bin/sh", "-c", self.in_root(command)],
            cwd=workdir,
            env=run_environ,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
        assert completed.returncode == 0, f"RUN {command}\n{completed.stdout}\n{completed.stderr}"


def _files_under(directory: Path) -> dict[str, int]:
    return {
        str(path.relative_to(directory)): path.stat().st_mtime_ns
        for path in directory.rglob("*")
        if path.is_file()
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(
    command: list[str], environ: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def base_bin(tmp_path: Path) -> Path:
    """A directory whose `python` is the interpreter behind the test run, as in the base image."""
    directory = tmp_path / "base-bin"
    directory.mkdir()
    interpreter = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    for name in ("python", "python3"):
        (directory / name).symlink_to(interpreter)
    return directory


async def _wait_healthy(
    health: list[str], environ: dict[str, str], cwd: Path, daemon: asyncio.subprocess.Process
) -> subprocess.CompletedProcess[str]:
    async with asyncio.timeout(DAEMON_TIMEOUT_S):
        while True:
            check = await asyncio.to_thread(_run, health, environ, cwd)
            if check.returncode == 0 or daemon.returncode is not None:
                return check
            await asyncio.sleep(0.2)


async def test_image_install_steps_run_daemon(
    tmp_path: Path, base_bin: Path, make_simulator: SimulatorFactory
) -> None:
    dockerfile = parse_dockerfile(PROJECT_ROOT / "Dockerfile")
    replay = ImageReplay(dockerfile, tmp_path / "image", base_bin)
    await asyncio.to_thread(replay.build, dockerfile.stage("build"))
    runtime = dockerfile.stage("runtime")
    environ, workdir = replay.runtime_environment(runtime)
    workdir.mkdir(parents=True)
    installed_before = _files_under(replay.root / "opt")

    # Only the runtime dependencies are installed, not the dev extras.
    no_pytest = _run(["python", "-c", "import pytest"], environ, workdir)
    assert no_pytest.returncode != 0

    upgrade = _run(["cspm-watch", "db", "upgrade"], environ, workdir)
    assert upgrade.returncode == 0, upgrade.stderr
    assert (workdir / "cspm-watch.db").is_file()

    simulator = await make_simulator(scenario('- findings: {firewall: ["do:droplet:1001"]}\n'))
    config = tmp_path / "config" / "cspm-watch.yaml"
    config.parent.mkdir()
    config.write_text(
        textwrap.dedent(
            f"""\
            api_url: {simulator.url}
            targets:
              - name: acme
                token_env: DIGITALOCEAN_TOKEN
                schedule: {{interval_s: 3600}}
            notifiers:
              stdout: {{type: console}}
            """
        )
    )
    environ |= {
        "CSPM_WATCH_CONFIG": str(config),
        "CSPM_WATCH_LISTEN": f"127.0.0.1:{_free_port()}",
        "DIGITALOCEAN_TOKEN": simulator.token,
    }
    entrypoint, command, healthcheck = (
        runtime.last("ENTRYPOINT"),
        runtime.last("CMD"),
        runtime.last("HEALTHCHECK"),
    )
    assert entrypoint is not None
    assert command is not None
    assert healthcheck is not None
    health = healthcheck.healthcheck_command()

    daemon = await asyncio.create_subprocess_exec(
        *(entrypoint.exec_form() + command.exec_form()),
        cwd=workdir,
        env=environ,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        check = await _wait_healthy(health, environ, workdir, daemon)
    finally:
        if daemon.returncode is None:
            daemon.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DAEMON_TIMEOUT_S):
            _, stderr = await daemon.communicate()

    assert check.returncode == 0, check.stderr + stderr.decode()
    assert '"status": 200' in check.stdout
    assert daemon.returncode == EXIT_SIGTERM, stderr.decode()
    assert b'"event": "daemon_started"' in stderr
    # The process wrote only under its WORKDIR, the /data volume: the root can be read-only.
    assert _files_under(replay.root / "opt") == installed_before
    data_files = set(os.listdir(replay.root / "data"))
    assert "cspm-watch.db" in data_files
    # The migrate-lock file serializes migrations of the SQLite file across processes.
    assert data_files <= {
        "cspm-watch.db",
        "cspm-watch.db-wal",
        "cspm-watch.db-shm",
        "cspm-watch.migrate-lock",
    }
