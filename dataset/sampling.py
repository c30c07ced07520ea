"""Frame sampling for training clips, the max-skip curriculum, and per-sample random state.

Frame sampler (reference `VOSDataset.__getitem__`): the first frame is uniform over the video; every further frame
is uniform over the union of the windows [c - max_jump, c + max_jump] around the frames chosen so far, excluding
those frames (max_jump = min(#frames, max_skip)); the clip is sorted and reversed with probability 0.5. Every gap
between consecutive sampled frames is therefore at most max_jump.

Curriculum (reference train.py, stages 1-3): max_skip starts at 5 and switches to the listed values once the
iteration reaches round(fraction × iterations) for each listed fraction. Datasets whose frame lists keep only every
s-th frame of the video (YouTube-VOS train: s = 5) divide max_skip by s, so that max_skip always counts frames of
the original video.

Randomness: every sample draws from its own `numpy.random.Generator` seeded by (seed, stream, epoch, index), never
from global state, so a sample is the same in any DataLoader worker, on any rank, and after a resume.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

INITIAL_MAX_SKIP = 5
CURRICULUM_MAX_SKIPS = (10, 15, 5, 5)
STAGE1_SWITCH_FRACTIONS = (0.1, 0.3, 0.8, 100.0)
"""Fractions of the stage's iterations where max_skip switches, stage 1 (BL30K); 100 = never."""
MAIN_SWITCH_FRACTIONS = (0.1, 0.3, 0.9, 100.0)
"""Fractions of the stage's iterations where max_skip switches, stages 2 and 3 (YouTube-VOS + DAVIS)."""
YOUTUBE_VOS_FRAME_STRIDE = 5
"""YouTube-VOS train keeps (and annotates) every 5th frame of the original video."""
REVERSE_PROBABILITY = 0.5


def sample_rng(seed: int, stream: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one training sample.

    Args:
        seed: the run's seed.
        stream: separates datasets that share indices (e.g. `stream_id(name)`), so that sample 0 of DAVIS and
            sample 0 of YouTube-VOS do not draw the same crops.
        epoch: the epoch; a new epoch gives new augmentations.
        index: the sample's index in its dataset.
    Raises:
        ValueError: a negative argument.
    """
    values = (seed, stream, epoch, index)
    if min(values) < 0:
        raise ValueError(f"seed, stream, epoch and index must be >= 0, got {values}")
    return np.random.default_rng(np.random.SeedSequence([int(v) for v in values]))


def stream_id(name: str) -> int:
    """A stable 32-bit number for a dataset name (CRC-32; Python's hash() changes between processes)."""
    return zlib.crc32(name.encode("utf-8"))


def sample_frame_indices(rng: np.random.Generator, num_video_frames: int, num_frames: int,
                         max_skip: int, reverse_probability: float = REVERSE_PROBABILITY) -> list[int]:
    """Choose `num_frames` distinct frames of a video for one training clip (see module docstring).

    Args:
        rng: the sample's generator.
        num_video_frames: frames available in the video (its frame list).
        num_frames: frames in the clip (T).
        max_skip: largest distance, in frame-list positions, of a new frame from some already chosen frame.
        reverse_probability: probability of playing the clip backwards.
    Returns:
        T distinct indices into the frame list, sorted ascending or descending.
    Raises:
        ValueError: num_frames > num_video_frames, num_frames < 1 or max_skip < 1.
    """
    if num_frames < 1 or max_skip < 1:
        raise ValueError(f"num_frames and max_skip must be >= 1, got num_frames={num_frames}, max_skip={max_skip}")
    if num_frames > num_video_frames:
        raise ValueError(f"cannot sample {num_frames} distinct frames from a video of {num_video_frames} frames")
    max_jump = min(num_video_frames, max_skip)
    chosen = np.zeros(num_video_frames, dtype=bool)
    reachable = np.zeros(num_video_frames, dtype=bool)
    frame = int(rng.integers(num_video_frames))
    picked = []
    for _ in range(num_frames):
        if picked:
            candidates = np.flatnonzero(reachable & ~chosen)
            frame = int(candidates[rng.integers(len(candidates))])
        picked.append(frame)
        chosen[frame] = True
        reachable[max(0, frame - max_jump): frame + max_jump + 1] = True
    picked.sort()
    if rng.uniform() < reverse_probability:
        picked.reverse()
    return picked


def dataset_max_skip(max_skip: int, frame_stride: int) -> int:
    """max_skip in frame-list positions for a dataset that keeps every `frame_stride`-th frame (at least 1).

    YouTube-VOS (stride 5) turns the curriculum's 5 / 10 / 15 into 1 / 2 / 3, as the reference's max_skip // 5.
    """
    if max_skip < 1 or frame_stride < 1:
        raise ValueError(f"max_skip and frame_stride must be >= 1, got {max_skip} and {frame_stride}")
    return max(1, max_skip // frame_stride)


@dataclass(frozen=True)
class SkipCurriculum:
    """The max-skip schedule of one training stage.

    Attributes:
        initial_max_skip: max_skip before the first switch.
        switch_fractions: fractions of the stage's `iterations` (finetune iterations excluded) at which max_skip
            becomes the matching entry of `max_skips`; non-decreasing; values > 1 never trigger.
        max_skips: max_skip after each switch.
    """

    initial_max_skip: int = INITIAL_MAX_SKIP
    switch_fractions: tuple[float, ...] = MAIN_SWITCH_FRACTIONS
    max_skips: tuple[int, ...] = CURRICULUM_MAX_SKIPS

    def __post_init__(self) -> None:
        if len(self.switch_fractions) != len(self.max_skips):
            raise ValueError(f"switch_fractions {self.switch_fractions} and max_skips {self.max_skips} must have "
                             "the same length")
        if list(self.switch_fractions) != sorted(self.switch_fractions) or min(self.switch_fractions, default=0) < 0:
            raise ValueError(f"switch_fractions must be non-negative and non-decreasing, got {self.switch_fractions}")
        if min((self.initial_max_skip, *self.max_skips)) < 1:
            raise ValueError(f"max_skip values must be >= 1, got initial {self.initial_max_skip}, "
                             f"then {self.max_skips}")

    @classmethod
    def for_stage(cls, stage: str) -> "SkipCurriculum":
        """The reference schedule of stage '1' (BL30K) or '2' / '3' (YouTube-VOS + DAVIS).

        Raises:
            ValueError: stage '0' (static images have no frame skip) or an unknown stage.
        """
        if stage == "1":
            return cls(switch_fractions=STAGE1_SWITCH_FRACTIONS)
        if stage in ("2", "3"):
            return cls(switch_fractions=MAIN_SWITCH_FRACTIONS)
        raise ValueError(f"no max-skip curriculum for stage {stage!r}; expected '1', '2' or '3' "
                         "(stage 0 trains on static images)")

    def switch_iterations(self, iterations: int) -> list[int]:
        """Iterations at which max_skip changes, as the reference: round(iterations × fraction)."""
        return [round(iterations * fraction) for fraction in self.switch_fractions]

    def max_skip_at(self, iteration: int, iterations: int) -> int:
        """max_skip in force at `iteration` (0-based, within the stage) of a stage of `iterations` iterations."""
        max_skip = self.initial_max_skip
        for switch, value in zip(self.switch_iterations(iterations), self.max_skips):
            if iteration >= switch:
                max_skip = value
        return max_skip
