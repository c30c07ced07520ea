"""Soft aggregation: turn independent per-object probabilities into one distribution with a background channel."""
from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATION_EPSILON = 1e-7  # probabilities are clamped to [ε, 1 − ε] before the log-odds


def aggregate(prob: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft aggregation over objects (as XMem / STCN).

    q = [Π_i (1 − p_i), p_1, ..., p_N] clamped to [ε, 1 − ε]; logits = log(q / (1 − q)); prob = softmax(logits).
    A single object is sharpened: p -> p² / (p² + (1 − p)²). Hard masks become one-hot up to ε-sized leaks.

    Args:
        prob: float tensor with N objects along `dim` (e.g. B×N×H×W with dim=1, or N×H×W with dim=0), values
            in [0, 1], independent per object (need not sum to 1).
        dim: the object dimension.
    Returns:
        (logits, prob), both with N + 1 entries along `dim`, background first; prob sums to 1 along `dim`.
    """
    background = torch.prod(1 - prob, dim=dim, keepdim=True)
    with_background = torch.cat([background, prob], dim=dim).clamp(AGGREGATION_EPSILON, 1 - AGGREGATION_EPSILON)
    logits = torch.log(with_background / (1 - with_background))
    return logits, F.softmax(logits, dim=dim)
