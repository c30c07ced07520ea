"""The streaming core reproduces the original XMem's per-frame outputs and memory sizes (golden fixtures).

inference_golden_{small_memory,defaults}.npz were recorded by the original implementation with the recipe
checkpoint on tests/fixtures/inference_video (60 frames, 96×160, two objects; see tests/fixtures/README.md).
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs.schema import InferenceConfig
from inference.inference_core import InferenceCore, normalize_image

FIXTURES = Path(__file__).parent / "fixtures"
VIDEO = FIXTURES / "inference_video"
PROB_TOLERANCE = 2e-3  # the goldens store probabilities as float16
GOLDEN_CONFIGS = {
    "small_memory": InferenceConfig(
        max_working_frames=4, min_working_frames=2, num_prototypes=16, max_long_term_elements=70, mem_every=2
    ),
    "defaults": InferenceConfig(),
}


def _video() -> tuple[list[np.ndarray], np.ndarray]:
    frames = [np.asarray(Image.open(path).convert("RGB")) for path in sorted((VIDEO / "JPEGImages/vid00").glob("*.jpg"))]
    first_mask = np.asarray(Image.open(VIDEO / "Annotations/vid00/00000.png")).astype(np.int64)
    return frames, first_mask


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GOLDEN_CONFIGS))
def test_streaming_core_matches_the_original(name, recipe_network):
    golden = np.load(FIXTURES / f"inference_golden_{name}.npz")
    frames, first_mask = _video()
    assert len(frames) == len(golden["wm_size"]) == 60
    core = InferenceCore(recipe_network, GOLDEN_CONFIGS[name], num_frames=len(frames))
    compared = 0
    for index, rgb in enumerate(frames):
        prob = core.step(normalize_image(rgb), first_mask if index == 0 else None, end=index == len(frames) - 1)
        sizes = (core.working_memory_elements, core.long_term_memory_elements)
        assert sizes == (golden["wm_size"][index], golden["lt_size"][index]), f"frame {index}"
        key = f"prob_{index:05d}"
        if key in golden:
            reference = golden[key].astype(np.float32)
            assert prob.shape == reference.shape
            error = np.abs(prob.numpy() - reference).max()
            assert error < PROB_TOLERANCE, f"frame {index}: max |Δprob| = {error}"
            compared += 1
    assert compared == 21
    assert core.object_ids == [1, 2]
