"""A synthetic long-video benchmark in the Long-time Video layout, built so that each memory store has a job.

Every video is a `LongSyntheticVideo`: the generator of `dataset.synthetic` with exits and colour drift slowed to
the scale of thousands of frames. What makes the memories matter:
- objects leave the frame for hundreds of frames and come back (most objects exit, about every
  LONG_TIMING.exit_period_frames frames, and stay fully outside for LONG_TIMING.exit_hold_fraction of that), so a
  tracker must re-identify them from memory older than its working memory;
- their colours drift slowly (periods of several hundred frames), so the first frame alone is a poor reference
  late in the video;
- two look-alike distractors per video (an object's colours and texture, unlabelled) and heavy occlusion punish
  matching by colour alone;
- the videos are long enough for long-term memory to fill (LT_max) and prune.

The benchmark (`long_benchmark`) is a fixed set, deterministic by seed, with ground truth on frame 0 and every
`annotation_every`-th frame (as the Long-time Video set annotates sparse frames); `write_long_benchmark` writes it
where eval.py's LV1 reader expects it (`<lv_path>/long_video/`).

Example:
    >>> videos = long_benchmark()                      # {'synth0000': LongSyntheticVideo, ...}, nothing rendered
    >>> rgb, mask = videos["synth0000"].frame(1234)    # any frame, in any order
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from configs.common import atomic_write_text
from dataset.synthetic import Difficulty, SyntheticVideo, Timing, video_name, video_seed
from dataset.synthetic_layouts import LONG_VIDEO_DIR, ProgressCallback, WriteReport, write_long_video

# <lv_path>/long_video/absences.json: {video: {object id: [[first frame absent, first frame back or null], ...]}},
# every absence from the ground truth judged on every frame (the generator knows them; the sparse annotations do not).
ABSENCES_FILE = "absences.json"

LONG_DIFFICULTY = Difficulty(
    min_objects=2, max_objects=3,
    speed_fraction=0.01,  # half the held_out preset's speed: long videos, yet objects cross the frame often
    occlusion=0.7, rotation_deg_per_frame=2.0, scale_change=0.25,
    num_distractors=2,  # look-alikes of labelled objects
    appearance_change=0.3,
    late_entry_probability=0.0,  # the Long-time Video layout annotates frame 0 only
    exit_probability=0.8,
    background_pan_fraction=0.1,
)
LONG_TIMING = Timing(
    exit_period_frames=700,  # an exiting object leaves once per 700 frames, starting 105-315 frames in
    exit_ramp_fraction=0.08,  # 56 frames to slide out (and back in)
    exit_hold_fraction=0.4,  # 280 frames fully outside
    appearance_period_frames=(400.0, 1200.0),  # slow colour drift
)


@dataclass(frozen=True)
class LongSyntheticVideo(SyntheticVideo):
    """A `SyntheticVideo` whose exits and colour drift follow `long_timing` (LONG_TIMING by default)."""

    long_timing: Timing = LONG_TIMING

    @property
    def timing(self) -> Timing:
        return self.long_timing


@dataclass(frozen=True)
class LongBenchmark:
    """The size of the long benchmark.

    Attributes:
        num_videos, num_frames, height, width: LONG_BENCHMARK: 5 videos of 2000 frames at 96x160 (10,000 frames;
            one pass of XMem: about 45 minutes on one CPU thread, measured at 0.27 CPU-s per frame).
        annotation_every: ground-truth frame step (frame 0 is the input mask; 99 scored frames per video).
        seed: videos are drawn from video_seed(seed, index).
        timing: when objects exit and come back, and how fast colours drift.
    """

    num_videos: int = 5
    num_frames: int = 2000
    height: int = 96
    width: int = 160
    annotation_every: int = 20
    seed: int = 505  # distinct from the quickstart's and the study's data seeds (101..404)
    timing: Timing = LONG_TIMING

    def __post_init__(self) -> None:
        if self.num_videos < 1 or self.num_frames < 2 or self.annotation_every < 1:
            raise ValueError(f"LongBenchmark {self} is invalid; expected >= 1 video, >= 2 frames and "
                             "annotation_every >= 1")


LONG_BENCHMARK = LongBenchmark()
# What the study could afford (scripts/study/run_study.py --size reduced): 8 videos of 400 frames, 3,200 frames in all
# (one pass: about 15 minutes on one thread), with LONG_TIMING's periods halved. Objects are away for about 140
# frames, still about three times the span of a full working memory (T_max x r = 50 frames), so coming back is a
# job for long-term memory; more, shorter videos make the bootstrap over videos less coarse than 5 long ones.
LONG_BENCHMARK_REDUCED = LongBenchmark(
    num_videos=8, num_frames=400, annotation_every=10,
    timing=Timing(exit_period_frames=350, exit_ramp_fraction=LONG_TIMING.exit_ramp_fraction,
                  exit_hold_fraction=LONG_TIMING.exit_hold_fraction, appearance_period_frames=(200.0, 600.0)))


def long_benchmark(size: LongBenchmark = LONG_BENCHMARK,
                   difficulty: Difficulty = LONG_DIFFICULTY) -> dict[str, LongSyntheticVideo]:
    """The benchmark's video specs, {name: video} named synth0000, ... (cheap: nothing is rendered)."""
    return {
        video_name(index): LongSyntheticVideo(seed=video_seed(size.seed, index), height=size.height,
                                              width=size.width, num_frames=size.num_frames, difficulty=difficulty,
                                              long_timing=size.timing)
        for index in range(size.num_videos)
    }


def write_long_benchmark(out: str | os.PathLike, size: LongBenchmark = LONG_BENCHMARK,
                         progress: ProgressCallback | None = None) -> WriteReport:
    """Write (or finish writing) the benchmark as a Long-time Video set: `out/long_video/{JPEGImages,Annotations}/`
    (eval.py: `--dataset LV1 --lv_path out --size -1`), and every object's absences to
    `out/long_video/absences.json` (ABSENCES_FILE; rewritten each time, a few seconds). Resumable, as every synthetic
    writer."""
    videos = long_benchmark(size)
    report = write_long_video(out, videos, annotation_every=size.annotation_every, progress=progress)
    record = {name: {str(object_id): spans for object_id, spans in object_absences(video).items()}
              for name, video in videos.items()}
    atomic_write_text(Path(out) / LONG_VIDEO_DIR / ABSENCES_FILE, json.dumps(record, indent=1))
    return report


def object_absences(video: SyntheticVideo) -> dict[int, list[tuple[int, int | None]]]:
    """Every stretch of frames on which an object is missing from the ground truth (out of the frame or fully
    occluded), judged on every frame after frame 0.

    Returns:
        {object id: [(first frame absent, first frame visible again, or None when it never comes back), ...]}.
    """
    spans: dict[int, list[tuple[int, int | None]]] = {object_id: [] for object_id in video.object_ids}
    gone: dict[int, int] = {}
    for index, _, mask in video.frames():
        present = set(int(value) for value in np.unique(mask))
        for object_id in video.object_ids:
            if object_id in present and object_id in gone:
                spans[object_id].append((gone.pop(object_id), index))
            elif object_id not in present and object_id not in gone:
                gone[object_id] = index
    for object_id, start in gone.items():
        spans[object_id].append((start, None))
    return spans


def lookalike_pixels(video: SyntheticVideo, index: int) -> np.ndarray:
    """bool H×W: where a look-alike distractor is the front-most drawn layer of frame `index` (its visible part)."""
    _, mask = video.render(index)
    covered = np.zeros(mask.shape, dtype=bool)
    for label, layer_covered in video.layer_coverage(index):
        if label == 0:  # a distractor
            covered |= layer_covered
    return covered & (mask == 0)  # a distractor drawn over an object resets the mask to 0 there


def read_absences(lv_root: str | os.PathLike) -> dict[str, dict[int, list[tuple[int, int | None]]]]:
    """The absences `write_long_benchmark` recorded under `lv_root` ({video: {object id: [(gone, back), ...]}}).

    Raises:
        FileNotFoundError: no absences file (the benchmark was written by an older version: write it again).
    """
    path = Path(lv_root) / LONG_VIDEO_DIR / ABSENCES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; rerun write_long_benchmark (scripts/study/run_study.py does) to "
                                "record the long benchmark's absences")
    record = json.loads(path.read_text())
    return {video: {int(object_id): [(gone, back) for gone, back in spans] for object_id, spans in objects.items()}
            for video, objects in record.items()}


def absences(video: SyntheticVideo, frames: range) -> dict[int, list[tuple[int, int]]]:
    """Where each object is missing from the ground truth, judged on `frames` (e.g. the annotated frames).

    Returns:
        {object id: [(last frame seen, first frame seen again), ...]} for every gap between two frames of `frames`
        on which the object is visible, with at least one frame of `frames` in between where it is not.
    """
    seen_last: dict[int, int] = {}
    gaps: dict[int, list[tuple[int, int]]] = {object_id: [] for object_id in video.object_ids}
    previous_frame = None
    for index in frames:
        _, mask = video.frame(index)
        for object_id in video.object_ids:
            if (mask == object_id).any():
                if object_id in seen_last and seen_last[object_id] != previous_frame:
                    gaps[object_id].append((seen_last[object_id], index))
                seen_last[object_id] = index
        previous_frame = index
    return gaps


def longest_absences(videos: Mapping[str, SyntheticVideo], step: int) -> dict[str, int]:
    """{video name: the longest gap (frames between last and next sighting) of any object}, judged every `step`
    frames."""
    longest = {}
    for name, video in videos.items():
        gaps = absences(video, range(0, video.num_frames, step))
        longest[name] = max((back - gone for spans in gaps.values() for gone, back in spans), default=0)
    return longest
