"""Segment a whole video from its first frame's mask: the one-call entry point over `InferenceCore`.

Reading the user's frames and mask is `dataset.video_io`'s job; this module only streams them through the core.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch

from configs.schema import InferenceConfig, ModelConfig
from dataset.video_io import frames_from, read_mask
from inference.inference_core import DEFAULT_MAX_OBJECTS, InferenceCore, normalize_image
from model.network import XMem


def propagate(
    network: XMem,
    frames: str | os.PathLike | Sequence[np.ndarray],
    first_mask: str | os.PathLike | np.ndarray | torch.Tensor,
    config: InferenceConfig,
    *,
    device: str | torch.device | None = None,
    model_config: ModelConfig | None = None,
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Segment a whole video from its first frame's mask, yielding each frame's result as it is computed.

    Args:
        network: XMem in eval mode.
        frames: a folder of images (sorted by name), an .mp4/.avi/... file read with OpenCV, or a list of uint8
            H×W×3 RGB arrays.
        first_mask: index mask of the first frame: integer H×W of object ids, or a mask file read as eval.py reads
            one (`dataset.video_io.read_mask`: palette, grayscale, 16-bit or DAVIS-coloured RGB PNG; a few pixels
            off the frame's size is resized with a warning).
        config: inference settings. device / model_config / max_objects: as for `InferenceCore`.
    Yields:
        (frame index, prob float32 (N+1)×H×W on the core's device, index mask int64 H×W of object ids).
    Raises:
        FileNotFoundError / ValueError: unreadable frames or mask; a smoothed mask or more than `max_objects`
            objects (`InferenceCore.step`).
    """
    frame_iterator, num_frames = frames_from(frames)
    current = next(frame_iterator, None)
    if isinstance(first_mask, (str, os.PathLike)) and current is not None:
        first_mask = read_mask(first_mask, frame_shape=current.shape[:2])
    core = InferenceCore(network, config, device=device, num_frames=num_frames, model_config=model_config,
                         max_objects=max_objects)
    index = 0
    while current is not None:
        following = next(frame_iterator, None)  # look ahead so that the last frame is flagged `end`
        image = normalize_image(current, device=core.device)
        prob = core.step(image, first_mask if index == 0 else None, end=following is None)
        yield index, prob, core.prob_to_mask(prob)
        current, index = following, index + 1
