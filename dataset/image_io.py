"""Reading and writing frames and index masks in the benchmarks' file conventions.

Masks are single-channel index images: 0 is background, every other value is an object id. On disk they are
8-bit palette ("P" mode) PNGs as in DAVIS and YouTube-VOS; frames are RGB JPEGs. Every write goes to a temporary
file in the destination folder and is renamed into place, so a crash never leaves a half-written file behind.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from configs.common import DAVIS_PALETTE, PALETTE_COLOURS, atomic_output

MAX_MASK_ID = 255  # an 8-bit palette PNG holds ids 0..255


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a frame as RGB.

    Returns:
        uint8 array H×W×3.
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB")).copy()
    except (OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None


def read_index_mask(path: str | os.PathLike) -> tuple[np.ndarray, bytes | None]:
    """Read an index mask (palette or grayscale PNG).

    Returns:
        (mask, palette): mask uint8 H×W of object ids (0 = background); palette the file's 768-byte palette, or
        None for a grayscale file.
    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable or is not single-channel (e.g. an RGB mask).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P":
                palette = bytes(image.getpalette() or b"")
                palette = palette.ljust(3 * PALETTE_COLOURS, b"\0")[: 3 * PALETTE_COLOURS]
                return np.asarray(image).copy(), palette
            if mode in ("L", "1"):
                return np.asarray(image.convert("L")).copy(), None
    except (OSError, SyntaxError) as error:
        raise ValueError(f"cannot read mask {path}: {error}") from None
    raise ValueError(
        f"mask {path} has image mode {mode!r}; expected an indexed ('P') or grayscale ('L') PNG of object ids"
    )


def write_index_mask(path: str | os.PathLike, mask: np.ndarray, palette: bytes | None = DAVIS_PALETTE) -> None:
    """Write an index mask as an 8-bit palette PNG, atomically.

    Args:
        path: destination `.png`; parent folders are created.
        mask: integer array H×W of object ids in 0..255.
        palette: 768-byte palette; None writes a grayscale PNG.
    Raises:
        ValueError: the mask is not 2-D or holds ids outside 0..255.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask for {path} must be H×W, got shape {tuple(mask.shape)}")
    if mask.size and (mask.min() < 0 or mask.max() > MAX_MASK_ID):
        raise ValueError(f"mask for {path} holds ids {mask.min()}..{mask.max()}; a PNG mask holds 0..{MAX_MASK_ID}")
    height, width = mask.shape
    image = Image.frombytes("P" if palette is not None else "L", (width, height), mask.astype(np.uint8).tobytes())
    if palette is not None:
        image.putpalette(palette)
    with atomic_output(path) as temporary:
        image.save(temporary, format="PNG")


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write an RGB uint8 H×W×3 frame, as JPEG for `.jpg`/`.jpeg` and PNG otherwise, atomically."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"frame for {path} must be uint8 H×W×3, got {image.dtype} {tuple(image.shape)}")
    suffix = Path(path).suffix.lower()
    file_format = "JPEG" if suffix in (".jpg", ".jpeg") else "PNG"
    options = {"quality": quality} if file_format == "JPEG" else {}
    with atomic_output(path) as temporary:
        Image.fromarray(image).save(temporary, format=file_format, **options)


def read_mask_ids(path: str | os.PathLike) -> np.ndarray:
    """The uint8 H×W object ids of an index-mask file (`read_index_mask` without the palette)."""
    return read_index_mask(path)[0]
