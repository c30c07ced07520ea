"""The paper's ablations in miniature: every ablation row that needs no retraining, run with one trained network on
two synthetic benchmarks, with bootstrap intervals.

    python scripts/run_study.py --model /work/study_runs/saves/study/study_s03_2750.pth --out ../output/study

Benchmarks (written under <out>/data/ on first use; deterministic by seed):
- `held_out`: STUDY_PLAN.held_out_videos DAVIS-style videos of the quickstart's held-out kind (scripts/
  study_prepare.py; the first 8 are the quickstart's own held-out videos), every frame annotated, eval.py D17;
- `long`: the long benchmark of dataset/synthetic_long.py (LONG_BENCHMARK: 5 videos x 2000 frames, objects away
  for hundreds of frames, sparse ground truth), eval.py LV1.
Rows: every row of configs/ablations/ that runs with --model (rows naming a retrained checkpoint are left out),
plus the calibration rows of configs/study_baselines/ (the trained network reading only the first frame), each
run by scripts/run_ablations.py (one eval.py process per row; finished rows are reused, interrupted ones resume),
and copy-the-first-frame-mask, scored here.

Every row's masks are scored per object (inference/metrics.py, DAVIS mode) and the videos are resampled with
replacement (`--bootstrap` times, the same resamples for every row): each row gets a 95% interval for its J&F and
for its difference from the full model (`stores_all`), so a difference whose interval excludes 0 is more than the
luck of which videos were drawn. Output: <out>/study.md and .csv (the tables), <out>/study.png (J&F with intervals,
if matplotlib is installed), <out>/study.html (the table, the plot and per video every row's J&F, linking to each
row's report page), and run_ablations.py's own tables and page under <out>/<benchmark>/.

Cost (XMem at 96x160, one thread, measured): one row takes about 2.5-4 min (held_out, 900 frames), 12 min (long
at --size reduced, 3,200 frames) or 45 min (long at --size full, 10,000 frames); the 22 distinct runs of the
default rows take about 18 hours at full size. `--rows` (optionally per benchmark) and `--benchmarks` restrict it.
"""
from __future__ import annotations

import argparse
import sys
import csv
import dataclasses
import fnmatch
import io
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from configs.common import atomic_write_text, run_cli
from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from dataset.synthetic_layouts import write_davis
from dataset.synthetic_long import LONG_BENCHMARK, LONG_BENCHMARK_REDUCED, LongBenchmark, write_long_benchmark
from inference.folder_evaluation import evaluate_folders
from inference.metrics import MODE_DAVIS, ObjectScores
from inference.report_page import PAGE_FILE, ComparisonRow, video_jf, write_comparison_page, write_page_or_warn
from scripts import run_ablations
from scripts.quickstart import DAVIS_SPLIT_FOLDER
from scripts.study_prepare import QUICKSTART_HELD_OUT_VIDEOS, STUDY_PLAN, STUDY_PRESET, held_out_videos

REPOSITORY = Path(__file__).resolve().parents[1]
BASELINE_DIR = REPOSITORY / "configs" / "study_baselines"
FULL_MODEL_ROW = "stores_all"
COPY_FIRST_MASK = "copy_first_mask"
BENCHMARKS = ("held_out", "long")
DEFAULT_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
PERCENT = 100
TABLE_FILE = "study"  # <out>/study.md, .csv, .png
SCORES_FOLDER = "study_scores"  # per-object tables written beside each row's masks


@dataclasses.dataclass(frozen=True)
class StudySize:
    """The benchmarks' sizes: `full` is the study as designed, `reduced` what fits a few hours of two cores (the
    long benchmark as 8 x 400 frames), `tiny` checks the pipeline in a minute."""

    held_out_videos: int
    held_out_frames: int
    height: int
    width: int
    long: LongBenchmark


SIZES = {
    "full": StudySize(STUDY_PLAN.held_out_videos, STUDY_PLAN.held_out_video_frames, STUDY_PLAN.height,
                      STUDY_PLAN.width, LONG_BENCHMARK),
    "reduced": StudySize(STUDY_PLAN.held_out_videos, STUDY_PLAN.held_out_video_frames, STUDY_PLAN.height,
                         STUDY_PLAN.width, LONG_BENCHMARK_REDUCED),
    "tiny": StudySize(2, 6, 48, 80, LongBenchmark(num_videos=2, num_frames=12, height=48, width=80,
                                                  annotation_every=4)),
}


@dataclasses.dataclass(frozen=True)
class BenchmarkData:
    """Where a benchmark's ground truth is, and the eval.py arguments that run it."""

    name: str
    eval_arguments: tuple[str, ...]
    ground_truth: Path  # <video>/<frame>.png
    imageset: Optional[Path]
    sparse: bool


def write_benchmark(name: str, size: StudySize, data_root: Path) -> BenchmarkData:
    """Write (or reuse: the writers skip finished videos) one benchmark under `data_root`."""
    if name == "held_out":
        root = data_root / "held_out"
        videos = held_out_videos(size.held_out_videos, size.held_out_frames, size.height, size.width)
        split = root / DAVIS_SPLIT_FOLDER
        write_davis(split, {}, videos)
        return BenchmarkData(name, ("--dataset", "D17", "--d17_path", str(root), "--size", "-1"),
                             split / "Annotations" / "480p", split / "ImageSets" / "2017" / "val.txt", sparse=False)
    root = data_root / "long"
    write_long_benchmark(root, size.long)
    return BenchmarkData(name, ("--dataset", "LV1", "--lv_path", str(root), "--size", "-1"),
                         root / "long_video" / "Annotations", None, sparse=True)


def study_rows(patterns: Optional[Sequence[str]], benchmark: str) -> dict[str, list[str]]:
    """{ablation folder: row names} to run on `benchmark`: the rows that run with --model (no retrained checkpoint),
    filtered by `patterns` (file stems or shell patterns over both folders; `<benchmark>:<pattern>` applies to that
    benchmark only, e.g. `long:long_term_*`, since consolidation never happens in a 30-frame held-out video).

    Raises:
        ValueError: a pattern matches no row, or names an unknown benchmark.
    """
    folders = {run_ablations.ABLATION_DIR: run_ablations.select_rows(None),
               BASELINE_DIR: run_ablations.select_rows(None, BASELINE_DIR)}
    names = {folder: [row.name for row in rows if row.checkpoint is None] for folder, rows in folders.items()}
    if patterns is not None:
        every = [name for rows in names.values() for name in rows]
        chosen = []
        for pattern in patterns:
            scope, _, row_pattern = pattern.rpartition(":")
            if scope and scope not in BENCHMARKS:
                raise ValueError(f"--rows {pattern!r} names benchmark {scope!r}; benchmarks: {', '.join(BENCHMARKS)}")
            if not fnmatch.filter(every, row_pattern):
                raise ValueError(f"--rows {pattern!r} matches no study row; rows: {', '.join(every)}")
            if scope in ("", benchmark):
                chosen.append(row_pattern)
        names = {folder: [name for name in rows if any(fnmatch.fnmatchcase(name, p) for p in chosen)]
                 for folder, rows in names.items()}
    return {str(folder): rows for folder, rows in names.items() if rows}


def copy_first_mask(benchmark: BenchmarkData, output: Path) -> None:
    """Write frame 0's mask as the prediction of every ground-truth frame of every video."""
    videos = (benchmark.imageset.read_text().split() if benchmark.imageset
              else sorted(path.name for path in benchmark.ground_truth.iterdir() if path.is_dir()))
    for video in videos:
        masks = sorted((benchmark.ground_truth / video).glob("*.png"))
        first, palette = read_index_mask(masks[0])
        for mask in masks:
            if not (output / video / mask.name).is_file():
                write_index_mask(output / video / mask.name, first, palette)


def score_folder(benchmark: BenchmarkData, predictions: Path) -> tuple[ObjectScores, ...]:
    """Per-object scores of a folder of predicted masks (DAVIS mode, as eval.py scores D17 and LV1)."""
    results = evaluate_folders(benchmark.ground_truth, predictions, read_mask=read_mask_ids,
                               imageset=benchmark.imageset, mode=MODE_DAVIS, sparse=benchmark.sparse,
                               output_dir=predictions / SCORES_FOLDER, num_processes=1)
    return results.objects


# ------------------------------------------------------------------------------------------------ statistics
def per_video_sums(objects: Sequence[ObjectScores], videos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(J&F summed over each video's objects, objects per video), both (V,), in the order of `videos`."""
    index = {video: position for position, video in enumerate(videos)}
    sums, counts = np.zeros(len(videos)), np.zeros(len(videos))
    for scores in objects:
        sums[index[scores.sequence]] += (scores.j_mean + scores.f_mean) / 2
        counts[index[scores.sequence]] += 1
    return sums, counts


def bootstrap(rows: dict[str, Sequence[ObjectScores]], reference: Optional[str], num_resamples: int,
              seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, float]]:
    """J&F of each row (object-weighted, as the global score) with a percentile interval over videos resampled
    with replacement, and its difference from `reference` on the same resamples (paired).

    Args:
        rows: {row: per-object scores}; every row must cover the same videos.
        reference: the row differences are taken from (None: no differences).
        num_resamples: bootstrap resamples (the same index draws for every row).
    Returns:
        {row: {"jf", "jf_low", "jf_high", and with a reference "delta", "delta_low", "delta_high"}}, fractions.
    Raises:
        ValueError: rows cover different videos.
    """
    videos = sorted({scores.sequence for objects in rows.values() for scores in objects})
    sums = {name: per_video_sums(objects, videos) for name, objects in rows.items()}
    for name, (_, counts) in sums.items():
        if not counts.all():
            missing = [video for video, count in zip(videos, counts) if not count]
            raise ValueError(f"row {name!r} has no score for videos {missing}; rerun it (its eval.py run failed)")
    draws = np.random.default_rng(seed).integers(len(videos), size=(num_resamples, len(videos)))
    resampled = {name: total[draws].sum(axis=1) / counts[draws].sum(axis=1) for name, (total, counts) in sums.items()}
    tail = (1 - CONFIDENCE) / 2 * PERCENT
    result = {}
    for name, (total, counts) in sums.items():
        low, high = np.percentile(resampled[name], [tail, PERCENT - tail])
        result[name] = {"jf": total.sum() / counts.sum(), "jf_low": low, "jf_high": high}
        if reference is not None and reference in sums:
            reference_total, reference_counts = sums[reference]
            differences = resampled[name] - resampled[reference]
            low, high = np.percentile(differences, [tail, PERCENT - tail])
            result[name].update(delta=result[name]["jf"] - reference_total.sum() / reference_counts.sum(),
                                delta_low=low, delta_high=high)
    return result


# ---------------------------------------------------------------------------------------------------- tables
CSV_COLUMNS = ("benchmark", "row", "group", "label", "status", "jf", "jf_low", "jf_high", "delta", "delta_low",
               "delta_high", "j", "f", "fps", "peak_memory_mb", "working_elements", "long_term_elements", "videos")


def _cell(value: Any, digits: int = 1) -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_markdown(entries: Sequence[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """One table per benchmark: J&F, its interval and the difference from the full model (entries hold x 100)."""
    header = ("row", "setting", "J&F", "95% CI", "Δ vs full", "Δ 95% CI", "J", "F", "FPS", "peak MB",
              "working el.", "long-term el.", "status")
    lines = []
    for benchmark in dict.fromkeys(entry["benchmark"] for entry in entries):
        lines += [f"### {benchmark}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in (entry for entry in entries if entry["benchmark"] == benchmark):
            scaled = {key: entry[key] if isinstance(entry.get(key), float) else None
                      for key in ("jf", "jf_low", "jf_high", "delta", "delta_low", "delta_high")}
            interval = (f"{scaled['jf_low']:.1f}–{scaled['jf_high']:.1f}" if scaled["jf_low"] is not None else "–")
            delta_interval = (f"{scaled['delta_low']:+.1f} to {scaled['delta_high']:+.1f}"
                              if scaled["delta_low"] is not None else "–")
            delta = f"{scaled['delta']:+.1f}" if scaled["delta"] is not None else "–"
            cells = (entry["row"], entry["label"], _cell(scaled["jf"]), interval, delta, delta_interval,
                     _cell(entry.get("j")), _cell(entry.get("f")), _cell(entry.get("fps"), 2),
                     _cell(entry.get("peak_memory_mb")), _cell(entry.get("working_elements")),
                     _cell(entry.get("long_term_elements")), str(entry["status"]).replace("|", "/"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += list(notes)
    return "\n".join(lines) + "\n"


def write_plot(entries: Sequence[dict[str, Any]], path: Path) -> Optional[Path]:
    """J&F with 95% intervals, one panel per benchmark; None (nothing written) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    benchmarks = list(dict.fromkeys(entry["benchmark"] for entry in entries))
    rows = max(sum(1 for entry in entries if entry["benchmark"] == name) for name in benchmarks)
    figure, axes = plt.subplots(1, len(benchmarks), figsize=(6 * len(benchmarks), 0.3 * rows + 1.5), squeeze=False)
    for axis, benchmark in zip(axes[0], benchmarks):
        scored = [entry for entry in entries if entry["benchmark"] == benchmark and isinstance(entry["jf"], float)]
        positions = np.arange(len(scored))
        values = np.array([entry["jf"] for entry in scored])
        errors = np.array([[entry["jf"] - entry["jf_low"], entry["jf_high"] - entry["jf"]]
                           for entry in scored]).T.reshape(2, -1)
        axis.errorbar(values, positions, xerr=errors, fmt="o", capsize=3)
        axis.set_yticks(positions, [entry["row"] for entry in scored], fontsize=7)
        axis.invert_yaxis()
        axis.set_xlabel("J&F x 100 (95% bootstrap interval over videos)")
        axis.set_title(benchmark)
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_tables(entries: Sequence[dict[str, Any]], out: Path, notes: Sequence[str]) -> tuple[Path, Path]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(entries)
    csv_path, markdown_path = out / f"{TABLE_FILE}.csv", out / f"{TABLE_FILE}.md"
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(markdown_path, format_markdown(entries, notes))
    return csv_path, markdown_path


# ------------------------------------------------------------------------------------------------------ main
def run_benchmark(benchmark: BenchmarkData, rows: dict[str, list[str]], model: Path, out: Path,
                  forwarded: Sequence[str], num_resamples: int
                  ) -> tuple[list[dict[str, Any]], dict[str, Any], list[ComparisonRow]]:
    """Run the rows on one benchmark (run_ablations.py), score them and bootstrap. Returns (table entries, the
    per-object scores by row, the rows of the comparison page: J&F per video and each row's run page)."""
    ablation_entries = []
    for folder, names in rows.items():
        result = run_ablations.main(["--model", str(model), "--rows", *names, "--ablation_dir", folder,
                                     "--output", str(out / benchmark.name / Path(folder).name),
                                     "--config", STUDY_PRESET, *benchmark.eval_arguments, *forwarded])
        for entry in result["entries"]:
            source = entry["same_as"] or entry["row"]
            ablation_entries.append((entry, out / benchmark.name / Path(folder).name / source))
    copy_output = out / benchmark.name / COPY_FIRST_MASK
    copy_first_mask(benchmark, copy_output)
    copy_entry = {"row": COPY_FIRST_MASK, "group": "Calibration", "label": "copy the first-frame mask",
                  "status": "done"}
    scores = {COPY_FIRST_MASK: score_folder(benchmark, copy_output)}
    pages = {COPY_FIRST_MASK: None}
    for entry, folder in ablation_entries:
        if entry["status"].startswith("done"):
            scores[entry["row"]] = score_folder(benchmark, folder)
            pages[entry["row"]] = folder / PAGE_FILE
    statistics = bootstrap(scores, FULL_MODEL_ROW, num_resamples)
    entries = []
    for entry in [copy_entry] + [entry for entry, _ in ablation_entries]:
        merged = {key: value for key, value in entry.items() if key in CSV_COLUMNS}
        merged.update({"benchmark": benchmark.name, "jf": ""})
        merged.update({key: PERCENT * float(value) for key, value in statistics.get(entry["row"], {}).items()})
        if entry["row"] in scores:
            objects = scores[entry["row"]]
            merged.update(j=PERCENT * float(np.mean([s.j_mean for s in objects])),
                          f=PERCENT * float(np.mean([s.f_mean for s in objects])),
                          videos=len({s.sequence for s in objects}))
        entries.append(merged)
    comparison = [ComparisonRow(row, pages[row], video_jf(objects)) for row, objects in scores.items()]
    return entries, scores, comparison


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the study; returns {'entries', 'markdown', 'csv', 'plot', 'notes', 'page'}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the study network (a snapshot with its sidecar)")
    parser.add_argument("--out", type=Path, default=Path("../output/study"), help="data, row outputs, tables")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="row names or shell patterns, optionally scoped to one benchmark (long:long_term_*) "
                             "(default: every row that needs no retraining, on both benchmarks)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="benchmark sizes: full (the study) or tiny (a pipeline check)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples")
    args, forwarded = parser.parse_known_args(argv)
    if not args.model.is_file():
        parser.error(f"--model {args.model} is not a file; train the study network first (scripts/study_prepare.py)")
    if args.bootstrap < 1:
        parser.error(f"--bootstrap {args.bootstrap} is invalid; expected a positive number of resamples")
    rows = {name: study_rows(args.rows, name) for name in args.benchmarks}
    size, out = SIZES[args.size], args.out.resolve()
    entries, notes, comparison = [], [], {}
    for name in args.benchmarks:
        benchmark = write_benchmark(name, size, out / "data")
        benchmark_entries, scores, comparison[name] = run_benchmark(benchmark, rows[name], args.model.resolve(), out,
                                                                    forwarded, args.bootstrap)
        entries += benchmark_entries
        if name == "held_out" and args.size != "tiny" and FULL_MODEL_ROW in scores:
            quickstart_videos = {f"synth{index:04d}" for index in range(QUICKSTART_HELD_OUT_VIDEOS)}
            objects = [s for s in scores[FULL_MODEL_ROW] if s.sequence in quickstart_videos]
            jf = PERCENT * float(np.mean([(s.j_mean + s.f_mean) / 2 for s in objects]))
            notes.append(f"Full model on the quickstart's {QUICKSTART_HELD_OUT_VIDEOS} held-out videos: {jf:.1f} J&F.")
        write_tables(entries, out, notes)
    notes.append(f"J&F x 100; intervals: {CONFIDENCE:.0%} percentile bootstrap over videos ({args.bootstrap} "
                 f"resamples, paired across rows); Δ: difference from {FULL_MODEL_ROW}.")
    csv_path, markdown_path = write_tables(entries, out, notes)
    plot = write_plot(entries, out / f"{TABLE_FILE}.png")
    page = write_page_or_warn(lambda: write_comparison_page(
        out / f"{TABLE_FILE}.html", title="Ablations in miniature", markdown=format_markdown(entries, notes),
        plots=[] if plot is None else [plot], sections=comparison))
    print(format_markdown(entries, notes))
    return {"entries": entries, "markdown": markdown_path, "csv": csv_path, "plot": plot, "notes": notes,
            "page": page}


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
