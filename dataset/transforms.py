"""Geometric and colour augmentations shared by the training datasets.

Geometry is expressed as 3×3 affine matrices that map *source* pixel coordinates to *output* pixel coordinates
(pixel centres at integer positions, x to the right, y down). A dataset multiplies the matrices of its whole
augmentation chain (random affine, flip, resize, crop) into one and warps each frame once: the image with bilinear
or bicubic interpolation, the mask with nearest neighbour, so image and mask always receive exactly the same
geometric transform and the image is interpolated only once. An optional backward map (the thin-plate spline of
`dataset/tps.py`) is folded into the same single `cv2.remap`.

Colour augmentations act on planar float32 3×H×W RGB images in [0, 1] (contiguous colour planes keep the per-pixel
arithmetic vectorised) and follow torchvision's ColorJitter (random order of
brightness, contrast, saturation and hue; factors uniform in [max(0, 1 - s), 1 + s], hue shift uniform in
[-h, h] of a full turn) and RandomGrayscale (ITU-R 601 luma replicated to three channels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from configs.common import IMAGENET_MEAN, IMAGENET_STD

FILL_RGB = (124, 116, 104)
"""Colour of pixels warped in from outside the source frame (the reference's `im_mean`, ImageNet mean × 255)."""
MASK_FILL = 0
"""Mask value outside the source frame: background."""

GRAYSCALE_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601 luma weights, as torchvision's rgb_to_grayscale."""
ANTIALIAS_BELOW_SCALE = 0.5
"""A warp that shrinks the frame by more than this factor first downsamples with area averaging (no aliasing)."""
HUE_FULL_TURN_DEG = 360.0
_NUM_COLOUR_OPS = 4  # brightness, contrast, saturation, hue

INTERPOLATION_FLAGS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


# ---------------------------------------------------------------------------------------------------------------
# Affine matrices (source pixel -> output pixel)


def translation_matrix(shift_x: float, shift_y: float) -> np.ndarray:
    """3×3 float64 matrix adding (shift_x, shift_y) to every point."""
    return np.array([[1.0, 0.0, shift_x], [0.0, 1.0, shift_y], [0.0, 0.0, 1.0]])


def about_point(linear: np.ndarray, centre_x: float, centre_y: float) -> np.ndarray:
    """Apply the 2×2 `linear` map around (centre_x, centre_y) instead of the origin; returns 3×3 float64."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    return translation_matrix(centre_x, centre_y) @ matrix @ translation_matrix(-centre_x, -centre_y)


def rotation_scale_shear(rotation_deg: float, scale: float, shear_x_deg: float, shear_y_deg: float = 0.0) -> np.ndarray:
    """2×2 float64 map: shear, then isotropic scale, then rotation (torchvision's RandomAffine parametrisation)."""
    angle = math.radians(rotation_deg)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    shear = np.array([[1.0, math.tan(math.radians(shear_x_deg))], [math.tan(math.radians(shear_y_deg)), 1.0]])
    return rotation @ (scale * shear)


def horizontal_flip_matrix(width: int) -> np.ndarray:
    """3×3 float64 mirror of a frame `width` pixels wide: x -> width - 1 - x."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def resize_matrix(scale_x: float, scale_y: float) -> np.ndarray:
    """3×3 float64 resize by (scale_x, scale_y) with pixel-centre alignment: x -> (x + 0.5)·scale_x - 0.5."""
    return np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5], [0.0, 0.0, 1.0]])


def crop_to_square_matrix(left: float, top: float, box_width: float, box_height: float, size: int) -> np.ndarray:
    """3×3 float64 map sending the box (left, top, box_width, box_height) of a frame onto a size×size output."""
    return resize_matrix(size / box_width, size / box_height) @ translation_matrix(-left, -top)


def linear_scale(matrix: np.ndarray) -> float:
    """Geometric-mean scale factor of a 3×3 affine matrix (sqrt of |det| of its linear part)."""
    return math.sqrt(abs(np.linalg.det(matrix[:2, :2])))


# ---------------------------------------------------------------------------------------------------------------
# Random parameters


@dataclass(frozen=True)
class AffineJitter:
    """Random rotation / scale / shear about a centre (torchvision RandomAffine without translation).

    Attributes:
        max_rotation_deg: rotation uniform in [-max_rotation_deg, max_rotation_deg] degrees.
        scale_range: isotropic scale uniform in [low, high].
        max_shear_deg: horizontal shear uniform in [-max_shear_deg, max_shear_deg] degrees (vertical shear 0).
    """

    max_rotation_deg: float = 0.0
    scale_range: tuple[float, float] = (1.0, 1.0)
    max_shear_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.max_rotation_deg < 0 or self.max_shear_deg < 0:
            raise ValueError(f"AffineJitter angles must be >= 0, got rotation {self.max_rotation_deg}, "
                             f"shear {self.max_shear_deg}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"AffineJitter.scale_range must satisfy 0 < low <= high, got {self.scale_range}")

    def sample(self, rng: np.random.Generator, centre_x: float, centre_y: float) -> np.ndarray:
        """Draw one transform; returns a 3×3 float64 matrix about (centre_x, centre_y).

        Draws exactly three numbers from `rng` whatever the settings, so that switching a jitter off does not
        shift the random stream of what follows.
        """
        rotation = rng.uniform(-self.max_rotation_deg, self.max_rotation_deg)
        scale = rng.uniform(*self.scale_range)
        shear = rng.uniform(-self.max_shear_deg, self.max_shear_deg)
        return about_point(rotation_scale_shear(rotation, scale, shear), centre_x, centre_y)


NO_AFFINE = AffineJitter()


@dataclass(frozen=True)
class ColourJitterParams:
    """One draw of `ColourJitter`: the order of the four operations and their factors (None = skipped)."""

    order: tuple[int, ...]
    brightness: float | None
    contrast: float | None
    saturation: float | None
    hue_shift: float | None

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Jitter a float32 3×H×W RGB image in [0, 1]; returns a new float32 3×H×W array in [0, 1]."""
        for operation in self.order:
            if operation == 0 and self.brightness is not None:
                image = np.clip(image * np.float32(self.brightness), 0.0, 1.0)
            elif operation == 1 and self.contrast is not None:
                mean = float(to_grayscale(image).mean())
                image = _blend(image, np.float32(mean), self.contrast)
            elif operation == 2 and self.saturation is not None:
                image = _blend(image, to_grayscale(image)[None], self.saturation)
            elif operation == 3 and self.hue_shift is not None:
                image = _shift_hue(image, self.hue_shift)
        return image


@dataclass(frozen=True)
class ColourJitter:
    """torchvision-style ColorJitter(brightness, contrast, saturation, hue); 0 switches an operation off."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation, self.hue) < 0 or self.hue > 0.5:
            raise ValueError(f"ColourJitter strengths must be >= 0 and hue <= 0.5, got {self}")

    def sample(self, rng: np.random.Generator) -> ColourJitterParams:
        """Draw the operation order and factors; always consumes the same amount of `rng`."""
        order = tuple(int(i) for i in rng.permutation(_NUM_COLOUR_OPS))
        draws = rng.uniform(size=_NUM_COLOUR_OPS)

        def factor(strength: float, draw: float) -> float | None:
            low = max(0.0, 1.0 - strength)
            return low + (1.0 + strength - low) * draw if strength > 0 else None

        hue_shift = self.hue * (2.0 * draws[3] - 1.0) if self.hue > 0 else None
        return ColourJitterParams(order, factor(self.brightness, draws[0]), factor(self.contrast, draws[1]),
                                  factor(self.saturation, draws[2]), hue_shift)


def _blend(image: np.ndarray, other: np.ndarray | np.float32, factor: float) -> np.ndarray:
    return np.clip(np.float32(factor) * image + np.float32(1.0 - factor) * other, 0.0, 1.0)


def _shift_hue(image: np.ndarray, shift_fraction: float) -> np.ndarray:
    hsv = cv2.cvtColor(cv2.merge(list(image)), cv2.COLOR_RGB2HSV)  # float input: hue in [0, 360)
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(shift_fraction * HUE_FULL_TURN_DEG), HUE_FULL_TURN_DEG)
    return np.clip(np.stack(cv2.split(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))), 0.0, 1.0)


def to_planar_float(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 RGB -> float32 3×H×W in [0, 1]."""
    return np.stack(cv2.split(image)).astype(np.float32) * np.float32(1.0 / 255.0)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Luma of a float32 3×H×W RGB image; returns float32 H×W."""
    red, green, blue = GRAYSCALE_WEIGHTS
    return np.float32(red) * image[0] + np.float32(green) * image[1] + np.float32(blue) * image[2]


def grayscale_rgb(image: np.ndarray) -> np.ndarray:
    """Replace a float32 3×H×W image by its luma in all three channels."""
    return np.repeat(to_grayscale(image)[None], 3, axis=0)


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int, scale_range: tuple[float, float],
                            aspect_range: tuple[float, float], max_attempts: int = 10) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop's box: area fraction uniform in `scale_range`, log-uniform aspect (w/h).

    Returns:
        (left, top, box_width, box_height) in pixels, inside the frame; after `max_attempts` failed draws the
        largest centred box whose aspect lies in `aspect_range`.
    """
    area = height * width
    log_low, log_high = math.log(aspect_range[0]), math.log(aspect_range[1])
    for _ in range(max_attempts):
        target_area = area * rng.uniform(*scale_range)
        aspect = math.exp(rng.uniform(log_low, log_high))
        box_width = int(round(math.sqrt(target_area * aspect)))
        box_height = int(round(math.sqrt(target_area / aspect)))
        if 0 < box_width <= width and 0 < box_height <= height:
            top = int(rng.integers(0, height - box_height + 1))
            left = int(rng.integers(0, width - box_width + 1))
            return left, top, box_width, box_height
    frame_aspect = width / height
    if frame_aspect < aspect_range[0]:
        box_width, box_height = width, int(round(width / aspect_range[0]))
    elif frame_aspect > aspect_range[1]:
        box_width, box_height = int(round(height * aspect_range[1])), height
    else:
        box_width, box_height = width, height
    return (width - box_width) // 2, (height - box_height) // 2, box_width, box_height


def random_crop_offset(rng: np.random.Generator, length: int, crop: int) -> int:
    """Offset of a random `crop`-pixel window along a `length`-pixel axis (torchvision RandomCrop, pad_if_needed).

    When the axis is shorter than the crop the offset is negative: the frame lands at a random place inside the
    window and the rest is filled.
    """
    if length >= crop:
        return int(rng.integers(0, length - crop + 1))
    return int(rng.integers(length - crop, 1))


# ---------------------------------------------------------------------------------------------------------------
# Warping


def warp_image_and_mask(image: np.ndarray, mask: np.ndarray, source_to_output: np.ndarray, output_size: int,
                        *, image_interpolation: str = "bilinear",
                        backward_map: tuple[np.ndarray, np.ndarray] | None = None,
                        image_fill: tuple[int, int, int] = FILL_RGB) -> tuple[np.ndarray, np.ndarray]:
    """Warp a frame and its mask with one geometric transform onto a square output.

    Args:
        image: uint8 H×W×3 RGB frame.
        mask: uint8 H×W index mask (0 = background), same H×W as `image`.
        source_to_output: 3×3 affine matrix from source pixel coordinates to output pixel coordinates.
        output_size: S, the side of the square output.
        image_interpolation: 'bilinear', 'bicubic' or 'nearest' for the image; the mask is always nearest.
        backward_map: optional (map_x, map_y), float32 S×S each: for every output pixel, the position in the
            affine output it is read from (e.g. a thin-plate spline, `dataset.tps.random_tps_backward_map`).
        image_fill: RGB colour of pixels that come from outside the source frame (masks get 0).
    Returns:
        (image uint8 S×S×3, mask uint8 S×S).
    Raises:
        ValueError: unknown interpolation or image/mask sizes that differ.
    """
    if image_interpolation not in INTERPOLATION_FLAGS:
        raise ValueError(f"image_interpolation must be one of {sorted(INTERPOLATION_FLAGS)}, "
                         f"got {image_interpolation!r}")
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image is {image.shape[1]}×{image.shape[0]} but its mask is "
                         f"{mask.shape[1]}×{mask.shape[0]}; they must be the same size")
    scale = linear_scale(source_to_output)
    if scale < ANTIALIAS_BELOW_SCALE:
        image, mask, source_to_output = _downsample_first(image, mask, source_to_output, scale)
    flags = INTERPOLATION_FLAGS[image_interpolation]
    fill = tuple(float(c) for c in image_fill)
    if backward_map is None:
        affine = source_to_output[:2].astype(np.float64)
        size = (output_size, output_size)
        warped_image = cv2.warpAffine(image, affine, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=fill)
        warped_mask = cv2.warpAffine(mask, affine, size, flags=cv2.INTER_NEAREST,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=MASK_FILL)
        return warped_image, warped_mask
    output_to_source = np.linalg.inv(source_to_output)
    map_x, map_y = backward_map
    source_x = (output_to_source[0, 0] * map_x + output_to_source[0, 1] * map_y + output_to_source[0, 2])
    source_y = (output_to_source[1, 0] * map_x + output_to_source[1, 1] * map_y + output_to_source[1, 2])
    source_x = source_x.astype(np.float32)
    source_y = source_y.astype(np.float32)
    warped_image = cv2.remap(image, source_x, source_y, flags, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    warped_mask = cv2.remap(mask, source_x, source_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=MASK_FILL)
    return warped_image, warped_mask


def _downsample_first(image: np.ndarray, mask: np.ndarray, source_to_output: np.ndarray,
                      scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-average the frame down by `scale` (nearest for the mask) and correct the matrix accordingly."""
    height, width = mask.shape
    small_width = max(1, int(round(width * scale)))
    small_height = max(1, int(round(height * scale)))
    image = cv2.resize(image, (small_width, small_height), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (small_width, small_height), interpolation=cv2.INTER_NEAREST)
    to_small = resize_matrix(small_width / width, small_height / height)
    return image, mask, source_to_output @ np.linalg.inv(to_small)


# ---------------------------------------------------------------------------------------------------------------
# Tensors


def to_normalised_tensor(image: np.ndarray) -> torch.Tensor:
    """float32 3×H×W RGB in [0, 1] -> float32 3×H×W torch tensor, ImageNet-normalised."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    inverse_std = (1.0 / np.asarray(IMAGENET_STD, dtype=np.float32))[:, None, None]
    return torch.from_numpy((image - mean) * inverse_std)


def colour_and_normalise(warped: np.ndarray, sequence_colour: ColourJitterParams, grayscale: bool,
                         frame_colour: ColourJitter, rng: np.random.Generator) -> torch.Tensor:
    """The colour end of every training frame: shared jitter, optional grayscale, per-frame jitter, normalisation.

    Args:
        warped: uint8 H×W×3 frame after its geometric warp.
        sequence_colour: the jitter drawn once per clip. grayscale: the clip's grayscale draw.
        frame_colour: the per-frame jitter distribution, sampled from `rng` here (after the geometric draws, so the
            random stream keeps the datasets' order).
    Returns:
        float32 3×H×W, ImageNet-normalised.
    """
    colour = sequence_colour.apply(to_planar_float(warped))
    if grayscale:
        colour = grayscale_rgb(colour)
    return to_normalised_tensor(frame_colour.sample(rng).apply(colour))


def denormalise(image: torch.Tensor) -> np.ndarray:
    """Inverse of `to_normalised_tensor` for one frame: float32 3×H×W -> float32 H×W×3 in [0, 1] (for checks)."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    return image.numpy().transpose(1, 2, 0) * std + mean
