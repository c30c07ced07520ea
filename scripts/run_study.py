"""The paper's ablations in miniature: every ablation row that needs no retraining, run with one or several trained
networks on two synthetic benchmarks, with bootstrap intervals.

    python scripts/run_study.py --model /work/study_runs/saves/study/study_s03_1100.pth --out ../output/study
    python scripts/run_study.py --model seed1.pth seed2.pth seed3.pth --no_sensory_model no_sensory.pth \
        --sweep --out ../output/study

Benchmarks (written under <out>/data/ on first use; deterministic by seed):
- `held_out`: STUDY_PLAN.held_out_videos DAVIS-style videos of the quickstart's held-out kind (scripts/
  study_prepare.py; the first 8 are the quickstart's own held-out videos), every frame annotated, eval.py D17;
- `long`: the long benchmark of dataset/synthetic_long.py (LONG_BENCHMARK: 5 videos x 2000 frames, objects away
  for hundreds of frames, sparse ground truth, every absence recorded), eval.py LV1.
Memory budgets: the paper's ratios at each benchmark's frame size and length (inference/miniature.py: T_max, T_min,
r as the paper, P keeping 1.6 % of each consolidation's candidates, LT_max full from a quarter of the video on),
printed above each table; `--memory_budgets paper` uses the paper's numbers as they are.
Rows: every row of configs/ablations/ that runs with --model (rows naming a retrained checkpoint are left out),
plus configs/study_baselines/ (first frame only, the bounded working-memory baselines, the positive controls),
each run by scripts/run_ablations.py (one eval.py process per row; finished rows are reused, interrupted ones
resume), and copy-the-first-frame-mask, scored here. Generated rows (written under <out>/<benchmark>/):
- `--sweep` (long benchmark): the selection sweep, P at `--sweep_shares` of each consolidation's candidates x
  {usage, random (`--sweep_seeds` seeds)} x {potentiation on, off}; its table gives the usage - random gap and the
  potentiation gap against the share kept (and <out>/study_sweep.png);
- `--no_sensory_model`: the paper's store rows that need a network trained without sensory memory
  (configs/study_no_sensory.yaml), run with that checkpoint beside the main network's rows.

Every row's masks are scored per object (inference/metrics.py, DAVIS mode) and the videos are resampled with
replacement (`--bootstrap` times, the same resamples for every row): each row gets a 95% interval for its J&F and
for its difference from the full model (`stores_all`), so a difference whose interval excludes 0 is more than the
luck of which videos were drawn. The long table adds the re-entry J&F (inference/reentry.py: the ground-truth
frames within REENTRY_WINDOW_FRAMES after an object comes back from an absence of at least
REENTRY_MIN_ABSENCE_FRAMES), with its interval, and the share of the look-alikes labelled as an object while it is
away. Memory columns are the stores' own (largest live elements and KiB of working and long-term memory).
With several --model networks (training seeds) every row is reported per network, and a verdicts table pools them:
a difference is "reproduced" only if its sign holds for every network and its pooled interval (the same video
resamples for every network, differences averaged over networks) excludes zero.
Output: <out>/study.md and .csv (the tables), <out>/study.png (J&F with intervals, if matplotlib is installed),
and run_ablations.py's own tables under <out>/[<network>/]<benchmark>/.

Cost (XMem at 96x160, one thread, measured): one row takes about 2.5-4 min (held_out, 900 frames), 12 min (long
at --size reduced, 3,200 frames) or 45 min (long at --size full, 10,000 frames); the 22 distinct runs of the
default rows take about 18 hours at full size. `--rows` (optionally per benchmark) and `--benchmarks` restrict it.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import io
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from configs.common import atomic_write_text, run_cli
from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from dataset.synthetic_layouts import write_davis
from dataset.synthetic import Timing
from dataset.synthetic_long import (LONG_BENCHMARK, LONG_BENCHMARK_REDUCED, LONG_TIMING, LongBenchmark,
                                    long_benchmark, lookalike_pixels, read_absences, write_long_benchmark)
from inference.folder_evaluation import evaluate_folders
from inference.metrics import MODE_DAVIS, ObjectScores
from inference.miniature import (PAPER_KEPT_SHARE, MiniatureSettings, feature_elements,
                                 miniature_memory_settings)
from inference.reentry import (DEFAULT_MIN_ABSENCE_FRAMES, DEFAULT_WINDOW_FRAMES, Absence, ReentryScores,
                               score_reentry)
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
KIB = 1024
TABLE_FILE = "study"  # <out>/study.md, .csv, .png
SWEEP_PLOT_FILE = "study_sweep.png"
SCORES_FOLDER = "study_scores"  # per-object tables written beside each row's masks
MEMORY_BUDGETS = ("miniature", "paper")
# The selection sweep: shares of each consolidation's candidates kept as prototypes (the paper keeps 1.6 %; the
# paper's P = 128 at 96x160 keeps 43 %), random selection with this many seeds.
DEFAULT_SWEEP_SHARES = (0.01, 0.03, 0.10, 0.43)
DEFAULT_SWEEP_SEEDS = 3
SWEEP_GROUP = "Selection sweep"
SWEEP_FOLDER = "sweep_rows"  # generated row files, under <out>/[<network>/]<benchmark>/
NO_SENSORY_FOLDER = "no_sensory_rows"
# The paper's store rows that need a network trained without sensory memory (configs/study_no_sensory.yaml).
NO_SENSORY_ROWS = ("stores_working_long_term", "stores_working_only", "stores_long_term_only")
REENTRY_WINDOW_FRAMES = DEFAULT_WINDOW_FRAMES
REENTRY_MIN_ABSENCE_FRAMES = DEFAULT_MIN_ABSENCE_FRAMES


@dataclasses.dataclass(frozen=True)
class StudySize:
    """The benchmarks' sizes: `full` is the study as designed, `reduced` what fits a few hours of two cores (the
    long benchmark as 8 x 400 frames), `tiny` checks the pipeline in a minute (its long videos are just long enough
    for one consolidation, at frame 45, and their objects leave and come back)."""

    held_out_videos: int
    held_out_frames: int
    height: int
    width: int
    long: LongBenchmark


# The tiny long videos: objects leave after 6-18 frames and come back about 20 frames later.
TINY_TIMING = Timing(exit_period_frames=40, exit_ramp_fraction=LONG_TIMING.exit_ramp_fraction,
                     exit_hold_fraction=LONG_TIMING.exit_hold_fraction, appearance_period_frames=(20.0, 60.0))
SIZES = {
    "full": StudySize(STUDY_PLAN.held_out_videos, STUDY_PLAN.held_out_video_frames, STUDY_PLAN.height,
                      STUDY_PLAN.width, LONG_BENCHMARK),
    "reduced": StudySize(STUDY_PLAN.held_out_videos, STUDY_PLAN.held_out_video_frames, STUDY_PLAN.height,
                         STUDY_PLAN.width, LONG_BENCHMARK_REDUCED),
    "tiny": StudySize(2, 6, 48, 80, LongBenchmark(num_videos=2, num_frames=48, height=32, width=48,
                                                  annotation_every=5, timing=TINY_TIMING)),
}


@dataclasses.dataclass(frozen=True)
class BenchmarkData:
    """Where a benchmark's ground truth is, the eval.py arguments that run it, and its frame size and length."""

    name: str
    eval_arguments: tuple[str, ...]
    ground_truth: Path  # <video>/<frame>.png
    imageset: Optional[Path]
    sparse: bool
    height: int
    width: int
    num_frames: int
    long_size: Optional[LongBenchmark] = None  # the long benchmark's generator settings (re-entry truth)
    root: Optional[Path] = None  # the long benchmark's --lv_path

    def memory_settings(self, budgets: str = "miniature") -> Optional[MiniatureSettings]:
        """The benchmark's memory budgets (inference/miniature.py), or None for the paper's numbers as they are."""
        if budgets == "paper":
            return None
        return miniature_memory_settings(feature_elements(self.height, self.width), self.num_frames)


def write_benchmark(name: str, size: StudySize, data_root: Path) -> BenchmarkData:
    """Write (or reuse: the writers skip finished videos) one benchmark under `data_root`."""
    if name == "held_out":
        root = data_root / "held_out"
        videos = held_out_videos(size.held_out_videos, size.held_out_frames, size.height, size.width)
        split = root / DAVIS_SPLIT_FOLDER
        write_davis(split, {}, videos)
        return BenchmarkData(name, ("--dataset", "D17", "--d17_path", str(root), "--size", "-1"),
                             split / "Annotations" / "480p", split / "ImageSets" / "2017" / "val.txt", sparse=False,
                             height=size.height, width=size.width, num_frames=size.held_out_frames)
    root = data_root / "long"
    write_long_benchmark(root, size.long)
    return BenchmarkData(name, ("--dataset", "LV1", "--lv_path", str(root), "--size", "-1"),
                         root / "long_video" / "Annotations", None, sparse=True, height=size.long.height,
                         width=size.long.width, num_frames=size.long.num_frames, long_size=size.long, root=root)


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


# ------------------------------------------------------------------------------------------- generated rows
@dataclasses.dataclass(frozen=True)
class GeneratedRow:
    """A row written as a config file for run_ablations.py: its name, `# group: label` title and inference fields."""

    name: str
    group: str
    label: str
    inference: dict[str, Any]

    def write(self, folder: Path) -> None:
        text = f"# {self.group}: {self.label}\n" + yaml.safe_dump({"inference": self.inference}, sort_keys=True)
        path = folder / f"{self.name}.yaml"
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """The sweep's rows at one share kept: {(selection, potentiation): row names} (random: one row per seed)."""

    share: float
    num_prototypes: int
    rows: dict[tuple[str, bool], tuple[str, ...]]


def sweep_rows(shares: Sequence[float], num_seeds: int, elements_per_frame: int,
               num_frames: int) -> tuple[list[GeneratedRow], list[SweepPoint]]:
    """The selection sweep's rows: at each share kept, P (and LT_max = the same number of consolidations' worth,
    so that long-term memory fills at the same frame) from inference/miniature.py, x {usage, random with seeds
    0..num_seeds-1} x {potentiation on, off}.

    Raises:
        ValueError: a share outside (0, 1], or fewer than one seed.
    """
    if num_seeds < 1:
        raise ValueError(f"--sweep_seeds {num_seeds} is invalid; expected ≥ 1 random seed")
    rows, points = [], []
    for share in shares:
        settings = miniature_memory_settings(elements_per_frame, num_frames, kept_share=share)
        budget = dict(num_prototypes=settings.num_prototypes, max_long_term_elements=settings.max_long_term_elements)
        tag = f"keep{share * PERCENT:g}".replace(".", "p")
        point_rows: dict[tuple[str, bool], tuple[str, ...]] = {}
        for potentiation in (True, False):
            suffix = "potentiation" if potentiation else "no_potentiation"
            variants = [("usage", f"{tag}_usage_{suffix}", {})] + [
                ("random", f"{tag}_random_seed{seed}_{suffix}", dict(seed=seed)) for seed in range(num_seeds)]
            for selection, name, extra in variants:
                seed = f" seed {extra['seed']}" if extra else ""
                label = (f"P = {settings.num_prototypes} ({settings.kept_share:.1%} kept), {selection}{seed}, "
                         f"potentiation {'on' if potentiation else 'off'}")
                rows.append(GeneratedRow(f"sweep_{name}", SWEEP_GROUP, label, dict(
                    budget, prototype_selection=selection, use_potentiation=potentiation, **extra)))
                point_rows[(selection, potentiation)] = point_rows.get((selection, potentiation), ()) + (
                    f"sweep_{name}",)
        points.append(SweepPoint(settings.kept_share, settings.num_prototypes, point_rows))
    return rows, points


def no_sensory_rows() -> list[GeneratedRow]:
    """The paper's store rows for a network without sensory memory, with their own inference settings (their
    files name a released checkpoint; here they run --no_sensory_model)."""
    rows = []
    for row in run_ablations.select_rows(list(NO_SENSORY_ROWS)):
        inference = {key.split(".", 1)[1].split("=", 1)[0]: yaml.safe_load(key.split("=", 1)[1])
                     for key in row.overrides if key.startswith("inference.")}
        rows.append(GeneratedRow(row.name, row.group, f"{row.label} (retrained without sensory memory)", inference))
    return rows


def copy_first_mask(benchmark: BenchmarkData, output: Path) -> None:
    """Write frame 0's mask as the prediction of every ground-truth frame of every video."""
    for video in _videos(benchmark):
        masks = sorted((benchmark.ground_truth / video).glob("*.png"))
        first, palette = read_index_mask(masks[0])
        for mask in masks:
            if not (output / video / mask.name).is_file():
                write_index_mask(output / video / mask.name, first, palette)


def _videos(benchmark: BenchmarkData) -> list[str]:
    return (benchmark.imageset.read_text().split() if benchmark.imageset
            else sorted(path.name for path in benchmark.ground_truth.iterdir() if path.is_dir()))


def score_folder(benchmark: BenchmarkData, predictions: Path) -> tuple[ObjectScores, ...]:
    """Per-object scores of a folder of predicted masks (DAVIS mode, as eval.py scores D17 and LV1)."""
    results = evaluate_folders(benchmark.ground_truth, predictions, read_mask=read_mask_ids,
                               imageset=benchmark.imageset, mode=MODE_DAVIS, sparse=benchmark.sparse,
                               output_dir=predictions / SCORES_FOLDER, num_processes=1)
    return results.objects


# ------------------------------------------------------------------------------------------------ re-entry
@dataclasses.dataclass(frozen=True)
class ReentryTruth:
    """One long video's ground truth on its annotated frames, its absences and its look-alike pixels."""

    ground_truth: dict[int, np.ndarray]
    absences: list[Absence]
    lookalikes: dict[int, np.ndarray]


def reentry_truth(benchmark: BenchmarkData) -> dict[str, ReentryTruth]:
    """{video: ReentryTruth} of the long benchmark (absences from its absences file, look-alikes from the
    generator)."""
    absences = read_absences(benchmark.root)
    specs = long_benchmark(benchmark.long_size)
    truth = {}
    for video in _videos(benchmark):
        ground_truth = {int(path.stem): read_mask_ids(path) for path in sorted((benchmark.ground_truth / video).glob(
            "*.png"))}
        spans = [Absence(object_id, gone, back) for object_id, object_spans in absences[video].items()
                 for gone, back in object_spans]
        truth[video] = ReentryTruth(ground_truth, spans, {frame: lookalike_pixels(specs[video], frame)
                                                          for frame in ground_truth})
    return truth


def score_reentry_folder(truth: dict[str, ReentryTruth], predictions: Path) -> list[ReentryScores]:
    """Re-entry scores of every video of a folder of predicted masks (frame 0, the input, is not scored)."""
    scores = []
    for video, video_truth in truth.items():
        predicted = {frame: read_mask_ids(predictions / video / f"{frame:05d}.png")
                     for frame in video_truth.ground_truth if frame > 0
                     and (predictions / video / f"{frame:05d}.png").is_file()}
        scores.append(score_reentry(video, video_truth.ground_truth, predicted, video_truth.absences,
                                    window_frames=REENTRY_WINDOW_FRAMES,
                                    min_absence_frames=REENTRY_MIN_ABSENCE_FRAMES, lookalikes=video_truth.lookalikes))
    return scores


# ------------------------------------------------------------------------------------------------ statistics
def per_video_sums(objects: Sequence[ObjectScores], videos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(J&F summed over each video's objects, objects per video), both (V,), in the order of `videos`."""
    index = {video: position for position, video in enumerate(videos)}
    sums, counts = np.zeros(len(videos)), np.zeros(len(videos))
    for scores in objects:
        sums[index[scores.sequence]] += (scores.j_mean + scores.f_mean) / 2
        counts[index[scores.sequence]] += 1
    return sums, counts


def resample_draws(num_videos: int, num_resamples: int, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """num_resamples×V video indices drawn with replacement (the same draws for every row and network)."""
    return np.random.default_rng(seed).integers(num_videos, size=(num_resamples, num_videos))


def resampled_means(sums: np.ndarray, counts: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The count-weighted mean on each resample (R,); NaN where a resample has nothing to count."""
    totals, numbers = sums[draws].sum(axis=1), counts[draws].sum(axis=1)
    return np.divide(totals, numbers, out=np.full(totals.shape, np.nan), where=numbers > 0)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - CONFIDENCE) / 2 * PERCENT
    low, high = np.nanpercentile(values, [tail, PERCENT - tail])
    return float(low), float(high)


def bootstrap_sums(rows: dict[str, tuple[np.ndarray, np.ndarray]], reference: Optional[str],
                   draws: np.ndarray) -> dict[str, dict[str, float]]:
    """Each row's mean (sums / counts over videos) with a percentile interval over the resamples `draws`, and its
    paired difference from `reference` on the same resamples.

    Args:
        rows: {row: (per-video sums (V,), per-video counts (V,))}, videos in one order for every row.
        reference: the row differences are taken from (None or absent: no differences).
        draws: resample_draws(V, R).
    Returns:
        {row: {"jf", "jf_low", "jf_high", and with a reference "delta", "delta_low", "delta_high"}}, fractions.
    """
    resampled = {name: resampled_means(total, counts, draws) for name, (total, counts) in rows.items()}
    result = {}
    for name, (total, counts) in rows.items():
        mean = float(total.sum() / counts.sum()) if counts.sum() > 0 else math.nan
        low, high = _interval(resampled[name]) if counts.sum() > 0 else (math.nan, math.nan)
        result[name] = {"jf": mean, "jf_low": low, "jf_high": high}
        if reference is not None and reference in rows and counts.sum() > 0 and rows[reference][1].sum() > 0:
            reference_total, reference_counts = rows[reference]
            low, high = _interval(resampled[name] - resampled[reference])
            result[name].update(delta=mean - float(reference_total.sum() / reference_counts.sum()), delta_low=low,
                                delta_high=high)
    return result


def _row_sums(rows: dict[str, Sequence[ObjectScores]]) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The videos (sorted) and each row's per-video J&F sums and object counts.

    Raises:
        ValueError: a row has no score for some video.
    """
    videos = sorted({scores.sequence for objects in rows.values() for scores in objects})
    sums = {name: per_video_sums(objects, videos) for name, objects in rows.items()}
    for name, (_, counts) in sums.items():
        if not counts.all():
            missing = [video for video, count in zip(videos, counts) if not count]
            raise ValueError(f"row {name!r} has no score for videos {missing}; rerun it (its eval.py run failed)")
    return videos, sums


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
    videos, sums = _row_sums(rows)
    return bootstrap_sums(sums, reference, resample_draws(len(videos), num_resamples, seed))


def _reentry_sums(scores: Sequence[ReentryScores], videos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    by_video = {score.video: score for score in scores}
    return (np.array([by_video[video].jf_sum for video in videos]),
            np.array([by_video[video].reentry_frames for video in videos], dtype=float))


def pooled_verdicts(per_network: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]], reference: str,
                    num_resamples: int) -> dict[str, dict[str, Any]]:
    """Differences from `reference` pooled over networks (training seeds), with the study's rule.

    Each network's difference is taken on the same video resamples; the pooled difference is their mean over
    networks. A row's difference is "reproduced" only if its sign is the same for every network and the pooled
    interval excludes zero.

    Args:
        per_network: per network, {row: (per-video sums, per-video counts)} over the same videos.
    Returns:
        {row: {"deltas": [per-network difference], "delta", "delta_low", "delta_high", "verdict"}} for the rows every
        network has (reference excluded), fractions.
    """
    num_videos = len(next(iter(per_network[0].values()))[0])
    draws = resample_draws(num_videos, num_resamples)
    common = [name for name in per_network[0] if name != reference and all(name in rows for rows in per_network)]
    verdicts = {}
    for name in common:
        deltas, resampled = [], []
        for rows in per_network:
            (total, counts), (reference_total, reference_counts) = rows[name], rows[reference]
            deltas.append(float(total.sum() / counts.sum() - reference_total.sum() / reference_counts.sum()))
            resampled.append(resampled_means(total, counts, draws)
                             - resampled_means(reference_total, reference_counts, draws))
        low, high = _interval(np.mean(resampled, axis=0))
        signs = set(np.sign(deltas))
        if len(signs) > 1 or 0 in signs:
            verdict = "not reproduced: the sign differs between networks"
        elif low <= 0 <= high:
            verdict = "not reproduced: the pooled interval includes 0"
        else:
            verdict = f"reproduced: {'higher' if deltas[0] > 0 else 'lower'} than {reference} on every network"
        verdicts[name] = {"deltas": deltas, "delta": float(np.mean(deltas)), "delta_low": low, "delta_high": high,
                          "verdict": verdict}
    return verdicts


def sweep_gaps(points: Sequence[SweepPoint], sums: dict[str, tuple[np.ndarray, np.ndarray]],
               draws: np.ndarray) -> list[dict[str, float]]:
    """At each share kept: usage − random (potentiation on; random averaged over its seeds) and potentiation on −
    off (usage selection), each with a paired bootstrap interval; fractions. Points with a missing row are left
    out."""
    gaps = []
    for point in points:
        names = [name for group in point.rows.values() for name in group]
        if not all(name in sums for name in names):
            continue

        def averaged(key: tuple[str, bool]) -> tuple[np.ndarray, np.ndarray]:
            group = [sums[name] for name in point.rows[key]]
            return np.mean([total for total, _ in group], axis=0), group[0][1]

        pseudo = {"usage": averaged(("usage", True)), "random": averaged(("random", True)),
                  "usage_off": averaged(("usage", False)), "random_off": averaged(("random", False))}
        selection = bootstrap_sums({"usage": pseudo["usage"], "random": pseudo["random"]}, "random", draws)
        potentiation = bootstrap_sums({"on": pseudo["usage"], "off": pseudo["usage_off"]}, "off", draws)
        gaps.append({"share": point.share, "num_prototypes": point.num_prototypes,
                     "usage": selection["usage"]["jf"], "random": selection["random"]["jf"],
                     "usage_off": potentiation["off"]["jf"],
                     "selection_gap": selection["usage"]["delta"], "selection_low": selection["usage"]["delta_low"],
                     "selection_high": selection["usage"]["delta_high"],
                     "potentiation_gap": potentiation["on"]["delta"],
                     "potentiation_low": potentiation["on"]["delta_low"],
                     "potentiation_high": potentiation["on"]["delta_high"]})
    return gaps


# ---------------------------------------------------------------------------------------------------- tables
CSV_COLUMNS = ("network", "benchmark", "row", "group", "label", "status", "jf", "jf_low", "jf_high", "delta",
               "delta_low", "delta_high", "j", "f", "fps", "peak_memory_mb", "working_elements",
               "long_term_elements", *run_ablations.STORE_PEAK_KEYS, "reentry_jf", "reentry_jf_low",
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


# ------------------------------------------------------------------------------------------------------ main
@dataclasses.dataclass(frozen=True)
class RowSource:
    """Rows run_ablations.py runs from one folder of row files with one checkpoint, into <root>/<output_name>/."""

    folder: Path
    names: tuple[str, ...]
    model: Path
    output_name: str


@dataclasses.dataclass
class BenchmarkResult:
    """One network's rows on one benchmark: table entries, per-video J&F sums (and re-entry sums) by row."""

    entries: list[dict[str, Any]]
    sums: dict[str, tuple[np.ndarray, np.ndarray]]
    videos: list[str]
    scores: dict[str, Sequence[ObjectScores]]


def run_benchmark(benchmark: BenchmarkData, sources: Sequence[RowSource], root: Path, forwarded: Sequence[str],
                  num_resamples: int, truth: Optional[dict[str, ReentryTruth]] = None) -> BenchmarkResult:
    """Run the rows on one benchmark (run_ablations.py), score them (and their re-entries, with `truth`) and
    bootstrap."""
    ablation_entries = []
    for source in sources:
        output = root / benchmark.name / source.output_name
        result = run_ablations.main(["--model", str(source.model), "--rows", *source.names, "--ablation_dir",
                                     str(source.folder), "--output", str(output), "--config", STUDY_PRESET,
                                     *benchmark.eval_arguments, *forwarded])
        for entry in result["entries"]:
            ablation_entries.append((entry, output / (entry["same_as"] or entry["row"])))
    copy_output = root / benchmark.name / COPY_FIRST_MASK
    copy_first_mask(benchmark, copy_output)
    copy_entry = {"row": COPY_FIRST_MASK, "group": "Calibration", "label": "copy the first-frame mask",
                  "status": "done"}
    folders = {COPY_FIRST_MASK: copy_output}
    folders.update({entry["row"]: folder for entry, folder in ablation_entries if entry["status"].startswith("done")})
    scores = {name: score_folder(benchmark, folder) for name, folder in folders.items()}
    videos, sums = _row_sums(scores)
    draws = resample_draws(len(videos), num_resamples)
    statistics = bootstrap_sums(sums, FULL_MODEL_ROW, draws)
    reentry_statistics, reentry = {}, {}
    if truth is not None:
        reentry = {name: score_reentry_folder(truth, folder) for name, folder in folders.items()}
        reentry_statistics = bootstrap_sums({name: _reentry_sums(rows, videos) for name, rows in reentry.items()},
                                            FULL_MODEL_ROW, draws)
    entries = []
    for entry in [copy_entry] + [entry for entry, _ in ablation_entries]:
        merged = {key: value for key, value in entry.items() if key in CSV_COLUMNS}
        merged.update({"benchmark": benchmark.name, "jf": ""})
        merged.update({key: PERCENT * float(value) for key, value in statistics.get(entry["row"], {}).items()})
        merged.update({REENTRY_KEYS[key]: PERCENT * float(value)
                       for key, value in reentry_statistics.get(entry["row"], {}).items()})
        if entry["row"] in reentry:
            rows = reentry[entry["row"]]
            away = sum(score.away_frames for score in rows)
            lookalike = sum(score.lookalike_frames for score in rows)
            merged.update(returns=sum(score.returns for score in rows),
                          away_fp_area=PERCENT * sum(s.away_area_sum for s in rows) / away if away else "",
                          away_fp_lookalike=(PERCENT * sum(s.lookalike_fp_sum for s in rows) / lookalike
                                             if lookalike else ""))
        if entry["row"] in scores:
            objects = scores[entry["row"]]
            merged.update(j=PERCENT * float(np.mean([s.j_mean for s in objects])),
                          f=PERCENT * float(np.mean([s.f_mean for s in objects])),
                          videos=len({s.sequence for s in objects}))
        entries.append(merged)
    return BenchmarkResult(entries, sums, videos, scores)


def _row_sources(benchmark: BenchmarkData, rows: dict[str, list[str]], model: Path, root: Path,
                 args: argparse.Namespace) -> tuple[list[RowSource], list[SweepPoint]]:
    """The row folders to run for one network on one benchmark, writing the generated rows' files."""
    sources = [RowSource(Path(folder), tuple(names), model, Path(folder).name) for folder, names in rows.items()]
    points: list[SweepPoint] = []
    generated: list[tuple[str, list[GeneratedRow], Path]] = []
    if args.sweep and benchmark.name == "long":
        sweep, points = sweep_rows(args.sweep_shares, args.sweep_seeds, feature_elements(benchmark.height,
                                                                                         benchmark.width),
                                   benchmark.num_frames)
        generated.append(("sweep", sweep, model))
    if args.no_sensory_model is not None:
        generated.append(("no_sensory", no_sensory_rows(), args.no_sensory_model.resolve()))
    for name, row_list, checkpoint in generated:
        folder = root / benchmark.name / "rows" / name
        folder.mkdir(parents=True, exist_ok=True)
        for row in row_list:
            row.write(folder)
        sources.append(RowSource(folder, tuple(row.name for row in row_list), checkpoint, name))
    return sources, points


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run the study; returns {'entries', 'markdown', 'csv', 'plot', 'sweep_plot', 'sweeps', 'verdicts', 'notes'}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, nargs="+", required=True,
                        help="the study network, or several (training seeds), each a snapshot with its sidecar")
    parser.add_argument("--no_sensory_model", type=Path, default=None,
                        help="a study network trained without sensory memory (configs/study_no_sensory.yaml): "
                             f"adds the rows {', '.join(NO_SENSORY_ROWS)}")
    parser.add_argument("--out", type=Path, default=Path("../output/study"), help="data, row outputs, tables")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--rows", nargs="+", default=None, metavar="ROW",
                        help="row names or shell patterns, optionally scoped to one benchmark (long:long_term_*) "
                             "(default: every row that needs no retraining, on both benchmarks)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="benchmark sizes: full (the study), reduced or tiny (a pipeline check)")
    parser.add_argument("--memory_budgets", choices=MEMORY_BUDGETS, default="miniature",
                        help="miniature: the paper's ratios at each benchmark's frame size and length "
                             "(inference/miniature.py); paper: the paper's numbers as they are")
    parser.add_argument("--sweep", action="store_true", help="add the selection sweep's rows (long benchmark)")
    parser.add_argument("--sweep_shares", type=float, nargs="+", default=list(DEFAULT_SWEEP_SHARES),
                        help="shares of each consolidation's candidates kept as prototypes")
    parser.add_argument("--sweep_seeds", type=int, default=DEFAULT_SWEEP_SEEDS, help="random-selection seeds")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="bootstrap resamples")
    args, forwarded = parser.parse_known_args(argv)
    for model in [*args.model, *([args.no_sensory_model] if args.no_sensory_model else [])]:
        if not model.is_file():
            parser.error(f"--model {model} is not a file; train the study network first (scripts/study_prepare.py)")
    if args.bootstrap < 1:
        parser.error(f"--bootstrap {args.bootstrap} is invalid; expected a positive number of resamples")
    if args.sweep_seeds < 1 or not all(0 < share <= 1 for share in args.sweep_shares):
        parser.error(f"--sweep_shares {args.sweep_shares} / --sweep_seeds {args.sweep_seeds}: expected shares in "
                     "(0, 1] and ≥ 1 seed")
    rows = {name: study_rows(args.rows, name) for name in args.benchmarks}
    size, out = SIZES[args.size], args.out.resolve()
    networks = [""] if len(args.model) == 1 else [f"network {index + 1}" for index in range(len(args.model))]
    entries, notes, headers, sections = [], [], {}, []
    sweeps: dict[str, list[dict[str, float]]] = {}
    verdicts: dict[str, dict[str, dict[str, Any]]] = {}
    for name in args.benchmarks:
        benchmark = write_benchmark(name, size, out / "data")
        settings = benchmark.memory_settings(args.memory_budgets)
        headers[name] = (settings.describe() if settings is not None
                         else "memory settings: the paper's (T_max 10, T_min 5, r 5, P 128, LT_max 10000)")
        budget_overrides = settings.overrides() if settings is not None else []
        truth = reentry_truth(benchmark) if name == "long" else None
        per_network = []
        for network, model in zip(networks, args.model):
            root = out / network.replace(" ", "") if network else out
            sources, points = _row_sources(benchmark, rows[name], model.resolve(), root, args)
            result = run_benchmark(benchmark, sources, root, [*budget_overrides, *forwarded], args.bootstrap, truth)
            for entry in result.entries:
                entry["network"] = network
            entries += result.entries
            per_network.append(result.sums)
            if points:
                gaps = sweep_gaps(points, result.sums, resample_draws(len(result.videos), args.bootstrap))
                sweeps[network] = gaps
                sections.append(format_sweep(gaps, f"selection sweep: {name}" + (f" ({network})" if network else ""),
                                             args.sweep_seeds))
            if name == "held_out" and args.size != "tiny" and FULL_MODEL_ROW in result.scores:
                quickstart_videos = {f"synth{index:04d}" for index in range(QUICKSTART_HELD_OUT_VIDEOS)}
                objects = [s for s in result.scores[FULL_MODEL_ROW] if s.sequence in quickstart_videos]
                jf = PERCENT * float(np.mean([(s.j_mean + s.f_mean) / 2 for s in objects]))
                notes.append(f"Full model{' (' + network + ')' if network else ''} on the quickstart's "
                             f"{QUICKSTART_HELD_OUT_VIDEOS} held-out videos: {jf:.1f} J&F.")
            write_tables(entries, out, notes, headers, sections)
        if len(per_network) > 1 and all(FULL_MODEL_ROW in sums for sums in per_network):
            verdicts[name] = pooled_verdicts(per_network, FULL_MODEL_ROW, args.bootstrap)
            sections.append(format_verdicts(verdicts[name], f"verdicts over {len(networks)} networks: {name}",
                                            networks))
    notes.append(f"J&F x 100; intervals: {CONFIDENCE:.0%} percentile bootstrap over videos ({args.bootstrap} "
                 f"resamples, paired across rows); Δ: difference from {FULL_MODEL_ROW}. Store sizes: the largest "
                 "live elements and KiB of working / long-term memory over frames and videos. Re-entry: J&F on the "
                 f"ground-truth frames within {REENTRY_WINDOW_FRAMES} frames after an object comes back from an "
                 f"absence of at least {REENTRY_MIN_ABSENCE_FRAMES} frames; while away: the share of the look-alikes' "
                 "visible pixels (and of the frame) labelled as the absent object.")
    csv_path, markdown_path = write_tables(entries, out, notes, headers, sections)
    plot = write_plot(entries, out / f"{TABLE_FILE}.png")
    sweep_plot = write_sweep_plot(sweeps, out / SWEEP_PLOT_FILE) if sweeps else None
    print(format_markdown(entries, notes, headers, sections))
    return {"entries": entries, "markdown": markdown_path, "csv": csv_path, "plot": plot, "sweep_plot": sweep_plot,
            "sweeps": sweeps, "verdicts": verdicts, "notes": notes}


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
