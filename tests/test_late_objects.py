"""Objects that enter after the first frame: the original's golden run, and permanent annotation memory.

The frame that introduces an object (its first annotation) stays in working memory, keys and values aligned,
while the object is tracked; at most `max_permanent_frames` such frames stay (beyond that the oldest later one is
consolidated; frame 0's never is), removing the last object a frame introduced releases it, and
`permanent_annotations=False` keeps only the first memory frame (the original's rule). Long runs use
`MemoryManager` directly with synthetic keys and values; the golden run uses the recipe network
(tests/fixtures/README.md).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from configs.schema import InferenceConfig, ModelConfig
from inference.inference_core import InferenceCore, normalize_image
from inference.memory_manager import MemoryManager
from inference.object_manager import SlotRemap

FIXTURES = Path(__file__).parent / "fixtures"
LATE_VIDEO = FIXTURES / "inference_video_late"
PROB_TOLERANCE = 2e-3  # the goldens store probabilities as float16
KEY_DIM, VALUE_DIM = 64, 16
FEATURE_SIZE = (2, 3)
ELEMENTS = FEATURE_SIZE[0] * FEATURE_SIZE[1]


# ----------------------------------------------------------------------------------------------- golden
@pytest.mark.slow
def test_late_object_matches_the_original(recipe_network):
    """Object 3 is given alone on frame 15 (YouTube-VOS style); no consolidation in 45 frames, so the original's
    late-object path is exact: the new object reads only memory written since frame 15."""
    golden = np.load(FIXTURES / "inference_golden_late_object.npz")
    paths = sorted((LATE_VIDEO / "JPEGImages/vid00").glob("*.jpg"))
    annotations = {
        int(path.stem): np.asarray(Image.open(path)).astype(np.int64)
        for path in sorted((LATE_VIDEO / "Annotations/vid00").glob("*.png"))
    }
    assert len(paths) == len(golden["wm_size"]) == 45 and sorted(annotations) == [0, 15]
    core = InferenceCore(recipe_network, InferenceConfig(), num_frames=len(paths))
    compared = 0
    for index, path in enumerate(paths):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        prob = core.step(normalize_image(rgb), annotations.get(index), end=index == len(paths) - 1)
        assert prob.shape[0] == (3 if index < 15 else 4), f"frame {index}"
        sizes = (core.working_memory_elements, core.long_term_memory_elements)
        assert sizes == (golden["wm_size"][index], golden["lt_size"][index]), f"frame {index}"
        key = f"prob_{index:05d}"
        if key in golden:
            error = np.abs(prob.numpy() - golden[key].astype(np.float32)).max()
            assert error < PROB_TOLERANCE, f"frame {index}: max |Δprob| = {error}"
            compared += 1
    assert compared == 18
    assert core.object_ids == [1, 2, 3]
    assert core.memory.permanent_frames == [0, 3]  # memory frames 0 (frame 0) and 3 (frame 15)


# ----------------------------------------------------------------------------------------------- long videos
LONG_CONFIG = InferenceConfig(  # T_max − T_min = 4 ≥ the default cap of 3 permanent frames
    max_working_frames=6, min_working_frames=2, num_prototypes=4, max_long_term_elements=24, top_k=1,
    long_term_count_usage="on",
)
VIDEO_FRAMES, MEM_EVERY = 600, 5
ENTRIES = {"a": 0, "b": 40, "c": 200, "d": 450}  # object → the video frame that introduces it
REANNOTATED_FRAME = 101  # an off-schedule memory frame re-annotating a known object: never permanent


def _manager(config: InferenceConfig) -> MemoryManager:
    manager = MemoryManager(config, model_config=ModelConfig(), hidden_dim=0, count_long_term_usage=True)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float32)
    return manager


def _run_long_video(config: InferenceConfig, removals: dict[int, str]):
    """Stream VIDEO_FRAMES frames through the manager: read every frame, write every MEM_EVERY-th and on entries.

    Returns (manager, tracked object names in slot order, {object: (memory frame, keys n×C^k, values n×C^v) of
    its introducing frame}, {video frame: memory frame} of every memory frame).
    """
    generator = torch.Generator().manual_seed(0)
    manager = _manager(config)
    tracked: list[str] = []
    introduced, memory_frames = {}, {}
    for frame in range(VIDEO_FRAMES):
        if frame in removals.values():
            gone = [name for name, when in removals.items() if when == frame]
            manager.keep_objects(SlotRemap(tuple(slot for slot, name in enumerate(tracked) if name not in gone)))
            tracked = [name for name in tracked if name not in gone]
        key = torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
        selection = torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
        if manager.working_elements > 0:
            assert torch.isfinite(manager.read(key, selection)).all()
        entering = [name for name, when in ENTRIES.items() if when == frame]
        manager.add_objects(len(entering))
        tracked += entering
        if frame % MEM_EVERY == 0 or entering or frame == REANNOTATED_FRAME:
            shrinkage = 1 + torch.rand(1, 1, *FEATURE_SIZE, generator=generator)
            value = torch.randn(1, manager.num_objects, VALUE_DIM, *FEATURE_SIZE, generator=generator)
            for name in entering:
                introduced[name] = (manager.next_memory_frame, key.flatten(2)[0].t(),
                                    value[0, tracked.index(name)].flatten(1).t())
            memory_frames[frame] = manager.next_memory_frame
            manager.add_memory(key, shrinkage, selection, value)
        assert manager.working_elements <= config.max_working_frames * ELEMENTS
        assert manager.long_term_elements <= config.max_long_term_elements
        assert len(manager.permanent_frames) <= manager.max_permanent_frames
        for store in manager._stores():
            store._check_invariants()  # includes: no object has a value on memory written before it appeared
    return manager, tracked, introduced, memory_frames


def _rows_of(manager: MemoryManager, memory_frame: int) -> torch.Tensor:
    return (manager.working.live_frame_index() == memory_frame).nonzero().squeeze(1)


@pytest.mark.parametrize("cap, removals, kept_introductions", [
    (3, {"c": 300}, ["a", "b", "d"]),  # removing c releases its frame: a's, b's and d's stay
    (3, {}, ["a", "c", "d"]),  # four introducing frames, cap 3: frame 0 (a's) stays, b's goes at d's entry
    (2, {}, ["a", "d"]),  # cap 2: each new entry pushes out the previous later one, never frame 0
    (1, {}, ["a"]),  # cap 1: only frame 0
])
def test_introducing_frames_stay_in_working_memory_aligned_and_bounded(cap, removals, kept_introductions):
    """Mutation checked: the cap dropping the oldest permanent frame (frame 0 included, the old rule) fails the
    cap rows (a's frame is consolidated)."""
    config = replace(LONG_CONFIG, max_permanent_frames=cap)
    manager, tracked, introduced, memory_frames = _run_long_video(config, removals)
    assert tracked == [name for name in ENTRIES if name not in removals]
    assert manager.permanent_frames == [introduced[name][0] for name in kept_introductions]
    for name in ENTRIES:
        memory_frame, keys, values = introduced[name]
        rows = _rows_of(manager, memory_frame)
        if name not in kept_introductions:
            assert rows.numel() == 0, f"{name}'s introducing frame should have been consolidated"
            continue
        # Read back what was written: the frame's keys, and the values of the object it introduced.
        assert rows.numel() == ELEMENTS
        assert torch.equal(manager.working.keys[rows], keys)
        assert torch.equal(manager.working.values[rows, tracked.index(name)], values)
        # The object reads its own annotation: with top_k = 1 a query equal to the frame's key reads its values.
        selection = torch.full((1, KEY_DIM, *FEATURE_SIZE), 0.5)
        memory_readout = manager.read(keys.t().reshape(1, KEY_DIM, *FEATURE_SIZE), selection)
        torch.testing.assert_close(memory_readout[0, tracked.index(name)].flatten(1).t(), values)
    assert _rows_of(manager, memory_frames[VIDEO_FRAMES - MEM_EVERY]).numel() == ELEMENTS  # the newest is kept
    working_frames = manager.working_elements / ELEMENTS
    assert LONG_CONFIG.min_working_frames - 1 <= working_frames <= LONG_CONFIG.max_working_frames


def test_without_permanent_annotations_late_introductions_are_consolidated():
    config = replace(LONG_CONFIG, permanent_annotations=False)
    manager, _, introduced, _ = _run_long_video(config, {})
    assert manager.permanent_frames == [0]
    assert _rows_of(manager, 0).numel() == ELEMENTS
    for name in ("b", "c", "d"):
        assert _rows_of(manager, introduced[name][0]).numel() == 0


def test_a_reannotation_frame_is_not_permanent():
    manager, _, _, memory_frames = _run_long_video(LONG_CONFIG, {})
    reannotation = memory_frames[REANNOTATED_FRAME]
    assert reannotation == REANNOTATED_FRAME // MEM_EVERY + 1  # after the scheduled memory frames 0, 5, ..., 100
    assert reannotation not in manager.permanent_frames
    assert _rows_of(manager, reannotation).numel() == 0


def test_objects_given_on_one_frame_behave_as_without_permanent_annotations():
    """Frame 0 is simply the first introducing frame: with every object given there, the two settings agree
    exactly (and the inference goldens, recorded by the original, stay unchanged)."""
    def run(permanent_annotations):
        config = replace(LONG_CONFIG, permanent_annotations=permanent_annotations, top_k=5)
        manager = _manager(config)
        manager.add_objects(2)
        generator = torch.Generator().manual_seed(1)
        for _ in range(40):
            key = torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
            selection = torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
            if manager.working_elements:
                manager.read(key, selection)
            manager.add_memory(key, 1 + torch.rand(1, 1, *FEATURE_SIZE, generator=generator), selection,
                               torch.randn(1, 2, VALUE_DIM, *FEATURE_SIZE, generator=generator))
        return [buffer.clone() for store in manager._stores() for buffer in store._element_buffers()]

    for with_permanent, without in zip(run(True), run(False)):
        assert torch.equal(with_permanent, without)


def test_the_cap_is_at_least_one_frame_and_at_most_t_max_minus_t_min():
    with pytest.raises(ValueError, match="config key 'inference.max_permanent_frames': got 0, expected ≥ 1"):
        replace(LONG_CONFIG, max_permanent_frames=0)
    manager = _manager(replace(LONG_CONFIG, max_permanent_frames=50))
    assert manager.max_permanent_frames == LONG_CONFIG.max_working_frames - LONG_CONFIG.min_working_frames
