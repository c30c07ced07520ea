"""The ablation study's benchmarks (scripts/study/run_study.py): their sizes, writing them, and scoring a row's masks
on them (J&F per object, DAVIS mode; on the long benchmark also the re-entry scores of
inference/evaluation/reentry.py, from the absences the benchmark records and the look-alike pixels its generator
draws)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from dataset.synthetic import Timing
from dataset.synthetic_layouts import frame_name, write_davis
from dataset.synthetic_plan import STUDY_PLAN, DavisValRoot, held_out_videos, out_of_distribution_videos
from dataset.synthetic_long import (LONG_BENCHMARK, LONG_BENCHMARK_REDUCED, LONG_TIMING, LongBenchmark,
                                    long_benchmark, lookalike_pixels, read_absences, write_long_benchmark)
from inference.evaluation.folder_evaluation import evaluate_folders
from inference.evaluation.metrics import MODE_DAVIS, ObjectScores
from inference.miniature import MiniatureSettings, feature_elements, miniature_memory_settings
from inference.evaluation.reentry import (DEFAULT_MIN_ABSENCE_FRAMES, DEFAULT_WINDOW_FRAMES, Absence, ReentryScores,
                               score_reentry)

SCORES_FOLDER = "study_scores"  # per-object tables written beside each row's masks
REENTRY_WINDOW_FRAMES = DEFAULT_WINDOW_FRAMES
REENTRY_MIN_ABSENCE_FRAMES = DEFAULT_MIN_ABSENCE_FRAMES
# The DAVIS-layout benchmarks (every frame annotated, eval.py D17) and the generator of each one's videos.
DAVIS_BENCHMARK_VIDEOS = {"held_out": held_out_videos, "hard": out_of_distribution_videos}


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
    """Write (or reuse: the writers skip finished videos) one benchmark under `data_root`: `held_out`, `hard` (the
    out-of-distribution held-out set, as many videos of the same length) or `long`."""
    if name in DAVIS_BENCHMARK_VIDEOS:
        davis = DavisValRoot(data_root / name)
        videos = DAVIS_BENCHMARK_VIDEOS[name](size.held_out_videos, size.held_out_frames, size.height, size.width)
        write_davis(davis.split, {}, videos)
        return BenchmarkData(name, ("--dataset", "D17", "--d17_path", str(davis.root), "--size", "-1"),
                             davis.annotations, davis.video_list, sparse=False,
                             height=size.height, width=size.width, num_frames=size.held_out_frames)
    root = data_root / "long"
    write_long_benchmark(root, size.long)
    return BenchmarkData(name, ("--dataset", "LV1", "--lv_path", str(root), "--size", "-1"),
                         root / "long_video" / "Annotations", None, sparse=True, height=size.long.height,
                         width=size.long.width, num_frames=size.long.num_frames, long_size=size.long, root=root)


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
        masks = sorted((benchmark.ground_truth / video).glob("*.png"))
        ground_truth = {int(path.stem): read_mask_ids(path) for path in masks}
        spans = [Absence(object_id, gone, back) for object_id, object_spans in absences[video].items()
                 for gone, back in object_spans]
        truth[video] = ReentryTruth(ground_truth, spans, {frame: lookalike_pixels(specs[video], frame)
                                                          for frame in ground_truth})
    return truth


def score_reentry_folder(truth: dict[str, ReentryTruth], predictions: Path) -> list[ReentryScores]:
    """Re-entry scores of every video of a folder of predicted masks (frame 0, the input, is not scored)."""
    scores = []
    for video, video_truth in truth.items():
        paths = {frame: predictions / video / f"{frame_name(frame)}.png" for frame in video_truth.ground_truth}
        predicted = {frame: read_mask_ids(path) for frame, path in paths.items() if frame > 0 and path.is_file()}
        scores.append(score_reentry(video, video_truth.ground_truth, predicted, video_truth.absences,
                                    window_frames=REENTRY_WINDOW_FRAMES,
                                    min_absence_frames=REENTRY_MIN_ABSENCE_FRAMES, lookalikes=video_truth.lookalikes))
    return scores
