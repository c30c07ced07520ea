"""Training losses of XMem: bootstrapped cross-entropy on the aggregated logits plus a soft dice on the masks.

For a clip of T frames the total loss is Σ_{t=1}^{T−1} (CE_t + Dice_t) (frame 0 is given, not predicted):
- CE_t: per sample, cross-entropy of the background-first logits restricted to the sample's real objects
  (its first num_objects + 1 channels) against the frame's class map; once `iteration ≥ start_warm` only the
  hardest fraction p of the pixels is averaged ("bootstrapping"), with p falling linearly from 1 at start_warm to
  `final_fraction` (0.15) at end_warm. Averaged over the batch.
- Dice_t: 1 − (2Σ m·g + 1) / (Σ m + Σ g + 1) per sample and object slot (padded slots included; their masks are
  zeroed by the selector, so they contribute ≈ 0), averaged over all (sample, slot) pairs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

DEFAULT_FINAL_FRACTION = 0.15  # bootstrapped CE keeps the hardest 15 % of pixels after end_warm
DICE_SMOOTHING = 1.0  # added to numerator and denominator so that empty masks give a loss of 0, not 0/0


def bootstrap_fraction(
    iteration: int, start_warm: int, end_warm: int, final_fraction: float = DEFAULT_FINAL_FRACTION
) -> float:
    """The fraction p of pixels the bootstrapped CE averages at `iteration` (within the stage).

    p = 1 before start_warm, then final_fraction + (1 − final_fraction)·(end_warm − it)/(end_warm − start_warm)
    up to end_warm (linear 1 → final_fraction), and final_fraction after it.

    Raises:
        ValueError: end_warm ≤ start_warm, or final_fraction outside (0, 1].
    """
    if end_warm <= start_warm:
        raise ValueError(f"bootstrapped CE needs start_warm < end_warm, got start_warm={start_warm}, "
                         f"end_warm={end_warm}; fix train.stageN.start_warm / end_warm")
    if not 0 < final_fraction <= 1:
        raise ValueError(f"bootstrap final fraction must be in (0, 1], got {final_fraction}; "
                         "fix train.bootstrap_final_fraction")
    if iteration < start_warm:
        return 1.0
    if iteration > end_warm:
        return final_fraction
    # Same operation order as the original, so that int(p · pixels) picks the same pixel count.
    return final_fraction + (1 - final_fraction) * ((end_warm - iteration) / (end_warm - start_warm))


def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean cross-entropy over the hardest `fraction` of pixels (all pixels, plain mean, when fraction is 1).

    Args:
        logits: 1×C×H×W float, background first (C = objects + 1).
        target: 1×H×W int64 class map in [0, C).
        fraction: p in (0, 1].
    Returns:
        scalar float tensor.
    """
    if fraction >= 1:
        return F.cross_entropy(logits, target)
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    kept, _ = torch.topk(per_pixel, int(per_pixel.numel() * fraction), sorted=False)
    return kept.mean()


def dice_loss(masks: torch.Tensor, class_map: torch.Tensor) -> torch.Tensor:
    """Soft dice over object slots, averaged over (sample, slot) pairs.

    Args:
        masks: B×N×H×W float probabilities in [0, 1] (background excluded).
        class_map: B×H×W int64, 0 = background, i + 1 = object slot i.
    Returns:
        scalar float tensor in [0, 1].
    """
    per_slot = []
    for slot in range(masks.shape[1]):
        mask = masks[:, slot].flatten(start_dim=1)
        ground_truth = (class_map == slot + 1).to(mask.dtype).flatten(start_dim=1)
        numerator = 2 * (mask * ground_truth).sum(-1)
        denominator = mask.sum(-1) + ground_truth.sum(-1)
        per_slot.append(1 - (numerator + DICE_SMOOTHING) / (denominator + DICE_SMOOTHING))
    return torch.cat(per_slot).mean()


def clip_losses(
    logits: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    class_maps: torch.Tensor,
    num_objects: Sequence[int],
    fraction: float,
) -> dict[str, torch.Tensor]:
    """All loss terms of one clip.

    Args:
        logits: for t = 1..T−1, B×(N+1)×H×W background-first logits after soft aggregation.
        masks: for t = 1..T−1, B×N×H×W object probabilities (background removed).
        class_maps: B×T×1×H×W int64 ground truth, 0 = background, i + 1 = object slot i.
        num_objects: per sample, its number of real objects (≥ 1); slots beyond it are padding.
        fraction: bootstrapped CE pixel fraction p (`bootstrap_fraction`).
    Returns:
        {"total_loss", "p", then "ce_loss_t", "dice_loss_t" for t = 1..T−1}: scalar tensors ("p" is a constant).
    Raises:
        ValueError: the numbers of predicted frames and ground-truth frames disagree.
    """
    num_frames = class_maps.shape[1]
    if not len(logits) == len(masks) == num_frames - 1:
        raise ValueError(f"clip_losses needs {num_frames - 1} predicted frames for a {num_frames}-frame clip, got "
                         f"{len(logits)} logits and {len(masks)} masks")
    batch_size = class_maps.shape[0]
    terms: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=class_maps.device)
    for frame, (frame_logits, frame_masks) in enumerate(zip(logits, masks), start=1):
        frame_classes = class_maps[:, frame, 0]
        cross_entropy = torch.zeros((), device=class_maps.device)
        for sample in range(batch_size):
            sample_logits = frame_logits[sample:sample + 1, :num_objects[sample] + 1]
            sample_loss = bootstrapped_cross_entropy(sample_logits, frame_classes[sample:sample + 1], fraction)
            cross_entropy = cross_entropy + sample_loss / batch_size
        dice = dice_loss(frame_masks, frame_classes)
        terms[f"ce_loss_{frame}"] = cross_entropy
        terms[f"dice_loss_{frame}"] = dice
        total = total + cross_entropy + dice
    return {"total_loss": total, "p": torch.tensor(fraction), **terms}
