"""The study's memory budgets from the paper's ratios (inference/miniature.py), table-tested for several frame sizes
and video lengths, and checked against what a memory manager fed those budgets actually does (when it consolidates
and first prunes long-term memory)."""
import doctest

import pytest
import torch

import inference.miniature as miniature_module
from configs.schema import InferenceConfig, ModelConfig
from inference.memory_manager import MemoryManager
from inference.miniature import (PAPER_ELEMENTS_PER_FRAME, PAPER_KEPT_SHARE, feature_elements,
                                 miniature_memory_settings, prototypes_for_share)

KEY_DIM, VALUE_DIM = 4, 2  # tiny features: only the element counts matter here

# (frame H×W, h·w, video length, P, LT_max, first pruning frame or None)
TABLE = [
    ((480, 854), PAPER_ELEMENTS_PER_FRAME, 2000, 128, 18 * 128, 495),  # the paper's P at 480p
    ((96, 160), 60, 2000, 5, 18 * 5, 495),  # the study's frames, the long benchmark
    ((96, 160), 60, 400, 5, 2 * 5, 95),  # the reduced long benchmark: full from frame 95 on
    ((48, 80), 15, 400, 1, 2 * 1, 95),  # 1.6 % of 75 candidates rounds to 1
    ((192, 288), 216, 1000, 17, 8 * 17, 245),
    ((96, 160), 60, 30, 5, 5, None),  # a 30-frame held-out video never consolidates: LT_max = one P
]


@pytest.mark.parametrize("frame_size, elements, num_frames, prototypes, long_term, first_prune", TABLE)
def test_settings_table(frame_size, elements, num_frames, prototypes, long_term, first_prune):
    assert feature_elements(*frame_size) == elements
    settings = miniature_memory_settings(elements, num_frames)
    paper = InferenceConfig()
    assert (settings.max_working_frames, settings.min_working_frames, settings.mem_every) == (
        paper.max_working_frames, paper.min_working_frames, paper.mem_every)
    assert (settings.num_prototypes, settings.max_long_term_elements) == (prototypes, long_term)
    assert settings.first_prune_frame == first_prune
    # the share kept is the paper's up to rounding P to a whole prototype (and at least one)
    assert abs(settings.kept_share - PAPER_KEPT_SHARE) <= 0.5 / settings.candidates_per_consolidation or (
        settings.num_prototypes == 1)
    if first_prune is not None:  # long-term memory prunes for at least the last three quarters of the video
        assert first_prune <= num_frames / 4
    InferenceConfig(**{key.split(".")[1].split("=")[0]: int(key.split("=")[1]) for key in settings.overrides()})


def _first_prune_by_simulation(elements_side: tuple[int, int], num_frames: int) -> int | None:
    """Feed a memory manager one memory frame every r frames with the derived budgets; return the first frame
    whose write made long-term memory drop elements (a pruning), or None."""
    settings = miniature_memory_settings(elements_side[0] * elements_side[1], num_frames)
    config = InferenceConfig(**{override.split("=")[0].split(".")[1]: int(override.split("=")[1])
                                for override in settings.overrides()})
    manager = MemoryManager(config, model_config=ModelConfig(), hidden_dim=0, count_long_term_usage=True)
    manager.add_objects(1)
    manager.initialize(elements_side, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"),
                       dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    for frame in range(0, num_frames - 1, config.mem_every):  # the last frame writes no memory
        long_term_before, working_before = manager.long_term_elements, manager.working_elements
        key = torch.randn(1, KEY_DIM, *elements_side, generator=generator)
        manager.read(key, torch.rand(1, KEY_DIM, *elements_side, generator=generator))
        manager.add_memory(key, torch.ones(1, 1, *elements_side), torch.rand(1, KEY_DIM, *elements_side),
                           torch.randn(1, 1, VALUE_DIM, *elements_side, generator=generator))
        consolidated = manager.working_elements < working_before + settings.elements_per_frame
        if consolidated and manager.long_term_elements < long_term_before + settings.num_prototypes:
            return frame
        assert manager.long_term_elements <= config.max_long_term_elements
    return None


@pytest.mark.parametrize("elements_side, num_frames", [((6, 10), 400), ((3, 5), 400), ((6, 10), 30)])
def test_a_memory_manager_with_the_settings_first_prunes_where_they_say(elements_side, num_frames):
    settings = miniature_memory_settings(elements_side[0] * elements_side[1], num_frames)
    assert _first_prune_by_simulation(elements_side, num_frames) == settings.first_prune_frame


def test_prototypes_for_a_share_and_bad_values():
    assert prototypes_for_share(0.43, 60) == 129  # the old study's 43 %: P = 128 of 300
    assert prototypes_for_share(1.0, 60) == 300 and prototypes_for_share(1e-6, 60) == 1
    with pytest.raises(ValueError, match="kept share 0 "):
        prototypes_for_share(0, 60)
    with pytest.raises(ValueError, match="≥ 1 element a frame"):
        miniature_memory_settings(0, 100)
    with pytest.raises(ValueError, match="long_term_full_fraction 1.5"):
        miniature_memory_settings(60, 100, long_term_full_fraction=1.5)


def test_header_line_names_every_budget():
    line = miniature_memory_settings(60, 400).describe()
    for text in ("T_max 10", "T_min 5", "r 5", "P 5 (1.7% of 300 candidates kept; paper 1.6%)", "LT_max 10",
                 "pruned from frame 95 of 400"):
        assert text in line


def test_module_docstring_example_runs():
    results = doctest.testmod(miniature_module)
    assert results.attempted > 0 and results.failed == 0
