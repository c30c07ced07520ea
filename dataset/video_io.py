"""Reading a user's video and first mask for `inference.propagate`: frame folders, video files, frame lists and
index-mask files.

Frames come out as uint8 H×W×3 RGB arrays, one at a time (a long video is never held in memory); masks as int64
H×W arrays of object ids (0 = background). Benchmarks have their own layouts and readers (dataset/eval_datasets.py).

Example:

    >>> import numpy as np
    >>> frames, count = frames_from([np.zeros((4, 6, 3), dtype=np.uint8)] * 2)
    >>> count, next(frames).shape
    (2, (4, 6, 3))
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from dataset.image_io import read_image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
INDEX_MASK_MODES = ("P", "L", "I", "I;16")  # palette, 8-bit and 16/32-bit grayscale: one object id per pixel


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """An index mask file (palette or grayscale PNG) as int64 H×W object ids.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a single-channel index image (e.g. an RGB mask).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found; pass an index PNG of object ids (0 = background)")
    with Image.open(path) as image:
        if image.mode not in INDEX_MASK_MODES:
            raise ValueError(f"{path}: expected an index (palette or grayscale) PNG mask, got mode {image.mode}")
        return np.asarray(image).astype(np.int64)


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
