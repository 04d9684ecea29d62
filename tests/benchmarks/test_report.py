"""Target verdicts from recorded results."""

from __future__ import annotations

from typing import Any

from report import evaluate_targets, render_markdown


def _cycle(size: str, limits: str, **overrides: Any) -> dict[str, Any]:
    process = {
        "status": "completed",
        "rate_limited": 0,
        "duration_s": 2.0,
        "cycle_cpu_s": 0.5,
        "after_last_response_s": 0.5,
        "after_collection_s": 0.8,
        "peak_rss_mb": 120.0,
    }
    simulator = {
        "counts": {
            "triggers": 1,
            "polls": 2,
            "finding_pages": 1,
            "resource_pages": 10,
            "settings_pages": 1,
            "other": 0,
            "total": 15,
        },
        "rate_limited": 0,
        "collection_s": 1.0,
        "rate_share": None,
        "requests_per_minute": 500.0,
    }
    process.update(overrides.pop("process", {}))
    simulator.update(overrides.pop("simulator", {}))
    first = {"process": dict(process), "simulator": dict(simulator), "request_ratio": 1.0}
    first["minimum"] = {"total": 15}
    return {
        "size": size,
        "database": "sqlite",
        "limits": limits,
        "process": process,
        "simulator": simulator,
        "minimum": {"total": 15},
        "request_ratio": 1.0,
        "first_scan": first,
        **overrides,
    }


def _results(cycles: list[dict[str, Any]], growth_mb: float = 1.0) -> dict[str, Any]:
    pydo = {
        "size": "large",
        "process": {"duration_s": 10.0},
        "simulator": {"counts": {"total": 14}, "collection_s": 4.0},
        "minimum": {"total": 14},
    }
    return {
        "cycles": cycles,
        "pydo": [pydo],
        "daemon": {
            "rss_after_start_mb": 90.0,
            "rss_after_cycle_mb": [100.0, 100.0 + growth_mb],
            "statuses": ["completed", "completed"],
        },
    }


def _verdicts(results: dict[str, Any]) -> list[bool | None]:
    return [target["met"] for target in evaluate_targets(results)]


def test_evaluate_targets_all_met() -> None:
    cycles = [
        _cycle("large", "raised"),
        _cycle("large", "digitalocean", simulator={"rate_share": 0.95}),
    ]

    assert _verdicts(_results(cycles)) == [True, True, True, True, True]


def test_evaluate_targets_each_miss() -> None:
    cycles = [
        _cycle(
            "large",
            "raised",
            request_ratio=1.1,
            simulator={"collection_s": 2.0},
            process={"after_last_response_s": 2.5},
        ),
        _cycle("large", "digitalocean", simulator={"rate_share": 0.8}),
    ]

    assert _verdicts(_results(cycles, growth_mb=20.0)) == [False, False, False, False, False]


def test_evaluate_targets_unmeasured_is_none() -> None:
    results = _results([_cycle("small", "raised")])
    results["pydo"] = []
    results["daemon"] = None

    assert _verdicts(results) == [True, None, None, None, None]


def test_render_markdown_lists_targets_and_cycles() -> None:
    results = _results([_cycle("large", "raised")])
    results["targets"] = evaluate_targets(results)
    results.update(
        command="python benchmarks/run.py",
        duration_s=60.0,
        teams={"large": {"measured_scan": {"findings": 300, "affected_resources": 50_000}}},
        machine={
            "cpu": "test CPU",
            "cores": 2,
            "load_average_at_start": [1.0, 1.0, 1.0],
            "platform": "Linux",
            "python": "3.11",
            "sqlite": "3.40",
            "packages": {"pydo": "0.44.0"},
        },
        settings={
            "latency_s": 0.04,
            "poll_initial_interval_s": 1.0,
            "max_concurrency": 8,
            "client_margin_s": 1.0,
            "resource_detail_min_severity": "LOW",
            "alert_min_severity": "HIGH",
            "limits": [{"name": "raised", "factor": 100, "per_minute": 25000, "per_hour": 500000}],
        },
    )

    markdown = render_markdown(results)

    assert "| requests equal the minimum (ratio 1.00), no 429 |" in markdown
    assert "| raised | large | sqlite | 15 / 15 | 1.00 |" in markdown
    assert "large 300 findings / 50,000 affected resources" in markdown
