"""Stage-0 training data: pseudo-videos made from static images with masks (reference StaticTransformDataset).

Each sample turns one image into a clip of `num_frames` (3) frames: a random affine (scale 0.8-1.5), horizontal
flip, colour jitter and grayscale drawn once and shared by all frames, then per frame a random affine (rotation
±20°, scale 0.9-1.1, shear ±10°), a resize of the shorter side to the crop size, a random crop (padding with
FILL_RGB where the frame is too small), a thin-plate-spline warp with probability 0.33, and a light colour
jitter. The whole geometric chain of a frame is one matrix (plus the spline's map), applied once to the image
(bicubic) and once to the mask (nearest), so image and mask agree exactly.

Differences from the reference that do not change the distribution of the augmentation: the image is interpolated
once instead of after every step; colour jitter is applied after the geometry (it is per-pixel, but its contrast
mean is taken over the final crop and pixels filled by the affine are jittered as well); the reference's unused
multi-object pasting path is not implemented (stage 0 is single-object).

Sources under the reference's `static_root` and their repeat multipliers: fss (FSS-1000, class folders) ×1,
DUTS-TR ×1, DUTS-TE ×1, ecssd ×1, BIG_small ×5, HRSOD_small ×5.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset.image_io import read_image
from dataset.layout_check import list_static_images, require_directory
from dataset.sampling import sample_rng, stream_id
from dataset.tps import TPS_DISPLACEMENT_STD, TPS_NUM_CONTROL_POINTS, TPS_PROBABILITY, random_tps_backward_map
from dataset.transforms import (AffineJitter, ColourJitter, colour_and_normalise, crop_to_square_matrix,
                                horizontal_flip_matrix, random_crop_offset, resize_matrix,
                                warp_image_and_mask)

STATIC_NUM_FRAMES = 3
DEFAULT_CROP_SIZE = 384
FOREGROUND_THRESHOLD = 127
"""Saliency masks are 0/255 greyscale with soft edges: a pixel is object where its brightest channel exceeds this."""
STATIC_MAX_OBJECTS = 1
_STREAM_NAME = "static"

REFERENCE_STATIC_SOURCES = (
    ("fss", "class_folders", 1),
    ("DUTS-TR", "flat", 1),
    ("DUTS-TE", "flat", 1),
    ("ecssd", "flat", 1),
    ("BIG_small", "flat", 5),
    ("HRSOD_small", "flat", 5),
)
"""(folder under static_root, layout, multiplier) of the reference's stage-0 mix."""


@dataclass(frozen=True)
class StaticSource:
    """One folder of images with masks.

    Attributes:
        root: the folder.
        layout: 'flat' (`x.jpg + x.png`) or 'class_folders' (`<class>/x.jpg + x.png`, FSS-1000).
        multiplier: each image appears this many times per epoch.
    """

    root: Path
    layout: str = "flat"
    multiplier: int = 1

    def __post_init__(self) -> None:
        if self.multiplier < 1:
            raise ValueError(f"StaticSource multiplier must be >= 1, got {self.multiplier} for {self.root}")


def reference_static_sources(static_root: str | os.PathLike) -> list[StaticSource]:
    """The reference's six stage-0 sources under `static_root` (see REFERENCE_STATIC_SOURCES).

    Raises:
        FileNotFoundError: `static_root` is not a directory.
    """
    static_root = require_directory(static_root, "static image root (fss/, DUTS-TR/, DUTS-TE/, ecssd/, BIG_small/, "
                                                 "HRSOD_small/)")
    return [StaticSource(static_root / folder, layout, multiplier)
            for folder, layout, multiplier in REFERENCE_STATIC_SOURCES]


@dataclass(frozen=True)
class StaticAugmentation:
    """The stage-0 augmentation; defaults are the reference's.

    Attributes:
        sequence_affine: random affine shared by all frames of a clip.
        flip_probability: probability of a horizontal flip (shared).
        sequence_colour: colour jitter shared by all frames.
        grayscale_probability: probability of turning the whole clip grey.
        frame_affine: random affine drawn per frame.
        frame_colour: colour jitter drawn per frame.
        tps_probability: per-frame probability of a thin-plate-spline warp.
        tps_control_points: control points of that warp.
        tps_displacement_std: std of their displacement, in units of the frame size.
        image_interpolation: 'bicubic' (reference) or 'bilinear'; masks always use nearest.
    """

    sequence_affine: AffineJitter = AffineJitter(scale_range=(0.8, 1.5))
    flip_probability: float = 0.5
    sequence_colour: ColourJitter = ColourJitter(0.1, 0.05, 0.05, 0.05)
    grayscale_probability: float = 0.05
    frame_affine: AffineJitter = AffineJitter(max_rotation_deg=20.0, scale_range=(0.9, 1.1), max_shear_deg=10.0)
    frame_colour: ColourJitter = ColourJitter(0.1, 0.05, 0.05, 0.0)
    tps_probability: float = TPS_PROBABILITY
    tps_control_points: int = TPS_NUM_CONTROL_POINTS
    tps_displacement_std: float = TPS_DISPLACEMENT_STD
    image_interpolation: str = "bicubic"


class StaticImageDataset(Dataset):
    """Single-object pseudo-video clips from static images (training stage 0).

    Every sample is a dict (collated by torch's default_collate), S = crop_size, T = num_frames:
        rgb: float32 T×3×S×S, ImageNet-normalised.
        first_frame_gt: float32 1×1×S×S, 1 on the object in frame 0.
        cls_gt: int64 T×1×S×S, 1 on the object, 0 elsewhere (all 0 if the object left frame 0's crop).
        selector: float32 1, [1.0].
        info: {'name': image path, 'num_objects': 1, 'frames': [image file name] × T}.

    Randomness comes only from (seed, epoch, index): call `set_epoch` before iterating over each epoch (with
    non-persistent DataLoader workers, which copy the dataset when an iteration starts).

    Example:
        >>> data = StaticImageDataset(reference_static_sources("../static"), crop_size=384, seed=0)
        >>> data.set_epoch(3); clip = data[17]
    """

    def __init__(self, sources: Sequence[StaticSource], *, num_frames: int = STATIC_NUM_FRAMES,
                 crop_size: int = DEFAULT_CROP_SIZE, seed: int = 0,
                 augmentation: StaticAugmentation = StaticAugmentation()) -> None:
        """
        Args:
            sources: image folders and their multipliers (`reference_static_sources(static_root)` for the
                reference mix).
            num_frames: frames per clip (T).
            crop_size: side S of the square output frames.
            seed: the run's seed.
            augmentation: augmentation parameters.
        Raises:
            ValueError: no source, num_frames < 1, crop_size < 1, or a source without images.
            FileNotFoundError: a missing source folder or an image without its mask.
        """
        if not sources:
            raise ValueError("StaticImageDataset needs at least one StaticSource")
        if num_frames < 1 or crop_size < 1:
            raise ValueError(f"num_frames and crop_size must be >= 1, got {num_frames} and {crop_size}")
        self.num_frames = num_frames
        self.crop_size = crop_size
        self.seed = seed
        self.augmentation = augmentation
        self.epoch = 0
        self.images: list[Path] = []
        for source in sources:
            self.images.extend(list_static_images(source.root, source.layout) * source.multiplier)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations of `epoch` (every epoch draws new ones)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> dict:
        """Sample `index` as drawn in `epoch`; a pure function of (seed, epoch, index). See the class docstring."""
        if not 0 <= index < len(self.images):
            raise IndexError(f"sample index {index} out of range for {len(self.images)} images")
        rng = sample_rng(self.seed, stream_id(_STREAM_NAME), epoch, index)
        path = self.images[index]
        image = read_image(path)
        mask = (read_image(path.with_suffix(".png")).max(axis=2) > FOREGROUND_THRESHOLD).astype(np.uint8)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask {path.with_suffix('.png')} is {mask.shape[1]}×{mask.shape[0]} but its image is "
                             f"{image.shape[1]}×{image.shape[0]}")
        frames, masks = self._augment(rng, image, mask)
        cls_gt = torch.from_numpy(np.stack(masks)).to(torch.int64).unsqueeze(1)
        if not cls_gt[0].any():
            cls_gt.zero_()
        return {
            "rgb": torch.stack(frames),
            "first_frame_gt": (cls_gt[0] == 1).to(torch.float32).unsqueeze(0),
            "cls_gt": cls_gt,
            "selector": torch.ones(STATIC_MAX_OBJECTS),
            "info": {"name": str(path), "num_objects": STATIC_MAX_OBJECTS, "frames": [path.name] * self.num_frames},
        }

    def _augment(self, rng: np.random.Generator, image: np.ndarray,
                 mask: np.ndarray) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        augmentation = self.augmentation
        height, width = mask.shape
        centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
        shared = augmentation.sequence_affine.sample(rng, centre_x, centre_y)
        if rng.uniform() < augmentation.flip_probability:
            shared = horizontal_flip_matrix(width) @ shared
        sequence_colour = augmentation.sequence_colour.sample(rng)
        grayscale = rng.uniform() < augmentation.grayscale_probability
        # The per-frame affine keeps the frame size; the shorter side is then resized to the crop size.
        long_side = int(self.crop_size * max(height, width) / min(height, width))
        resized_width, resized_height = (long_side, self.crop_size) if height <= width else (self.crop_size, long_side)
        to_resized = resize_matrix(resized_width / width, resized_height / height)

        frames, masks = [], []
        for _ in range(self.num_frames):
            frame_affine = augmentation.frame_affine.sample(rng, centre_x, centre_y)
            left = random_crop_offset(rng, resized_width, self.crop_size)
            top = random_crop_offset(rng, resized_height, self.crop_size)
            crop = crop_to_square_matrix(left, top, self.crop_size, self.crop_size, self.crop_size)
            tps_map = None
            if rng.uniform() < augmentation.tps_probability:
                tps_map = random_tps_backward_map(rng, self.crop_size, self.crop_size,
                                                  augmentation.tps_control_points, augmentation.tps_displacement_std)
            source_to_output = crop @ to_resized @ frame_affine @ shared
            warped, warped_mask = warp_image_and_mask(image, mask, source_to_output, self.crop_size,
                                                      image_interpolation=augmentation.image_interpolation,
                                                      backward_map=tps_map)
            frames.append(colour_and_normalise(warped, sequence_colour, grayscale, augmentation.frame_colour, rng))
            masks.append(warped_mask)
        return frames, masks
