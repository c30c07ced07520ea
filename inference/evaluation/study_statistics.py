"""Bootstrap statistics of an ablation table: each row's mean with a percentile interval over videos resampled with
replacement, its paired difference from a reference row, differences pooled over several networks (training
seeds) with the study's rule, and the selection sweep's gaps.

Rows are reduced to per-video sums and counts (J&F summed over a video's objects and their number; re-entry J&F
summed over a video's scored frames and their number), so that every mean is count-weighted like the benchmark's
global score, and every row is resampled with the same video draws (paired differences).

Example (two rows over three videos, one object each):

    >>> rows = {"full": (np.array([0.8, 0.6, 0.2]), np.ones(3)), "better": (np.array([0.9, 0.7, 0.3]), np.ones(3))}
    >>> statistics = bootstrap_sums(rows, "full", resample_draws(3, 100))
    >>> round(statistics["better"]["delta"], 6), round(statistics["better"]["delta_low"], 6)
    (0.1, 0.1)
"""
from __future__ import annotations

import math
import dataclasses
from typing import Any, Optional, Sequence

import numpy as np

from inference.evaluation.metrics import ObjectScores
from inference.evaluation.reentry import ReentryScores

BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
PERCENT = 100


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """The sweep's rows at one share kept: {(selection, potentiation): row names} (random: one row per seed)."""

    share: float
    num_prototypes: int
    rows: dict[tuple[str, bool], tuple[str, ...]]


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


def row_sums(rows: dict[str, Sequence[ObjectScores]]) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
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
    videos, sums = row_sums(rows)
    return bootstrap_sums(sums, reference, resample_draws(len(videos), num_resamples, seed))


def reentry_sums(scores: Sequence[ReentryScores], videos: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    by_video = {score.video: score for score in scores}
    return (np.array([by_video[video].jf_sum for video in videos]),
            np.array([by_video[video].reentry_frames for video in videos], dtype=float))


def pooled_verdicts(per_network: Sequence[dict[str, tuple[np.ndarray, np.ndarray]]], reference: str,
                    num_resamples: int) -> dict[str, dict[str, Any]]:
    """Differences from `reference` pooled over networks (training seeds), with the study's rule.

    Each network's difference is taken on the same video resamples; the pooled difference is their mean over
    networks. A row's difference is "reproduced" only if its sign is the same for every network and the pooled
    interval excludes zero; a difference that is exactly zero on some network has no sign there ("sign differs"),
    and one that is zero on every network is "no difference".

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
        if signs == {0}:  # e.g. a row with the reference's own settings
            verdict = f"no difference: the same score as {reference} on every network"
        elif len(signs) > 1:
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
