"""Re-entry scores: how well a tracker finds an object again after it was away, and what it labels while it is away.

For each absence of an object (a stretch of frames where it is missing from the ground truth: out of the frame or
fully occluded) that lasts at least `min_absence_frames`:
- re-entry J&F: the object's J&F on the ground-truth frames within `window_frames` after it comes back
  (back ≤ frame < back + window), each (return, frame) pair counted once;
- false positives while away: on the ground-truth frames of the absence (gone ≤ frame < back), the share of the
  frame the prediction labels as the object, and the share of the look-alike distractors' visible pixels it labels
  as the object (when the look-alike pixels are known, e.g. from the synthetic generator).
Sums and counts are per video, so that a benchmark's videos can be resampled (bootstrap) like the J&F.

Example (object 1 away on frames 4-7 of a 4-pixel video, found again on frame 8):

    >>> gt = {4: np.zeros((2, 2), np.uint8), 8: np.ones((2, 2), np.uint8)}
    >>> scores = score_reentry("v", gt, gt, [Absence(1, 4, 8)], window_frames=4, min_absence_frames=2)
    >>> scores.jf_sum / scores.reentry_frames, scores.away_area_sum / scores.away_frames
    (1.0, 0.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from inference.evaluation.metrics import frame_scores

# A return counts when the object was away for at least a full working memory's span (T_max·r = 50 frames), so that
# finding it again needs more than working memory; its J&F is taken over the 50 frames after it comes back.
DEFAULT_MIN_ABSENCE_FRAMES = 50
DEFAULT_WINDOW_FRAMES = 50


@dataclass(frozen=True)
class Absence:
    """Object `object_id` is missing from the ground truth on frames gone..back − 1 (back None: to the end)."""

    object_id: int
    gone: int
    back: Optional[int]


@dataclass(frozen=True)
class ReentryScores:
    """One video's sums (divide by the counts for means; a count of 0 means nothing to score).

    Attributes:
        returns: absences long enough that end with a return.
        jf_sum, reentry_frames: summed (J + F) / 2 and the number of (return, ground-truth frame) pairs scored.
        away_area_sum, away_frames: summed share of the frame labelled as the absent object, over (absence,
            ground-truth frame) pairs.
        lookalike_fp_sum, lookalike_frames: summed share of the visible look-alike pixels labelled as the absent
            object, over the pairs whose frame shows a look-alike.
    """

    video: str
    returns: int = 0
    jf_sum: float = 0.0
    reentry_frames: int = 0
    away_area_sum: float = 0.0
    away_frames: int = 0
    lookalike_fp_sum: float = 0.0
    lookalike_frames: int = 0


def score_reentry(video: str, ground_truth: Mapping[int, np.ndarray], predictions: Mapping[int, np.ndarray],
                  absences: Sequence[Absence], *, window_frames: int = DEFAULT_WINDOW_FRAMES,
                  min_absence_frames: int = DEFAULT_MIN_ABSENCE_FRAMES,
                  lookalikes: Optional[Mapping[int, np.ndarray]] = None) -> ReentryScores:
    """Re-entry J&F and false positives while away of one video (module docstring).

    Args:
        video: its name.
        ground_truth: {frame index: uint8 H×W object ids} on the scored (e.g. sparse) frames.
        predictions: {frame index: uint8 H×W object ids}; frames missing here are not scored.
        absences: every absence of every object (e.g. `dataset.synthetic_long.read_absences`).
        window_frames: K, the frames after a return whose ground truth is scored.
        min_absence_frames: shorter absences (brief occlusions) are ignored.
        lookalikes: {frame index: bool H×W visible look-alike pixels} for the ground-truth frames, or None.
    Raises:
        ValueError: a prediction and its ground truth differ in size, or a non-positive window.
    """
    if window_frames < 1:
        raise ValueError(f"re-entry window {window_frames} is invalid; expected ≥ 1 frame")
    frames = sorted(frame for frame in ground_truth if frame in predictions)
    totals = dict(returns=0, jf_sum=0.0, reentry_frames=0, away_area_sum=0.0, away_frames=0, lookalike_fp_sum=0.0,
                  lookalike_frames=0)
    for absence in absences:
        end = absence.back if absence.back is not None else (frames[-1] + 1 if frames else 0)
        if end - absence.gone < min_absence_frames:
            continue
        for frame in (frame for frame in frames if absence.gone <= frame < end):
            labelled = predictions[frame] == absence.object_id
            totals["away_area_sum"] += float(labelled.mean())
            totals["away_frames"] += 1
            if lookalikes is not None and lookalikes[frame].any():
                totals["lookalike_fp_sum"] += float(labelled[lookalikes[frame]].mean())
                totals["lookalike_frames"] += 1
        if absence.back is None:
            continue
        totals["returns"] += 1
        for frame in (frame for frame in frames if absence.back <= frame < absence.back + window_frames):
            j, f = frame_scores(ground_truth[frame], predictions[frame], [absence.object_id])
            totals["jf_sum"] += float(j[0] + f[0]) / 2
            totals["reentry_frames"] += 1
    return ReentryScores(video, **totals)
