"""`make bench` end to end at its smallest: one small cycle, pydo and two daemon cycles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.conftest import BENCH_DIRECTORY


@pytest.mark.slow
def test_run_small_writes_both_result_files(tmp_path: Path) -> None:
    command = [
        sys.executable,
        str(BENCH_DIRECTORY / "run.py"),
        "--sizes",
        "small",
        "--databases",
        "sqlite",
        "--no-rate-bound",
        "--daemon-cycles",
        "2",
        "--poll-interval-s",
        "0.2",
        "--output-directory",
        str(tmp_path),
    ]

    completed = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()
    cycle = results["cycles"][0]
    assert cycle["process"]["status"] == "completed"
    assert cycle["request_ratio"] == 1.0
    assert cycle["simulator"]["rate_limited"] == 0
    assert results["pydo"][0]["process"]["findings"] == 20
    assert results["pydo"][0]["process"]["affected_resources"] == 200
    assert len(results["daemon"]["rss_after_cycle_mb"]) == 2
    assert "## Targets" in markdown
    assert "| raised | small | sqlite | 25 / 25 | 1.00 |" in markdown
