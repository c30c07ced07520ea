"""The memory manager's operations for its callers: the sensory update policy, filling memory to its bound for
benchmarks (through the real write path), and its live elements for reference reads.

The manager is the only owner of memory state: the inference core hands it sensory updates and lets it decide
whether they are kept, and the speed tools (scripts/speed/benchmark.py, scripts/speed/speed_compare.py) fill the memory with
`fill_to_bound` instead of writing the stores themselves.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from configs.schema import InferenceConfig, ModelConfig
from inference.inference_core import InferenceCore, normalize_image
from inference.memory_manager import MemoryManager
from model.reference_memory import dense_top_k_read, term_by_term_similarity

KEY_DIM, VALUE_DIM, HIDDEN_DIM = 8, 4, 3
FEATURE_SIZE = (2, 3)
NUM_OBJECTS = 2
HEIGHT, WIDTH = 64, 112  # recipe-network frames: 4×7 = 28 elements per memory frame
# T_max 4, T_min 2: each consolidation takes 2 frames (frame 0 stays); LT_max 40 = 5 consolidations of P = 8.
SMALL_BOUND = dict(mem_every=1, max_working_frames=4, min_working_frames=2, num_prototypes=8,
                   max_long_term_elements=40, long_term_count_usage="off")


def _manager(*, hidden_dim: int = HIDDEN_DIM, **settings) -> MemoryManager:
    manager = MemoryManager(InferenceConfig(**settings), model_config=ModelConfig(), hidden_dim=hidden_dim,
                            count_long_term_usage=True)
    manager.add_objects(NUM_OBJECTS)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float32)
    return manager


# ----------------------------------------------------------------------------------------------- sensory memory
@pytest.mark.parametrize("hidden_dim, use_sensory_memory, kept", [
    (HIDDEN_DIM, True, True),  # XMem: the update replaces the sensory memory
    (HIDDEN_DIM, False, False),  # ablation: the sensory memory stays zero
    (0, True, False),  # a network without sensory memory (XMem-no-sensory.pth): nothing to keep
])
def test_the_manager_decides_whether_a_sensory_update_is_kept(hidden_dim, use_sensory_memory, kept):
    """Mutation checked: `update_sensory` ignoring `use_sensory_memory` fails the ablation case."""
    manager = _manager(hidden_dim=hidden_dim, use_sensory_memory=use_sensory_memory)
    before = None if manager.sensory is None else manager.sensory.clone()
    assert manager.keeps_sensory_memory is kept
    update = torch.full((1, NUM_OBJECTS, HIDDEN_DIM, *FEATURE_SIZE), 0.5)
    manager.update_sensory(update)
    if kept:
        assert torch.equal(manager.sensory, update)
        manager.update_sensory(None)  # no update computed: the sensory memory stays
        assert torch.equal(manager.sensory, update)
    elif hidden_dim == 0:
        assert manager.sensory is None
    else:
        assert torch.equal(manager.sensory, before) and not manager.sensory.any()


# ----------------------------------------------------------------------------------------------- fill to bound
def _first_frame_core(network, config: InferenceConfig) -> InferenceCore:
    """A core after frame 0, which gives two objects (its memory frame 0 is permanent)."""
    core = InferenceCore(network, config)
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.int64)
    mask[8:30, 10:40], mask[34:60, 60:100] = 1, 2
    core.step(normalize_image(_image(0)), mask)
    return core


def _image(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _structure(memory: MemoryManager) -> dict:
    """The store state that does not depend on the memory's content."""
    return dict(working_frames=memory.working.live_frame_index().tolist(), long_term_size=memory.long_term_elements,
                permanent=memory.permanent_frames, next_frame=memory.next_memory_frame,
                consolidations=memory.consolidations, pruned=memory.pruned_elements,
                first_frames=(memory.working.first_frame, memory.long_term.first_frame))


def test_fill_to_bound_leaves_the_store_state_that_running_frames_leaves(recipe_network):
    """fill_to_bound writes random frames through the real write path: after frame 0, the state equals (up to the
    memory's content) that of a core which ran as many memory frames of a real video; and it stops at the bound:
    long-term memory pruned once and at LT_max, working memory at T_max − 1 frames.

    Mutations checked: filling the stores directly (the former benchmark prefill) fails the comparison (its
    long-term memory holds elements no write of that run put there); stopping at the first consolidation misses the
    bound.
    """
    config = InferenceConfig(**SMALL_BOUND)
    filled = _first_frame_core(recipe_network, config)
    written = filled.memory.fill_to_bound(torch.Generator().manual_seed(0))
    ran = _first_frame_core(recipe_network, config)
    for index in range(1, written + 1):  # mem_every 1: every step writes one memory frame
        ran.step(normalize_image(_image(index)))
    assert _structure(filled.memory) == _structure(ran.memory)
    elements_per_frame = filled.memory.elements_per_frame
    assert filled.memory.pruned_elements > 0
    assert filled.long_term_memory_elements == config.max_long_term_elements
    assert filled.working_memory_elements == (config.max_working_frames - 1) * elements_per_frame
    for store in (filled.memory.working, filled.memory.long_term):
        store._check_invariants()
    # The next memory frame consolidates and prunes: memory stays at its bound, as in a long video.
    filled.step(normalize_image(_image(written + 1)))
    assert filled.memory.consolidations == ran.memory.consolidations + 1
    assert filled.long_term_memory_elements == config.max_long_term_elements


def test_fill_to_bound_fills_a_bounded_working_memory_and_refuses_an_unbounded_one():
    bounded = _manager(enable_long_term=False, working_memory_bound="max_working_frames", max_working_frames=3)
    written = bounded.fill_to_bound(torch.Generator().manual_seed(0))
    assert written == 3 and bounded.working_elements == 3 * bounded.elements_per_frame
    assert bounded.permanent_frames == [0]
    bounded.working._check_invariants()
    with pytest.raises(ValueError, match=r"working memory is unbounded \(inference.enable_long_term=false"):
        _manager(enable_long_term=False).fill_to_bound(torch.Generator())
    unallocated = MemoryManager(InferenceConfig(), model_config=ModelConfig(), hidden_dim=0,
                                count_long_term_usage=True)
    with pytest.raises(ValueError, match="the stores are not allocated yet"):
        unallocated.fill_to_bound(torch.Generator())


def test_live_elements_are_what_read_reads(one_torch_thread):
    """The reference read over `live_elements` (every element of both stores) equals the manager's own read, as
    scripts/speed/speed_compare.py relies on.

    Mutation checked: leaving long-term memory out of `live_elements` fails here.
    """
    manager = _manager(**SMALL_BOUND)
    manager.fill_to_bound(torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    query_key = torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
    query_selection = torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
    keys, shrinkage, values = manager.live_elements()
    assert keys.shape[0] == manager.long_term_elements + manager.working_elements
    similarity = term_by_term_similarity(keys.t().unsqueeze(0), shrinkage.view(1, 1, -1), query_key, query_selection,
                                         reading=manager.reading)
    expected, _ = dense_top_k_read(similarity, values.flatten(start_dim=1).t().unsqueeze(0), manager.config.top_k)
    readout = manager.read(query_key, query_selection)
    torch.testing.assert_close(readout, expected.view(readout.shape), rtol=1e-5, atol=1e-5)
