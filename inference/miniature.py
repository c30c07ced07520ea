"""Memory budgets for small frames and short videos, derived from the paper's ratios (the ablation study's settings).

The paper's budgets (T_max 10, T_min 5, LT_max 10,000, P 128, r 5) were chosen for 480p, where a memory frame holds
h·w = 30×54 = 1,620 elements. Used as they are on 96×160 frames (6×10 = 60 elements a frame), they stop meaning
what they meant: a consolidation's T_max − T_min = 5 candidate frames are 300 elements, so P = 128 keeps 43 % of
them (1.6 % in the paper) and any selection rule keeps nearly everything; LT_max = 10,000 holds 167 frames' worth
of elements (about 6 in the paper), so long-term memory never fills on a few hundred frames.

`miniature_memory_settings(elements_per_frame, num_frames)` keeps the paper's ratios instead:
- T_max, T_min and r are the paper's (they count frames, not elements);
- P keeps the paper's share of each consolidation's candidates: P = round(share · (T_max − T_min) · h·w), at
  least 1 (128 of 5 × 1,620 = 1.58 % in the paper; 5 of 300 at 60 elements a frame);
- LT_max makes long-term memory full, and pruned by usage at every consolidation, from `LONG_TERM_FULL_FRACTION` of
  the video on: LT_max = m·P where m is the number of consolidations by then (at least 1). Keeping LT_max at the
  paper's 6 frames' worth of elements would do the same only on videos of about 2,000 frames (as the paper's
  Long-time Video set: its first pruning is near frame 1,995), whatever the frame size.

Example (the study's 96×160 frames, the long benchmark's 2,000 frames):

    >>> settings = miniature_memory_settings(feature_elements(96, 160), 2000)
    >>> settings.num_prototypes, settings.max_long_term_elements, settings.first_prune_frame
    (5, 90, 495)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from configs.schema import InferenceConfig
from inference.video_runner import FEATURE_STRIDE
_PAPER = InferenceConfig()  # the schema's defaults are the paper's budgets
PAPER_ELEMENTS_PER_FRAME = 30 * 54  # h·w of a 480p DAVIS frame (854×480, padded to 864×480, at stride 16)
# P / ((T_max − T_min) · h·w) in the paper: the share of a consolidation's candidates kept as prototypes (1.58 %)
PAPER_KEPT_SHARE = _PAPER.num_prototypes / (
    (_PAPER.max_working_frames - _PAPER.min_working_frames) * PAPER_ELEMENTS_PER_FRAME)
# Long-term memory is full (and pruned at every consolidation) from this fraction of the video on.
LONG_TERM_FULL_FRACTION = 0.25


def feature_elements(height: int, width: int) -> int:
    """Memory elements per frame (h·w) of an H×W input: the input is padded to multiples of 16, then strided by 16."""
    return math.ceil(height / FEATURE_STRIDE) * math.ceil(width / FEATURE_STRIDE)


@dataclass(frozen=True)
class MiniatureSettings:
    """Memory budgets for one frame size and video length, with the quantities they were derived from.

    Attributes:
        elements_per_frame: h·w. num_frames: the video's length.
        max_working_frames, min_working_frames, mem_every: T_max, T_min, r (the paper's).
        num_prototypes: P. max_long_term_elements: LT_max.
        kept_share: P / candidates per consolidation (the paper: PAPER_KEPT_SHARE).
        first_consolidation_frame: the frame whose memory write first fills working memory ((T_max − 1)·r).
        consolidation_period_frames: frames between consolidations ((T_max − T_min)·r).
        first_prune_frame: the first consolidation that prunes long-term memory; None if the video ends before.
    """

    elements_per_frame: int
    num_frames: int
    max_working_frames: int
    min_working_frames: int
    mem_every: int
    num_prototypes: int
    max_long_term_elements: int

    @property
    def candidates_per_consolidation(self) -> int:
        """(T_max − T_min)·h·w: the elements one consolidation chooses its prototypes from."""
        return (self.max_working_frames - self.min_working_frames) * self.elements_per_frame

    @property
    def kept_share(self) -> float:
        return self.num_prototypes / self.candidates_per_consolidation

    @property
    def first_consolidation_frame(self) -> int:
        return (self.max_working_frames - 1) * self.mem_every

    @property
    def consolidation_period_frames(self) -> int:
        return (self.max_working_frames - self.min_working_frames) * self.mem_every

    @property
    def first_prune_frame(self) -> int | None:
        # After consolidation k long-term memory holds (k + 1)·P; consolidation k prunes once k·P > LT_max − P.
        first_pruning = math.floor(self.max_long_term_elements / self.num_prototypes)
        frame = self.first_consolidation_frame + first_pruning * self.consolidation_period_frames
        return frame if frame < self.num_frames - 1 else None  # the last frame writes no memory

    def overrides(self) -> list[str]:
        """The settings as `inference.field=value` config overrides (eval.py, run_ablations.py)."""
        fields = ("max_working_frames", "min_working_frames", "mem_every", "num_prototypes", "max_long_term_elements")
        return [f"inference.{name}={getattr(self, name)}" for name in fields]

    def describe(self) -> str:
        """One line for a table header: the budgets and what they mean at this size."""
        prune = (f"full and pruned from frame {self.first_prune_frame} of {self.num_frames}"
                 if self.first_prune_frame is not None else f"never full in {self.num_frames} frames")
        return (f"memory settings for {self.elements_per_frame} elements a frame, {self.num_frames} frames "
                f"(inference/miniature.py): T_max {self.max_working_frames}, T_min {self.min_working_frames}, "
                f"r {self.mem_every}, P {self.num_prototypes} ({self.kept_share:.1%} of "
                f"{self.candidates_per_consolidation} candidates kept; paper {PAPER_KEPT_SHARE:.1%}), "
                f"LT_max {self.max_long_term_elements} (long-term memory {prune})")


def prototypes_for_share(kept_share: float, elements_per_frame: int, *, base: InferenceConfig = _PAPER) -> int:
    """P that keeps `kept_share` of a consolidation's (T_max − T_min)·h·w candidates (at least 1, at most all).

    Raises:
        ValueError: kept_share outside (0, 1].
    """
    if not 0 < kept_share <= 1:
        raise ValueError(f"kept share {kept_share} is invalid; expected a fraction in (0, 1]")
    candidates = (base.max_working_frames - base.min_working_frames) * elements_per_frame
    return min(candidates, max(1, round(kept_share * candidates)))


def miniature_memory_settings(elements_per_frame: int, num_frames: int, *, kept_share: float = PAPER_KEPT_SHARE,
                              long_term_full_fraction: float = LONG_TERM_FULL_FRACTION) -> MiniatureSettings:
    """The paper's memory ratios for h·w = `elements_per_frame` and videos of `num_frames` frames (module docstring).

    Args:
        elements_per_frame: h·w (`feature_elements(H, W)`).
        num_frames: the video's length.
        kept_share: the share of each consolidation's candidates kept as prototypes.
        long_term_full_fraction: long-term memory is full from this fraction of the video on.
    Raises:
        ValueError: a non-positive size or length, or a fraction outside (0, 1].
    """
    if elements_per_frame < 1 or num_frames < 1:
        raise ValueError(f"miniature settings need ≥ 1 element a frame and ≥ 1 frame, got {elements_per_frame} and "
                         f"{num_frames}")
    if not 0 < long_term_full_fraction <= 1:
        raise ValueError(f"long_term_full_fraction {long_term_full_fraction} is invalid; expected a fraction in (0, 1]")
    num_prototypes = prototypes_for_share(kept_share, elements_per_frame)
    first = (_PAPER.max_working_frames - 1) * _PAPER.mem_every
    period = (_PAPER.max_working_frames - _PAPER.min_working_frames) * _PAPER.mem_every
    consolidations_until_full = max(1, math.floor((long_term_full_fraction * num_frames - first) / period))
    return MiniatureSettings(
        elements_per_frame=elements_per_frame, num_frames=num_frames,
        max_working_frames=_PAPER.max_working_frames, min_working_frames=_PAPER.min_working_frames,
        mem_every=_PAPER.mem_every, num_prototypes=num_prototypes,
        max_long_term_elements=consolidations_until_full * num_prototypes)
