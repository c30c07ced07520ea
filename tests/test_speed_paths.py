"""The optimised compute paths against the reference ones: same outputs to 1e-4, same state_dict.

Default (optimised) path: per-frame parts of the fusion blocks' and value stem's first convolutions computed once
per frame, in-place additions, one-product similarity. Reference path (`model/reference.py` with the same weights):
concatenate and convolve per object, as the original. Timings are printed by scripts/speed/speed_compare.py. The
memory-reading maths' own fast-vs-reference checks are in tests/test_memory_util.py.
"""
from __future__ import annotations

import doctest
from functools import partial

import numpy as np
import pytest
import torch

import model.acceleration
import model.reference
from model.acceleration import optimize_network
from model.checkpoint import build_network_from_state_dict
from model.network import XMem
from model.reference import reference_encode_value, reference_segment
from model.recipe_checkpoint import read_key_list
from tests.conftest import FIXTURES_DIR, KEY_LIST_PATH

# max |optimised − reference| ≤ PATH_TOLERANCE · max(1, max |reference|): absolute for outputs of unit scale
# (probabilities, sensory memory), relative for large ones (values reach ~60 with random init; log-odds of a
# saturated probability amplify its float rounding) — the project's ~1e-4 numerics contract.
PATH_TOLERANCE = 1e-4
FRAME = (64, 112)
FEATURE_STRIDE = 16
GOLDEN_PATH = FIXTURES_DIR / "network_golden.npz"


def _agree(optimised: torch.Tensor, reference: torch.Tensor) -> bool:
    assert optimised.shape == reference.shape
    scale = max(1.0, float(reference.abs().max()))
    return float((optimised - reference).abs().max()) <= PATH_TOLERANCE * scale


def _frame_inputs(network: XMem, num_objects: int, seed: int, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Image, soft masks, sensory memory and a readout of small frames, with their key-encoder features."""
    generator = torch.Generator().manual_seed(seed)
    height, width = FRAME[0] // FEATURE_STRIDE, FRAME[1] // FEATURE_STRIDE
    image = torch.randn(batch_size, 3, *FRAME, generator=generator)
    with torch.no_grad():
        encoding = network.encode_key(image)
    hidden_shape = (batch_size, num_objects, network.hidden_dim, height, width)
    return {
        "image": image,
        "masks": torch.rand(batch_size, num_objects, *FRAME, generator=generator),
        "hidden": torch.tanh(torch.randn(hidden_shape, generator=generator)) if network.hidden_dim > 0 else None,
        "readout": torch.randn(batch_size, num_objects, network.value_dim, height, width, generator=generator),
        "features": (encoding.f16, encoding.f8, encoding.f4),
    }


def _both_paths(network: XMem, inputs: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, optimised, reference) for every output of encode_value and segment."""
    results = {}
    paths = {"optimised": (network.encode_value, network.segment),
             "reference": (partial(reference_encode_value, network), partial(reference_segment, network))}
    for path, (encode_value, segment) in paths.items():
        with torch.no_grad():
            value, value_hidden = encode_value(
                inputs["image"], inputs["features"][0], inputs["hidden"], inputs["masks"]
            )
            segmentation = segment(inputs["features"], inputs["readout"], inputs["hidden"], strip_background=False)
        outputs = {"value": value, "logits": segmentation.logits, "prob": segmentation.prob}
        if network.hidden_dim > 0:
            outputs.update(hidden_after_value=value_hidden, hidden_after_segment=segmentation.hidden)
        results[path] = outputs
    return [(name, results["optimised"][name], results["reference"][name]) for name in results["reference"]]


@pytest.mark.parametrize("num_objects, batch_size", [(1, 1), (3, 1), (1, 2), (3, 2)])
def test_optimised_and_reference_paths_agree(recipe_network, num_objects, batch_size):
    inputs = _frame_inputs(recipe_network, num_objects, seed=num_objects, batch_size=batch_size)
    compared = _both_paths(recipe_network, inputs)
    assert {name for name, _, _ in compared} == {
        "value", "hidden_after_value", "logits", "prob", "hidden_after_segment"
    }
    for name, optimised, reference in compared:
        assert _agree(optimised, reference), name


def test_paths_differ_only_by_rounding_not_identically(recipe_network):
    """Guards against a switch that is not wired: the two paths must run different arithmetic."""
    compared = _both_paths(recipe_network, _frame_inputs(recipe_network, 3, seed=7))
    assert any(not torch.equal(optimised, reference) for _, optimised, reference in compared)


@pytest.mark.parametrize("variant", [dict(hidden_dim=0), dict(single_object=True)])
def test_paths_agree_on_network_variants(variant):
    """No sensory memory (decoder fuser over [f16 | readout], 1536 channels) and the 4-channel stage-0 stem."""
    torch.manual_seed(0)
    network = XMem(**variant).eval()
    num_objects = 1 if variant.get("single_object") else 2
    inputs = _frame_inputs(network, num_objects, seed=3, batch_size=2)  # training batches: B > 1
    for name, optimised, reference in _both_paths(network, inputs):
        assert _agree(optimised, reference), name


def test_paths_agree_on_golden_inputs(recipe_network):
    """The golden pass (encode, one-frame training read, segment) through both paths end to end."""
    with np.load(GOLDEN_PATH) as data:
        image, masks, query_image = (torch.from_numpy(data[name]) for name in ("image", "masks", "query_image"))
    outputs = {}
    paths = {
        "optimised": (recipe_network.encode_value, recipe_network.segment),
        "reference": (partial(reference_encode_value, recipe_network), partial(reference_segment, recipe_network)),
    }
    for path, (encode_value, segment) in paths.items():
        with torch.no_grad():
            memory = recipe_network.encode_key(image)
            zero_hidden = torch.zeros(1, masks.shape[1], recipe_network.hidden_dim, *memory.key.shape[-2:])
            value, hidden = encode_value(image, memory.f16, zero_hidden, masks)
            query = recipe_network.encode_key(query_image)
            readout = recipe_network.read_memory(  # each path's values through the same read
                query.key, query.selection, memory.key.unsqueeze(2), memory.shrinkage.unsqueeze(2), value.unsqueeze(3)
            )
            segmentation = segment((query.f16, query.f8, query.f4), readout, hidden, strip_background=False)
        outputs[path] = (value, hidden, readout, *segmentation)
    for optimised, reference in zip(outputs["optimised"], outputs["reference"]):
        assert _agree(optimised, reference)


def test_state_dict_keeps_the_released_layout(recipe_network, recipe_state_dict):
    """The split convolutions only slice the stored weights: nothing added, renamed or reshaped in the state_dict."""
    _both_paths(recipe_network, _frame_inputs(recipe_network, 3, seed=6))
    state = recipe_network.state_dict()
    assert [(key, tuple(tensor.shape)) for key, tensor in state.items()] == [
        (key, shape) for key, shape, _ in read_key_list(KEY_LIST_PATH)
    ]
    assert all(torch.equal(state[key], recipe_state_dict[key]) for key in state)


def test_state_dict_is_the_released_layout_after_channels_last(recipe_state_dict):
    network = optimize_network(build_network_from_state_dict(recipe_state_dict), channels_last=True)
    state = network.state_dict()
    assert [(key, tuple(tensor.shape)) for key, tensor in state.items()] == [
        (key, shape) for key, shape, _ in read_key_list(KEY_LIST_PATH)
    ]
    assert all(torch.equal(state[key], recipe_state_dict[key]) for key in state)
    assert network.decoder.fuser.block1.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    XMem().load_state_dict(state, strict=True)


def test_channels_last_network_gives_the_same_outputs(recipe_network, recipe_state_dict):
    channels_last = optimize_network(build_network_from_state_dict(recipe_state_dict), channels_last=True)
    inputs = _frame_inputs(recipe_network, 2, seed=5)
    with torch.no_grad():
        plain = recipe_network.encode_key(inputs["image"])
        fast = channels_last.encode_key(inputs["image"])
        plain_segmentation = recipe_network.segment(inputs["features"], inputs["readout"], inputs["hidden"])
        fast_segmentation = channels_last.segment(inputs["features"], inputs["readout"], inputs["hidden"])
    for optimised, reference in zip((*fast, *fast_segmentation), (*plain, *plain_segmentation)):
        assert _agree(optimised, reference)


def test_optimize_network_rejects_other_modules():
    with pytest.raises(TypeError, match=r"optimize_network expects an XMem network .*got Linear; build one with"):
        optimize_network(torch.nn.Linear(2, 2), channels_last=True)


@pytest.mark.parametrize("module", [model.acceleration, model.reference])
def test_docstring_examples_run(module):
    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0
