"""The streaming goldens of tests/fixtures/README.md: the settings they were recorded with, and their video reader.

The original implementation recorded `inference_golden_{name}.npz` with the recipe checkpoint
(`model.recipe_checkpoint`) on the 60-frame video `inference_video/` under the settings `GOLDEN_CONFIGS[name]`.
The tests and scripts/cuda/check_cuda.py both replay them, so this lives in the package (scripts must not import
tests/); the fixture files themselves stay in tests/fixtures of a checkout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from configs.schema import InferenceConfig

GOLDEN_CONFIGS = {
    "small_memory": InferenceConfig(
        max_working_frames=4, min_working_frames=2, num_prototypes=16, max_long_term_elements=70, mem_every=2
    ),
    "defaults": InferenceConfig(),
}
"""golden name -> the inference settings it was recorded with (float32, CPU)."""
GOLDEN_VIDEO_NAME = "vid00"


def read_golden_video(video_root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames and first mask of a golden video folder (`JPEGImages/vid00/*.jpg`, `Annotations/vid00/00000.png`).

    Returns:
        (frames: uint8 H×W×3 RGB each, in name order; first mask: int64 H×W of object ids, 0 = background).
    Raises:
        FileNotFoundError: the folder has no frames (e.g. an installed package without the test fixtures).
    """
    paths = sorted((video_root / "JPEGImages" / GOLDEN_VIDEO_NAME).glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no golden frames in {video_root / 'JPEGImages' / GOLDEN_VIDEO_NAME}; the goldens "
                                f"come with a checkout of the repository (tests/fixtures)")
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    first_mask = np.asarray(Image.open(video_root / "Annotations" / GOLDEN_VIDEO_NAME / "00000.png")).astype(np.int64)
    return frames, first_mask
