"""The headline figures of a case, and the table of them ``python -m bench`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.samples import slope


def derive(case: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a case, next to the raw ones."""
    pilot, floor = case["pilot"], case["floor"]
    n = case["proxies"]
    pe, fe = pilot["edits"], floor["edits"]
    shared = pilot["rss_idle_kib"]

    def storm_s(storm: dict[str, Any]) -> float | str | None:
        return f"batches of {storm['batch']}" if storm.get("batch") else storm.get("max")

    case["headline"] = {
        "storm_s": storm_s(pilot["storm"]),
        "storm_floor_s": storm_s(floor["storm"]),
        "storm_cpu_s": pilot["storm"].get("cpu_s"),
        "storm_cpu_floor_s": floor["storm"].get("cpu_s"),
        "storm_fleet_cpu_s": pilot["storm"].get("fleet_cpu_s"),
        "storm_fleet_cpu_floor_s": floor["storm"].get("fleet_cpu_s"),
        "storm_retries": pilot["retries"].get("storm", {}).get("count", 0),
        "storm_retries_floor": floor["retries"].get("storm", {}).get("count", 0),
        "retries": sum(phase["count"] for phase in pilot["retries"].values()),
        "retries_floor": sum(phase["count"] for phase in floor["retries"].values()),
        "convergence_from_write_p50_s": pe["from_write"].get("p50"),
        "convergence_from_write_p99_s": pe["from_write"].get("p99"),
        "convergence_from_write_max_s": pe["from_write"].get("max"),
        "debounce_median_s": pe["debounce"].get("p50"),
        "convergence_after_debounce_p99_s": pe["from_push_start"].get("p99"),
        "push_median_s": pe["push"].get("p50"),
        "push_floor_median_s": fe["push"].get("p50"),
        "push_ratio": pe["push"]["p50"] / fe["push"]["p50"] if fe["push"].get("p50") else None,
        "cpu_per_push_s": pe["cpu_per_push"].get("p50"),
        "cpu_per_push_floor_s": fe["cpu_per_push"].get("p50"),
        "rss_idle_mib": shared / 1024,
        "rss_connected_mib": pilot["rss_connected_kib"] / 1024,
        "rss_per_proxy_kib": (pilot["rss_connected_kib"] - shared) / n,
        "rss_snapshot_mib": (pilot["added"]["rss_one_proxy_kib"] - shared) / 1024,
        "first_proxy_s": pilot["added"].get("first_full_s"),
        "first_proxy_floor_s": floor["added"].get("first_full_s"),
        "rss_per_added_proxy_kib": pilot["added"]["per_connection_kib"],
        "rss_per_added_proxy_floor_kib": floor["added"]["per_connection_kib"],
        "rss_per_proxy_floor_kib": (floor["rss_connected_kib"] - floor["rss_idle_kib"]) / n,
        "translation_ms": case["translation"]["total_ms"],
        "memory_growth_pct": 100 * (pilot["rss_after_last_edit_kib"] / pilot["rss_after_first_edit_kib"] - 1),
        "rss_growth_per_push_kib": slope(pe["rounds"]),
        "rss_growth_per_push_floor_kib": slope(fe["rounds"]),
        "bytes_per_proxy_per_edit": pe.get("bytes_per_proxy_per_edit"),
        "edits": pe["count"],
    }
    return case


COLUMNS = (
    ("N", "proxies", "{:d}"),
    ("K", "services", "{:d}"),
)
ROWS = (
    ("connect storm, all ACKed (s)", "storm_s", "{:.2f}"),
    ("  floor (s)", "storm_floor_s", "{:.2f}"),
    ("pilot CPU during the storm (s)", "storm_cpu_s", "{:.2f}"),
    ("  floor (s)", "storm_cpu_floor_s", "{:.2f}"),
    ("simulated fleet's CPU during the storm (s)", "storm_fleet_cpu_s", "{:.2f}"),
    ("  against the floor (s)", "storm_fleet_cpu_floor_s", "{:.2f}"),
    ("streams retried in the storm", "storm_retries", "{:d}"),
    ("  floor", "storm_retries_floor", "{:d}"),
    ("streams retried, all phases", "retries", "{:d}"),
    ("  floor", "retries_floor", "{:d}"),
    ("first proxy of a new view, full config (s)", "first_proxy_s", "{:.3f}"),
    ("  floor (s)", "first_proxy_floor_s", "{:.3f}"),
    ("convergence from write p50 (s)", "convergence_from_write_p50_s", "{:.3f}"),
    ("convergence from write p99 (s)", "convergence_from_write_p99_s", "{:.3f}"),
    ("convergence from write max (s)", "convergence_from_write_max_s", "{:.3f}"),
    ("  of which detect+debounce, median (s)", "debounce_median_s", "{:.3f}"),
    ("convergence after debounce p99 (s)", "convergence_after_debounce_p99_s", "{:.3f}"),
    ("push to all, median (s)", "push_median_s", "{:.3f}"),
    ("  floor push to all, median (s)", "push_floor_median_s", "{:.3f}"),
    ("  push / floor", "push_ratio", "{:.2f}x"),
    ("pilot CPU per push (s)", "cpu_per_push_s", "{:.3f}"),
    ("  floor CPU per push (s)", "cpu_per_push_floor_s", "{:.3f}"),
    ("RSS idle, config loaded (MiB)", "rss_idle_mib", "{:.1f}"),
    ("RSS with N connected (MiB)", "rss_connected_mib", "{:.1f}"),
    ("RSS of the first proxy: snapshot etc. (MiB)", "rss_snapshot_mib", "{:.1f}"),
    ("RSS per added proxy, steady (KiB)", "rss_per_added_proxy_kib", "{:.1f}"),
    ("  floor (KiB)", "rss_per_added_proxy_floor_kib", "{:.1f}"),
    ("RSS per proxy after storm, incl. all (KiB)", "rss_per_proxy_kib", "{:.1f}"),
    ("  floor (KiB)", "rss_per_proxy_floor_kib", "{:.1f}"),
    ("full translation, in-process (ms)", "translation_ms", "{:.1f}"),
    ("RSS after last edit vs first (%)", "memory_growth_pct", "{:+.1f}"),
    ("  RSS growth per push (KiB)", "rss_growth_per_push_kib", "{:+.1f}"),
    ("  floor RSS growth per push (KiB)", "rss_growth_per_push_floor_kib", "{:+.1f}"),
    ("bytes per proxy per edit", "bytes_per_proxy_per_edit", "{:,.0f}"),
    ("edits", "edits", "{:d}"),
)


def table(cases: Sequence[dict[str, Any]]) -> str:
    width = max(len(label) for label, _, _ in ROWS) + 2
    header = "".ljust(width) + "".join(f"N={c['proxies']},K={c['services']}".rjust(16) for c in cases)
    lines = [header, "-" * len(header)]
    for label, key, fmt in ROWS:
        cells = []
        for case in cases:
            value = f"aborted: {case['aborted']}" if "aborted" in case else case["headline"].get(key)
            text = "-" if value is None else value if isinstance(value, str) else fmt.format(value)
            cells.append(text.rjust(16))
        lines.append(label.ljust(width) + "".join(cells))
    return "\n".join(lines)
