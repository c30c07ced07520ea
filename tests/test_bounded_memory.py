"""The bounded baselines (inference.working_memory_bound): working memory alone, oldest frames dropped to stay within
T_max frames or the full XMem's element budget, with and without the permanent frame 0. Frame indices are read
back from the store."""
import pytest
import torch

from configs.loader import load_config
from configs.schema import InferenceConfig, ModelConfig
from inference.memory_manager import MemoryManager

FEATURE_SIZE = (2, 3)  # h×w: 6 elements a memory frame
ELEMENTS = FEATURE_SIZE[0] * FEATURE_SIZE[1]
KEY_DIM, VALUE_DIM = 4, 2
MEMORY_FRAMES = 20
T_MAX = 4
LT_MAX = 13  # the xmem_elements budget: 4·6 + 13 = 37 elements, 6 whole frames


def _stream(**inference) -> tuple[MemoryManager, list[int]]:
    """Write MEMORY_FRAMES memory frames (one object); return the manager and the working size after each write."""
    config = InferenceConfig(enable_long_term=False, max_working_frames=T_MAX, max_long_term_elements=LT_MAX,
                             **inference)
    manager = MemoryManager(config, model_config=ModelConfig(), hidden_dim=0, count_long_term_usage=False)
    manager.add_objects(1)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float32)
    sizes = []
    for _ in range(MEMORY_FRAMES):
        manager.add_memory(torch.randn(1, KEY_DIM, *FEATURE_SIZE), torch.ones(1, 1, *FEATURE_SIZE), None,
                           torch.randn(1, 1, VALUE_DIM, *FEATURE_SIZE))
        manager.working._check_invariants()
        sizes.append(manager.working_elements)
    return manager, sizes


def _frames_held(manager: MemoryManager) -> list[int]:
    return sorted(set(manager.working.live_frame_index().tolist()))


@pytest.mark.parametrize("bound, keeps_first, expected, budget_frames", [
    ("max_working_frames", True, [0, 17, 18, 19], T_MAX),
    ("max_working_frames", False, [16, 17, 18, 19], T_MAX),
    ("xmem_elements", True, [0, 15, 16, 17, 18, 19], T_MAX + LT_MAX // ELEMENTS),
    ("xmem_elements", False, [14, 15, 16, 17, 18, 19], T_MAX + LT_MAX // ELEMENTS),
])
def test_bounded_working_memory_keeps_the_newest_frames_within_its_budget(bound, keeps_first, expected,
                                                                          budget_frames):
    """Mutations checked: dropping the newest instead of the oldest frame, ignoring bound_keeps_annotations, and the
    xmem_elements budget without LT_max each fail here."""
    manager, sizes = _stream(working_memory_bound=bound, bound_keeps_annotations=keeps_first)
    assert _frames_held(manager) == expected
    assert max(sizes) == budget_frames * ELEMENTS  # full, never over
    assert manager.working.capacity == budget_frames * ELEMENTS  # preallocated once, no growth
    assert manager.long_term is None


def test_without_a_bound_working_memory_keeps_every_frame():
    manager, sizes = _stream()
    assert _frames_held(manager) == list(range(MEMORY_FRAMES)) and sizes[-1] == MEMORY_FRAMES * ELEMENTS


def test_a_bound_needs_long_term_memory_off():
    with pytest.raises(ValueError, match="'inference.working_memory_bound': 'max_working_frames' bounds working "
                                         "memory alone; set inference.enable_long_term=false"):
        InferenceConfig(working_memory_bound="max_working_frames")
    with pytest.raises(ValueError, match="'inference.max_working_frames': got 1, a bounded working memory needs"):
        InferenceConfig(enable_long_term=False, working_memory_bound="xmem_elements", max_working_frames=1)


@pytest.mark.parametrize("row, bound, keeps_first", [
    ("bounded_working_t_max_keep_first", "max_working_frames", True),
    ("bounded_working_t_max_drop_first", "max_working_frames", False),
    ("bounded_working_xmem_budget_keep_first", "xmem_elements", True),
    ("bounded_working_xmem_budget_drop_first", "xmem_elements", False),
])
def test_the_bounded_study_rows_name_their_mode(row, bound, keeps_first):
    from scripts.study.run_study import BASELINE_DIR

    inference = load_config(BASELINE_DIR / f"{row}.yaml").inference
    assert (inference.enable_long_term, inference.working_memory_bound, inference.bound_keeps_annotations) == (
        False, bound, keeps_first)
