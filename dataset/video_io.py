"""The one reader of a user's video and masks, for `inference.propagate` and eval.py's benchmarks alike: frame
folders, video files, frame lists, and mask files (palette, grayscale, 16-bit or DAVIS-coloured RGB PNGs).

Frames come out as uint8 H×W×3 RGB arrays, one at a time (a long video is never held in memory); masks as int64
H×W arrays of object ids (0 = background). A mask a few pixels off its frame's size is resized with a warning,
an unreadable file fails with its name. Benchmarks' folder layouts are in dataset/eval_datasets.py.

Example:

    >>> import numpy as np
    >>> frames, count = frames_from([np.zeros((4, 6, 3), dtype=np.uint8)] * 2)
    >>> count, next(frames).shape
    (2, (4, 6, 3))
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image

from configs.common import DAVIS_PALETTE, PALETTE_COLOURS
from dataset.image_io import read_image, read_index_mask

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
WIDE_MASK_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16/32-bit grayscale PNGs: ids are read, checked, narrowed
# A mask whose height and width are each within this many pixels of its frame's is resized (nearest) with a
# warning: DAVIS has 853-px-wide masks for 854-px frames. Anything further off is an error.
MAX_MASK_SIZE_MISMATCH_PX = 4
MAX_OBJECT_ID = PALETTE_COLOURS - 1  # result masks are 8-bit palette PNGs
# Smoothing a mask (bilinear resizing, anti-aliased drawing, JPEG-like saving) turns the edge between objects a and b
# into thin bands of in-between values, each of which would run as an object. An id is such an edge band when
# nearly all its pixels have two other ids within EDGE_BAND_RADIUS_PX; a mask is refused when at least
# MIN_EDGE_BAND_IDS of its ids, and at least half of them, are edge bands. A real object, however thin, touches at
# most its surroundings on one side and the object it overlaps, so it stays below the fraction over its length.
EDGE_BAND_RADIUS_PX = 2
EDGE_BAND_PIXEL_FRACTION = 0.9
MIN_EDGE_BAND_IDS = 3


def read_mask(path: str | os.PathLike, frame_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The object ids of a mask file for the Python API (see `read_mask_any`; ids of any size, 16-bit masks
    included), at the frame's size when `frame_shape` is given (see `match_mask_to_frame`): int64 H×W, 0 =
    background."""
    mask, _ = read_mask_any(Path(path), max_object_id=None)
    if frame_shape is not None:
        mask = match_mask_to_frame(mask, frame_shape, Path(path))
    return mask.astype(np.int64)


def read_mask_any(path: Path, *, max_object_id: int | None = MAX_OBJECT_ID) -> tuple[np.ndarray, Optional[bytes]]:
    """Read an index mask; an RGB(A) mask is converted when each of its colours is a DAVIS palette colour.

    Args:
        path: a palette, grayscale, 16/32-bit grayscale or RGB(A) PNG.
        max_object_id: the largest id allowed in a 16/32-bit mask (eval.py writes 8-bit result PNGs); None = any.
    Returns:
        (mask H×W of object ids, palette): uint8 ids (int64 for a wide mask when max_object_id is None or above
        255); the file's palette, DAVIS_PALETTE for a converted RGB mask, None for a grayscale mask.
    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, an RGB mask with a colour that is not in the palette, or an id above max_object_id.
    """
    try:
        return read_index_mask(path)
    except ValueError:
        with Image.open(path) as image:
            if image.mode in WIDE_MASK_MODES:
                return _wide_to_index(np.asarray(image), path, max_object_id), None
            if image.mode not in ("RGB", "RGBA"):
                raise
            rgb = np.asarray(image.convert("RGB"))
    return _rgb_to_index(rgb, path), DAVIS_PALETTE


def edge_band_ids(mask: np.ndarray) -> list[int]:
    """The ids of an index mask that are only thin bands between two other ids (the signature of smoothing).

    Args:
        mask: integer H×W of object ids (0 = background, never counted as a band).
    Returns:
        the ids (ascending) of which at least EDGE_BAND_PIXEL_FRACTION of the pixels have two different other ids
        within EDGE_BAND_RADIUS_PX (a (2r+1)² window).
    """
    mask = np.asarray(mask)
    height, width = mask.shape
    radius = EDGE_BAND_RADIUS_PX
    labels = mask.astype(np.int64)
    padded = np.pad(labels, radius, mode="edge")
    # The smallest and largest neighbouring id other than the pixel's own: two different ones exist where they differ.
    smallest = np.full(labels.shape, np.iinfo(np.int64).max)
    largest = np.full(labels.shape, np.iinfo(np.int64).min)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            neighbour = padded[dy:dy + height, dx:dx + width]
            other = neighbour != labels
            smallest = np.where(other, np.minimum(smallest, neighbour), smallest)
            largest = np.where(other, np.maximum(largest, neighbour), largest)
    between = smallest < largest
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    pixels = np.bincount(inverse.ravel(), minlength=len(ids))
    pixels_between = np.bincount(inverse[between], minlength=len(ids))
    return [int(object_id) for object_id, total, inside in zip(ids, pixels, pixels_between)
            if object_id != 0 and inside >= EDGE_BAND_PIXEL_FRACTION * total]


def check_index_mask(mask: np.ndarray, source: str) -> None:
    """Refuse a mask whose ids are mostly edge bands of other ids (`edge_band_ids`): a smoothed mask, not an index
    mask of objects.

    Args:
        mask: integer H×W of object ids.
        source: what the mask is, for the message (e.g. `mask path/00000.png`).
    Raises:
        ValueError: the mask looks smoothed (one line naming `source`, the band ids and what to do).
    """
    present = np.unique(np.asarray(mask))
    num_ids = int(np.count_nonzero(present))
    if num_ids < MIN_EDGE_BAND_IDS:
        return
    bands = edge_band_ids(mask)
    if len(bands) >= MIN_EDGE_BAND_IDS and 2 * len(bands) >= num_ids:
        shown = ", ".join(map(str, bands[:5])) + (", ..." if len(bands) > 5 else "")
        raise ValueError(
            f"{source} is not an index mask of objects: {len(bands)} of its {num_ids} ids ({shown}) are only thin "
            "bands along the edges of other ids, as smoothing (bilinear resizing, anti-aliasing) makes; save the "
            "mask without smoothing (nearest-neighbour resizing, an indexed PNG of object ids)"
        )


def _wide_to_index(ids: np.ndarray, path: Path, max_object_id: int | None) -> np.ndarray:
    """A 16/32-bit grayscale mask's ids, or a one-line error when an id exceeds `max_object_id`."""
    largest = int(ids.max()) if ids.size else 0
    if ids.size and int(ids.min()) < 0:
        raise ValueError(f"mask {path} holds a negative object id; ids are 0 (background) or positive integers")
    if max_object_id is None or max_object_id > MAX_OBJECT_ID:
        return ids.astype(np.int64)
    if largest > max_object_id:
        raise ValueError(
            f"mask {path} holds object id {largest} (a 16-bit mask); result masks are 8-bit PNGs of ids "
            f"0..{max_object_id}: renumber the video's objects to 1..{max_object_id} before evaluating it"
        )
    return ids.astype(np.uint8)


def _rgb_to_index(rgb: np.ndarray, path: Path) -> np.ndarray:
    """Map each colour of an H×W×3 mask to its (first) index in the DAVIS palette."""
    palette = np.frombuffer(DAVIS_PALETTE, dtype=np.uint8).reshape(PALETTE_COLOURS, 3).astype(np.int64)
    palette_codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    pixels = rgb.astype(np.int64)
    codes = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    colours, inverse = np.unique(codes, return_inverse=True)
    code_to_index = {int(code): index for index, code in reversed(list(enumerate(palette_codes)))}
    unknown = [int(code) for code in colours if int(code) not in code_to_index]
    if unknown:
        shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in unknown[:3])
        raise ValueError(
            f"mask {path} is an RGB image with colours that are not in the DAVIS palette ({shown}); save masks as "
            f"indexed ('P') PNGs of object ids, or colour them with the DAVIS palette"
        )
    lookup = np.array([code_to_index[int(code)] for code in colours], dtype=np.uint8)
    return lookup[inverse.reshape(codes.shape)]


def match_mask_to_frame(mask: np.ndarray, frame_shape: tuple[int, int], path: Path) -> np.ndarray:
    """Return `mask` at the frame's size: unchanged, nearest-resized with a warning when a few pixels off.

    Args:
        mask: uint8 H'×W' object ids.
        frame_shape: (H, W) of the frame.
        path: the mask file, for messages.
    Raises:
        ValueError: the sizes differ by more than MAX_MASK_SIZE_MISMATCH_PX in height or width.
    """
    if mask.shape == tuple(frame_shape):
        return mask
    (mask_h, mask_w), (frame_h, frame_w) = mask.shape, frame_shape
    if abs(mask_h - frame_h) > MAX_MASK_SIZE_MISMATCH_PX or abs(mask_w - frame_w) > MAX_MASK_SIZE_MISMATCH_PX:
        raise ValueError(
            f"mask {path} is {mask_w}x{mask_h} but its frame is {frame_w}x{frame_h}; a mask must match its frame "
            f"(within {MAX_MASK_SIZE_MISMATCH_PX} px)"
        )
    warnings.warn(f"mask {path} is {mask_w}x{mask_h}, its frame {frame_w}x{frame_h}: resized (nearest) to match",
                  stacklevel=2)
    return _nearest_resize(mask, (frame_h, frame_w))


def _nearest_resize(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest resize of an H×W mask to `shape`, picking the pixels torch's `interpolate(mode="nearest")` picks
    (source index floor(i · in/out) in float32, clamped), so results do not depend on which of the two ran."""
    rows, cols = (np.minimum(np.floor(np.arange(out, dtype=np.float32) * (np.float32(size) / np.float32(out)))
                             .astype(np.int64), size - 1)
                  for size, out in zip(mask.shape, shape))
    return mask[rows[:, None], cols[None, :]]


def frames_from(frames: str | os.PathLike | Sequence[np.ndarray]) -> tuple[Iterator[np.ndarray], int | None]:
    """(iterator over uint8 H×W×3 RGB frames, number of frames if known) for a folder, video file or list.

    Args:
        frames: a folder of images (read in name order), a video file read with OpenCV, or a list of uint8 H×W×3
            RGB arrays.
    Raises:
        FileNotFoundError: an empty folder, or a path that is neither a folder nor a video file.
        ValueError: a video file OpenCV cannot open.
    """
    if not isinstance(frames, (str, os.PathLike)):
        frame_list = list(frames)
        return iter(frame_list), len(frame_list)
    path = Path(frames)
    if path.is_dir():
        files = sorted(file for file in path.iterdir() if file.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return (read_image(file) for file in files), len(files)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return _read_video(path)
    raise FileNotFoundError(f"{path}: not a frame folder or a video file ({', '.join(VIDEO_SUFFIXES)})")


def _read_video(path: Path) -> tuple[Iterator[np.ndarray], int | None]:
    import cv2  # only video files need OpenCV

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: OpenCV cannot open this video; re-encode it as H.264 .mp4")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def read() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return read(), count
