"""The ablation study's report (scripts/study/run_study.py): markdown tables (per benchmark and network, the selection
sweep, the pooled verdicts), the CSV and the plots (with matplotlib, when installed)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from configs.common import atomic_write_text
from inference.miniature import PAPER_KEPT_SHARE
from inference.evaluation.study_statistics import PERCENT
from inference.video_runner import STORE_PEAK_KEYS

KIB = 1024
TABLE_FILE = "study"  # <out>/study.md, .csv, .png
SWEEP_PLOT_FILE = "study_sweep.png"


CSV_COLUMNS = ("network", "benchmark", "row", "group", "label", "status", "jf", "jf_low", "jf_high", "delta",
               "delta_low", "delta_high", "j", "f", "fps", "peak_memory_mb", "working_elements",
               "long_term_elements", *STORE_PEAK_KEYS, "reentry_jf", "reentry_jf_low",
               "reentry_jf_high", "reentry_delta", "reentry_delta_low", "reentry_delta_high", "returns",
               "away_fp_area", "away_fp_lookalike", "videos")
REENTRY_KEYS = {"jf": "reentry_jf", "jf_low": "reentry_jf_low", "jf_high": "reentry_jf_high",
                "delta": "reentry_delta", "delta_low": "reentry_delta_low", "delta_high": "reentry_delta_high"}


def _cell(value: Any, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _range(entry: dict[str, Any], low: str, high: str, signed: bool = False) -> str:
    values = [entry.get(low), entry.get(high)]
    if not all(isinstance(value, float) and not math.isnan(value) for value in values):
        return "–"
    return f"{values[0]:+.1f} to {values[1]:+.1f}" if signed else f"{values[0]:.1f}–{values[1]:.1f}"


def _signed(value: Any) -> str:
    return f"{value:+.1f}" if isinstance(value, float) and not math.isnan(value) else "–"


def _store(entry: dict[str, Any], unit: str) -> str:
    values = [entry.get(f"{store}_{unit}_peak") for store in ("working", "long_term")]
    if any(value in ("", None) for value in values):
        return "–"
    return " / ".join(f"{value / KIB:.1f}" if unit == "bytes" else str(value) for value in values)


def _table_key(entry: dict[str, Any]) -> tuple[str, str]:
    return entry.get("network", ""), entry["benchmark"]


def format_markdown(entries: Sequence[dict[str, Any]], notes: Sequence[str] = (),
                    headers: Optional[dict[str, str]] = None, sections: Sequence[str] = ()) -> str:
    """One table per benchmark (and network): J&F, its interval and the difference from the full model, the stores'
    peak sizes and, on the long benchmark, the re-entry columns (entries hold x 100). `headers`: {benchmark: a line
    printed under its title (the memory settings)}; `sections`: more markdown (sweep, verdicts) after the tables."""
    header = ["row", "setting", "J&F", "95% CI", "Δ vs full", "Δ 95% CI", "J", "F", "FPS",
              "store el. (working / long-term)", "store KiB (working / long-term)"]
    reentry_header = ["re-entry J&F", "re-entry 95% CI", "re-entry Δ 95% CI", "look-alikes taken while away %",
                      "frame taken while away %"]
    lines = []
    for network, benchmark in dict.fromkeys(_table_key(entry) for entry in entries):
        table = [entry for entry in entries if _table_key(entry) == (network, benchmark)]
        reentry = any(isinstance(entry.get("reentry_jf"), float) for entry in table)
        columns = header + (reentry_header if reentry else []) + ["status"]
        title = benchmark + (f" ({network})" if network else "")
        lines += [f"### {title}", ""]
        if headers and benchmark in headers:
            lines += [headers[benchmark], ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for entry in table:
            cells = [entry["row"], entry["label"], _cell(entry.get("jf")), _range(entry, "jf_low", "jf_high"),
                     _signed(entry.get("delta")), _range(entry, "delta_low", "delta_high", signed=True),
                     _cell(entry.get("j")), _cell(entry.get("f")), _cell(entry.get("fps"), 2),
                     _store(entry, "elements"), _store(entry, "bytes")]
            if reentry:
                cells += [_cell(entry.get("reentry_jf")), _range(entry, "reentry_jf_low", "reentry_jf_high"),
                          _range(entry, "reentry_delta_low", "reentry_delta_high", signed=True),
                          _cell(entry.get("away_fp_lookalike")), _cell(entry.get("away_fp_area"), 2)]
            cells.append(str(entry["status"]).replace("|", "/"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for section in sections:
        lines += [section, ""]
    lines += list(notes)
    return "\n".join(lines) + "\n"


def format_sweep(gaps: Sequence[dict[str, float]], title: str, num_seeds: int) -> str:
    """The selection sweep as markdown: per share kept, the usage − random and potentiation gaps (x 100)."""
    columns = ("share kept", "P", "usage", f"random (mean of {num_seeds} seeds)", "usage − random", "95% CI",
               "usage, no potentiation", "potentiation on − off", "95% CI")
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for gap in gaps:
        scaled = {key: PERCENT * value if key not in ("share", "num_prototypes") else value
                  for key, value in gap.items()}
        lines.append("| " + " | ".join([
            f"{gap['share']:.1%}", str(gap["num_prototypes"]), _cell(scaled["usage"]), _cell(scaled["random"]),
            _signed(scaled["selection_gap"]), _range(scaled, "selection_low", "selection_high", signed=True),
            _cell(scaled["usage_off"]), _signed(scaled["potentiation_gap"]),
            _range(scaled, "potentiation_low", "potentiation_high", signed=True)]) + " |")
    return "\n".join(lines)


def format_verdicts(verdicts: dict[str, dict[str, Any]], title: str, networks: Sequence[str]) -> str:
    """The pooled differences over networks and the study's rule, as markdown (x 100)."""
    columns = ("row", *[f"Δ {network}" for network in networks], "pooled Δ", "pooled 95% CI", "verdict")
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for name, verdict in verdicts.items():
        scaled = {key: PERCENT * verdict[key] for key in ("delta", "delta_low", "delta_high")}
        lines.append("| " + " | ".join([name, *[_signed(PERCENT * delta) for delta in verdict["deltas"]],
                                         _signed(scaled["delta"]),
                                         _range(scaled, "delta_low", "delta_high", signed=True),
                                         verdict["verdict"]]) + " |")
    return "\n".join(lines)


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_plot(entries: Sequence[dict[str, Any]], path: Path) -> Optional[Path]:
    """J&F with 95% intervals, one panel per benchmark (and network); None (nothing written) without matplotlib."""
    plt = _matplotlib()
    if plt is None:
        return None
    tables = list(dict.fromkeys(_table_key(entry) for entry in entries))
    rows = max(sum(1 for entry in entries if _table_key(entry) == key) for key in tables)
    figure, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 0.3 * rows + 1.5), squeeze=False)
    for axis, key in zip(axes[0], tables):
        scored = [entry for entry in entries if _table_key(entry) == key and isinstance(entry["jf"], float)]
        positions = np.arange(len(scored))
        values = np.array([entry["jf"] for entry in scored])
        errors = np.array([[entry["jf"] - entry["jf_low"], entry["jf_high"] - entry["jf"]]
                           for entry in scored]).T.reshape(2, -1)
        axis.errorbar(values, positions, xerr=errors, fmt="o", capsize=3)
        axis.set_yticks(positions, [entry["row"] for entry in scored], fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel("J&F x 100 (95% bootstrap interval over videos)")
        axis.set_title(key[1] + (f" ({key[0]})" if key[0] else ""))
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_sweep_plot(sweeps: dict[str, Sequence[dict[str, float]]], path: Path) -> Optional[Path]:
    """The usage − random gap and the potentiation gap (x 100, 95% intervals) against the share kept (log scale),
    one line per network; None (nothing written) without matplotlib or without sweep points."""
    plt = _matplotlib()
    if plt is None or not any(sweeps.values()):
        return None
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for axis, (gap, title) in zip(axes[0], (("selection", "usage − random prototypes (potentiation on)"),
                                            ("potentiation", "potentiation on − off (usage prototypes)"))):
        for network, gaps in sweeps.items():
            shares = np.array([point["share"] for point in gaps]) * PERCENT
            values = np.array([point[f"{gap}_gap"] for point in gaps]) * PERCENT
            errors = np.array([[point[f"{gap}_gap"] - point[f"{gap}_low"], point[f"{gap}_high"] - point[f"{gap}_gap"]]
                               for point in gaps]).T.reshape(2, -1) * PERCENT
            axis.errorbar(shares, values, yerr=errors, fmt="o-", capsize=3, label=network or None)
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.axvline(PAPER_KEPT_SHARE * PERCENT, color="grey", linestyle=":", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("share of consolidation candidates kept as prototypes, % (dotted: the paper's)")
        axis.set_ylabel("Δ J&F x 100 (95% bootstrap interval)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if len(sweeps) > 1:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_tables(entries: Sequence[dict[str, Any]], out: Path, notes: Sequence[str],
                 headers: Optional[dict[str, str]] = None, sections: Sequence[str] = ()) -> tuple[Path, Path]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    csv_path, markdown_path = out / f"{TABLE_FILE}.csv", out / f"{TABLE_FILE}.md"
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(markdown_path, format_markdown(entries, notes, headers, sections))
    return csv_path, markdown_path


def write_memory_traces(traces: dict[str, Sequence[Sequence[int]]], stem: Path,
                        max_long_term_elements: Optional[int]) -> tuple[Path, Optional[Path]]:
    """Working and long-term elements against frame for every video: `<stem>.csv` (video, frame, working_elements,
    long_term_elements, at each change) and `<stem>.png` (one panel per video, LT_max dotted; None without
    matplotlib)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("video", "frame", "working_elements", "long_term_elements"))
    for video, trace in traces.items():
        writer.writerows((video, *point) for point in trace)
    csv_path = stem.with_suffix(".csv")
    atomic_write_text(csv_path, buffer.getvalue())
    plt = _matplotlib()
    if plt is None or not traces:
        return csv_path, None
    figure, axes = plt.subplots(len(traces), 1, figsize=(8, 1.8 * len(traces) + 0.6), squeeze=False, sharex=True)
    for axis, (video, trace) in zip(axes[:, 0], traces.items()):
        frames, working, long_term = np.array(trace).T
        axis.step(frames, working, where="post", label="working")
        axis.step(frames, long_term, where="post", label="long-term")
        if max_long_term_elements is not None:
            axis.axhline(max_long_term_elements, color="grey", linestyle=":", linewidth=0.8)
        axis.set_ylabel(f"{video}\nelements", fontsize=7)
        axis.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("frame (dotted: LT_max)")
    figure.tight_layout()
    png_path = stem.with_suffix(".png")
    figure.savefig(png_path, dpi=120)
    plt.close(figure)
    return csv_path, png_path
