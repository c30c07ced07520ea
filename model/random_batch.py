"""Random inputs for timing or checking a training step without data: a batch of random frames and masks shaped like
the training sets' samples, and the default config with stage 3 set to that clip shape."""
from __future__ import annotations

import dataclasses

import torch

from configs.schema import Config


def random_batch(batch_size: int, num_frames: int, crop: int, num_objects: int,
                 generator: torch.Generator) -> dict:
    """A training batch of random normalised frames and random masks of `num_objects` objects (B = batch_size,
    T = num_frames, S = crop): rgb B×T×3×S×S, first_frame_gt B×1×O×S×S, cls_gt B×T×1×S×S, selector B×O."""
    class_maps = torch.randint(0, num_objects + 1, (batch_size, num_frames, 1, crop, crop), generator=generator)
    first_frame_gt = torch.stack([(class_maps[:, 0, 0] == slot + 1).float() for slot in range(num_objects)], 1)
    return {
        "rgb": torch.randn(batch_size, num_frames, 3, crop, crop, generator=generator),
        "first_frame_gt": first_frame_gt.unsqueeze(1),
        "cls_gt": class_maps,
        "selector": torch.ones(batch_size, num_objects),
        "info": {"num_objects": torch.full((batch_size,), num_objects)},
    }


def stage3_config(batch_size: int, num_frames: int, num_ref_frames: int, *, use_amp: bool) -> Config:
    """The default config with stage 3 set to the timed clip shape."""
    config = Config()
    stage3 = dataclasses.replace(config.train.stage3, batch_size=batch_size, num_frames=num_frames,
                                 num_ref_frames=num_ref_frames)
    return dataclasses.replace(config, train=dataclasses.replace(config.train, stage3=stage3, use_amp=use_amp))
