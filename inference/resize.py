"""Resizing frames, masks and probabilities to and from the network's input size, as the original evaluation did.

Frames are resized so that their shorter side is `size` (torchvision's Resize rule: the longer side is scaled and
truncated), bilinear without antialias for images, nearest for masks; probabilities go back to the output size
bilinearly. `size` < 0 keeps each frame's own size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# The original resized image tensors with torchvision's Resize of its time, which did not antialias tensors.
RESIZE_ANTIALIAS = False


def resized_shape(height: int, width: int, shorter_side: int) -> tuple[int, int]:
    """The (H', W') the original evaluation resized to: shorter side = `shorter_side`, longer side scaled and
    truncated (torchvision's Resize rule); `shorter_side` < 0 keeps the size."""
    if shorter_side < 0:
        return height, width
    if height <= width:
        return shorter_side, int(shorter_side * width / height)
    return int(shorter_side * height / width), shorter_side


def resize_image(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (no antialias, align_corners=False) of a float 3×H×W image (any normalisation) to `shape`."""
    if tuple(image.shape[-2:]) == tuple(shape):
        return image
    return F.interpolate(image[None], size=shape, mode="bilinear", align_corners=False,
                         antialias=RESIZE_ANTIALIAS)[0]


def resize_mask(mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of an integer H×W index mask to `shape` (same dtype)."""
    if tuple(mask.shape) == tuple(shape):
        return mask
    resized = F.interpolate(mask[None, None].float(), size=shape, mode="nearest")
    return resized[0, 0].to(mask.dtype)


def resize_probabilities(prob: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of float (N+1)×H'×W' probabilities to `shape`, as the original."""
    if tuple(prob.shape[-2:]) == tuple(shape):
        return prob
    return F.interpolate(prob[None], size=shape, mode="bilinear", align_corners=False)[0]
