"""Turn the benchmark's results into target verdicts and the Markdown page results.md."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

# The targets that `evaluate_targets` checks.
MIN_RATE_SHARE = 0.90
MIN_PYDO_SPEEDUP = 3.0
MAX_AFTER_LAST_RESPONSE_S = 2.0
MAX_LARGE_PEAK_RSS_MB = 250.0
MAX_DAEMON_RSS_GROWTH = 0.10

Record = dict[str, Any]


def evaluate_targets(results: Record) -> list[Record]:
    """Return one verdict per target: its text, what was measured, and whether it was met
    (None when nothing measured it)."""
    cycles = results["cycles"]
    return [
        _requests_target(cycles),
        _rate_share_target(cycles),
        _pydo_target(cycles, results["pydo"]),
        _large_team_target(cycles),
        _daemon_target(results["daemon"]),
    ]


def _verdict(target: str, measured: str, met: bool | None) -> Record:
    return {"target": target, "measured": measured, "met": met}


def _all_cycles(cycles: Sequence[Record]) -> list[Record]:
    """Return every cycle run: the measured ones and the first scans stored before them."""
    return [*cycles, *(cycle["first_scan"] for cycle in cycles)]


def _rate_limited(cycle: Record) -> int:
    return int(cycle["simulator"]["rate_limited"]) + int(cycle["process"]["rate_limited"])


def _requests_target(cycles: Sequence[Record]) -> Record:
    runs = _all_cycles(cycles)
    if not runs:
        return _verdict("requests equal the minimum, no 429", "no cycle ran", None)
    ratios = [run["request_ratio"] for run in runs]
    answered_429 = sum(_rate_limited(run) for run in runs)
    measured = (
        f"request ratio {min(ratios):.2f} to {max(ratios):.2f} over {len(runs)} cycles, "
        f"{answered_429} answered 429"
    )
    met = all(abs(ratio - 1.0) < 1e-9 for ratio in ratios) and answered_429 == 0
    return _verdict("requests equal the minimum (ratio 1.00), no 429", measured, met)


def _rate_share_target(cycles: Sequence[Record]) -> Record:
    target = f"achieved rate at least {MIN_RATE_SHARE:.0%} of the allowed rate where it binds"
    bound = [cycle for cycle in cycles if cycle["simulator"]["rate_share"] is not None]
    if not bound:
        return _verdict(target, "the rate limit bound in no cycle", None)
    shares = [cycle["simulator"]["rate_share"] for cycle in bound]
    measured = ", ".join(
        f"{_label(cycle)}: {cycle['simulator']['rate_share']:.1%}" for cycle in bound
    )
    return _verdict(target, measured, min(shares) >= MIN_RATE_SHARE)


def pydo_comparisons(cycles: Sequence[Record], pydo: Sequence[Record]) -> list[Record]:
    """Pair each pydo run with the service's cycle of the same size under the same limits,
    on the first database measured."""
    pairs = []
    for baseline in pydo:
        service = next(
            (
                cycle
                for cycle in cycles
                if cycle["size"] == baseline["size"] and cycle["limits"] == "raised"
            ),
            None,
        )
        if service is None:
            continue
        service_s = service["simulator"]["collection_s"]
        pydo_s = baseline["simulator"]["collection_s"]
        pairs.append(
            {
                "size": baseline["size"],
                "database": service["database"],
                "service": service,
                "pydo": baseline,
                "speedup": pydo_s / service_s if service_s > 0 else None,
            }
        )
    return pairs


def _pydo_target(cycles: Sequence[Record], pydo: Sequence[Record]) -> Record:
    target = f"collects at least {MIN_PYDO_SPEEDUP:g} times faster than pydo (limits raised)"
    pairs = pydo_comparisons(cycles, pydo)
    if not pairs:
        return _verdict(target, "pydo did not run", None)
    measured = ", ".join(f"{pair['size']}: {pair['speedup']:.1f}x" for pair in pairs)
    met = all(pair["speedup"] is not None and pair["speedup"] >= MIN_PYDO_SPEEDUP for pair in pairs)
    return _verdict(target, measured, met)


def _large_team_target(cycles: Sequence[Record]) -> Record:
    target = (
        f"large team: under {MAX_AFTER_LAST_RESPONSE_S:g} s from the last response to the "
        f"deliveries enqueued, peak RSS under {MAX_LARGE_PEAK_RSS_MB:g} MB"
    )
    large = [cycle for cycle in cycles if cycle["size"] == "large"]
    if not large:
        return _verdict(target, "the large team did not run", None)
    after_s = [cycle["process"]["after_last_response_s"] for cycle in large]
    peaks = [cycle["process"]["peak_rss_mb"] for cycle in large]
    first_after_s = [cycle["first_scan"]["process"]["after_last_response_s"] for cycle in large]
    measured = (
        f"{max(after_s):.2f} s at most, peak RSS {max(peaks):.0f} MB at most "
        f"(first scan of the team: {max(first_after_s):.2f} s)"
    )
    met = max(after_s) < MAX_AFTER_LAST_RESPONSE_S and max(peaks) < MAX_LARGE_PEAK_RSS_MB
    return _verdict(target, measured, met)


def daemon_growth(daemon: Record) -> float:
    """Return the RSS change from the first cycle to the last as a share of the first."""
    readings = daemon["rss_after_cycle_mb"]
    return float(readings[-1] / readings[0] - 1)


def _daemon_target(daemon: Record | None) -> Record:
    target = f"daemon RSS after the last cycle within {MAX_DAEMON_RSS_GROWTH:.0%} of the first"
    if daemon is None:
        return _verdict(target, "the daemon did not run", None)
    readings = daemon["rss_after_cycle_mb"]
    growth = daemon_growth(daemon)
    measured = (
        f"{readings[0]:.0f} MB after cycle 1, {readings[-1]:.0f} MB after cycle "
        f"{len(readings)} ({growth:+.1%})"
    )
    return _verdict(target, measured, abs(growth) <= MAX_DAEMON_RSS_GROWTH)


def _label(cycle: Record) -> str:
    return f"{cycle['size']} on {cycle['database']}"


# Markdown


def render_markdown(results: Record) -> str:
    """Render results.md: set-up, target verdicts, then one table per measurement."""
    sections = [
        _header(results),
        _targets_table(results["targets"]),
        _cycles_section(results["cycles"]),
        _first_scans_section(results["cycles"]),
        _pydo_section(results["cycles"], results["pydo"]),
        _daemon_section(results["daemon"]),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _header(results: Record) -> str:
    machine, settings = results["machine"], results["settings"]
    limits = ", ".join(
        f"{mode['name']}: {mode['per_minute']:,}/min and {mode['per_hour']:,}/h "
        f"(DigitalOcean's x{mode['factor']})"
        for mode in settings["limits"]
    )
    teams = ", ".join(
        f"{name} {team['measured_scan']['findings']} findings / "
        f"{team['measured_scan']['affected_resources']:,} affected resources"
        for name, team in results["teams"].items()
    )
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    recorded_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Recorded {recorded_at} by `{results['command']}` in "
            f"{results['duration_s'] / 60:.1f} minutes. Method and definitions: "
            "docs/benchmarks.md.",
            "",
            f"- Machine: {machine['cpu']}, {machine['cores']} cores, load average "
            f"{machine['load_average_at_start'][0]} at the start (other work shared the host); "
            f"{machine['platform']}",
            f"- Python {machine['python']}, SQLite {machine['sqlite']}, PostgreSQL "
            f"{machine.get('postgresql', 'not used')}; {packages}",
            f"- Simulator: {settings['latency_s'] * 1000:g} ms added to every request; "
            f"rate limits per token {limits}. The client is configured with the same limits "
            f"(window margin {settings['client_margin_s']:g} s) and "
            f"{settings['max_concurrency']} connections.",
            f"- Cycle: resources fetched for findings from "
            f"{settings['resource_detail_min_severity']}, alerts from "
            f"{settings['alert_min_severity']}, first poll interval "
            f"{settings['poll_initial_interval_s']:g} s; each simulated scan reads as running to "
            "one poll.",
            f"- Teams (the measured scan): {teams}.",
        ]
    )


def _targets_table(targets: Sequence[Record]) -> str:
    def verdict(met: bool | None) -> str:
        if met is None:
            return "not measured"
        return "met" if met else "**missed**"

    rows = [(target["target"], target["measured"], verdict(target["met"])) for target in targets]
    return "## Targets\n\n" + _table(("target", "measured", "verdict"), rows)


def _kinds(counts: Record) -> str:
    return (
        f"{counts['triggers']}+{counts['polls']} / {counts['finding_pages']} / "
        f"{counts['resource_pages']} / {counts['settings_pages']}"
    )


def _optional(value: float | None, formatter: Callable[[float], str]) -> str:
    return "-" if value is None else formatter(value)


def _cycle_row(cycle: Record, *, with_limits: bool) -> list[str]:
    process, simulator = cycle["process"], cycle["simulator"]
    row = [cycle["limits"]] if with_limits else []
    return [
        *row,
        cycle["size"],
        cycle["database"],
        f"{simulator['counts']['total']} / {cycle['minimum']['total']}",
        f"{cycle['request_ratio']:.2f}",
        _kinds(simulator["counts"]),
        str(_rate_limited(cycle)),
        _optional(simulator["rate_share"], lambda share: f"{share:.1%}"),
        _optional(simulator["requests_per_minute"], lambda rate: f"{rate:,.0f}"),
        f"{process['duration_s']:.2f}",
        f"{process['cycle_cpu_s']:.2f}",
        _optional(process["after_last_response_s"], lambda seconds: f"{seconds:.2f}"),
        _optional(process["after_collection_s"], lambda seconds: f"{seconds:.2f}"),
        f"{process['peak_rss_mb']:.0f}",
    ]


_CYCLE_HEADERS = (
    "size",
    "database",
    "requests / minimum",
    "ratio",
    "trigger+polls / finding pages / resource pages / settings",
    "429s",
    "rate share",
    "requests/min",
    "wall s",
    "CPU s",
    "last response to enqueued s",
    "collection end to enqueued s",
    "peak RSS MB",
)


def _cycles_section(cycles: Sequence[Record]) -> str:
    rows = [_cycle_row(cycle, with_limits=True) for cycle in cycles]
    return (
        "## One cycle (a repeat scan of the team, diffed against the scan before)\n\n"
        "`rate share` is the fastest span the limits allow for that many requests divided by "
        "the measured span, shown only where the limits bind. `wall s` is the cycle from lease "
        "to enqueue, polling included; `CPU s` is the cycle process's CPU time over the "
        "same stretch.\n\n" + _table(("limits", *_CYCLE_HEADERS), rows)
    )


def _first_scans_section(cycles: Sequence[Record]) -> str:
    firsts = [
        {**cycle["first_scan"], "size": cycle["size"], "database": cycle["database"]}
        for cycle in cycles
        if cycle["limits"] == "raised"
    ]
    if not firsts:
        return ""
    rows = [_cycle_row(first, with_limits=False) for first in firsts]
    return "## First scan of a team (raised limits): every fingerprint is new\n\n" + _table(
        _CYCLE_HEADERS, rows
    )


def _pydo_section(cycles: Sequence[Record], pydo: Sequence[Record]) -> str:
    pairs = pydo_comparisons(cycles, pydo)
    if not pairs:
        return ""
    rows = []
    for pair in pairs:
        service, baseline = pair["service"], pair["pydo"]
        rows.append(
            [
                pair["size"],
                f"{service['simulator']['counts']['total']}",
                f"{service['simulator']['collection_s']:.2f}",
                f"{service['process']['duration_s']:.2f}",
                f"{baseline['simulator']['counts']['total']} / {baseline['minimum']['total']}",
                f"{baseline['simulator']['collection_s']:.2f}",
                f"{baseline['process']['duration_s']:.2f}",
                _optional(pair["speedup"], lambda speedup: f"{speedup:.1f}x"),
            ]
        )
    headers = (
        "size",
        "service requests",
        "service collection s",
        "service cycle s",
        "pydo requests / minimum",
        "pydo collection s",
        "pydo wall s",
        "collection speed-up",
    )
    return (
        "## Service and pydo (raised limits, same team and simulator settings)\n\n"
        "Collection runs from the first findings page to the last resource page, as the "
        "simulator saw them. pydo's minimum leaves out the settings page, which only the "
        "service needs; its wall time covers trigger, polls and collection, the service's "
        f"cycle also stores, diffs and enqueues (on {pairs[0]['database']}).\n\n"
        + _table(headers, rows)
    )


def _daemon_section(daemon: Record | None) -> str:
    if daemon is None:
        return ""
    readings = daemon["rss_after_cycle_mb"]
    marks = sorted({1, 2, 5, 10, len(readings)} & set(range(1, len(readings) + 1)))
    headers = ["after start", *(f"after cycle {mark}" for mark in marks), "change"]
    row = [
        f"{daemon['rss_after_start_mb']:.0f}",
        *(f"{readings[mark - 1]:.0f}" for mark in marks),
        f"{daemon_growth(daemon):+.1%}",
    ]
    statuses = sorted(set(daemon["statuses"]))
    return (
        f"## Daemon memory: RSS in MB over {len(readings)} cycles of the medium team "
        "(SQLite, raised limits)\n\n"
        f"Cycle statuses: {', '.join(statuses)}.\n\n" + _table(headers, [row])
    )
