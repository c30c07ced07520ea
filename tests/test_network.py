"""The XMem network: recipe checkpoint, golden outputs of the original, released key layout, method contracts."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

import model.network
from model.checkpoint import load_network
from model.network import XMem
from model.recipe_checkpoint import read_key_list
from tests.conftest import FIXTURES_DIR, KEY_LIST_PATH

GOLDEN_PATH = FIXTURES_DIR / "network_golden.npz"
# Relative tolerance (max |Δ| / max |reference|) for every golden tensor; see tests/fixtures/README.md.
GOLDEN_RELATIVE_TOLERANCE = 1e-4
GOLDEN_QUERY_SHIFT_PX = (4, 8)  # query_image = image rolled by this many pixels (rows, columns)

RELEASED_PARAMETERS = 62_185_224
NO_SENSORY_PARAMETERS = 59_783_560
SINGLE_OBJECT_PARAMETERS = 62_182_088
NO_SENSORY_ENTRIES = 402
NO_SENSORY_FUSER_INPUT = 1536  # f16 1024 + readout 512
SMALL_FRAME = (64, 112)


def _count_parameters(network: XMem) -> int:
    return sum(parameter.numel() for parameter in network.parameters())


def _meta_network(**dims) -> XMem:
    with torch.device("meta"):
        return XMem(**dims)


# ----------------------------------------------------------------------------------------------- recipe checkpoint
def test_recipe_checkpoint_reproduces_documented_sums(recipe_state_dict):
    assert len(recipe_state_dict) == len(read_key_list(KEY_LIST_PATH))
    total = sum(float(tensor.double().sum()) for tensor in recipe_state_dict.values())
    assert total == pytest.approx(34924.734415, abs=1e-6)
    conv1 = recipe_state_dict["key_encoder.conv1.weight"].double()
    assert float(conv1.sum()) == pytest.approx(-6.57701972, abs=1e-8)
    assert conv1.flatten()[:2].tolist() == pytest.approx([-0.0224374607, 0.0132209882], abs=1e-10)
    running_var = recipe_state_dict["value_encoder.bn1.running_var"].double()
    assert float(running_var.sum()) == pytest.approx(63.96156651, abs=1e-8)
    assert recipe_state_dict["decoder.pred.bias"].double().tolist() == pytest.approx([-0.0057180896], abs=1e-10)
    assert recipe_state_dict["key_encoder.bn1.num_batches_tracked"].dtype == torch.int64


# ----------------------------------------------------------------------------------------------- golden outputs
@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    with np.load(GOLDEN_PATH) as data:
        return {name: torch.from_numpy(data[name]) for name in data.files}


@pytest.fixture(scope="module")
def golden_outputs(recipe_checkpoint_path, golden) -> dict[str, torch.Tensor]:
    """Every tensor of network_golden.npz recomputed by our network loaded through load_network."""
    network = load_network(recipe_checkpoint_path)
    image, masks, query_image = golden["image"], golden["masks"], golden["query_image"]
    batch_size, num_objects = masks.shape[:2]
    with torch.no_grad():
        memory = network.encode_key(image)
        zero_hidden = torch.zeros(batch_size, num_objects, network.hidden_dim, *memory.key.shape[-2:])
        value, hidden_after_value = network.encode_value(image, memory.f16, zero_hidden, masks, is_deep_update=True)
        query = network.encode_key(query_image)
        # A memory of one frame (T = 1) in the training layout: keys B×C^k×T×h×w, values B×N×C^v×T×h×w.
        readout = network.read_memory(
            query.key, query.selection, memory.key.unsqueeze(2), memory.shrinkage.unsqueeze(2), value.unsqueeze(3)
        )
        hidden_after_segment, logits_with_bg, prob_with_bg = network.segment(
            (query.f16, query.f8, query.f4), readout, hidden_after_value, update_hidden=True, strip_background=False
        )
    return {
        "key": memory.key, "shrinkage": memory.shrinkage, "selection": memory.selection, "f16": memory.f16,
        "f8": memory.f8, "f4": memory.f4, "value": value, "hidden_after_value": hidden_after_value,
        "readout": readout, "hidden_after_segment": hidden_after_segment, "logits_with_bg": logits_with_bg,
        "prob_with_bg": prob_with_bg,
    }


def test_golden_inputs_are_as_documented(golden):
    assert torch.equal(golden["query_image"], torch.roll(golden["image"], GOLDEN_QUERY_SHIFT_PX, dims=(2, 3)))


@pytest.mark.parametrize(
    "name",
    ["key", "shrinkage", "selection", "f16", "f8", "f4", "value", "hidden_after_value", "readout",
     "hidden_after_segment", "logits_with_bg", "prob_with_bg"],
)
def test_network_matches_original_golden(golden_outputs, golden, name):
    ours, reference = golden_outputs[name], golden[name]
    assert ours.shape == reference.shape
    relative_error = float((ours - reference).abs().max() / reference.abs().max())
    assert relative_error <= GOLDEN_RELATIVE_TOLERANCE, f"{name}: relative error {relative_error:.2e}"


def test_golden_covers_every_recorded_output(golden, golden_outputs):
    inputs = {"image", "masks", "query_image"}
    assert set(golden) - inputs == set(golden_outputs)


# ----------------------------------------------------------------------------------------------- layout
def test_fresh_network_has_released_keys_shapes_and_parameter_count():
    network = _meta_network()
    expected = [(key, shape) for key, shape, _ in read_key_list(KEY_LIST_PATH)]
    assert [(key, tuple(tensor.shape)) for key, tensor in network.state_dict().items()] == expected
    assert _count_parameters(network) == RELEASED_PARAMETERS


def test_no_sensory_network_layout():
    network = _meta_network(hidden_dim=0)
    state = network.state_dict()
    assert len(state) == NO_SENSORY_ENTRIES
    assert not any(key.startswith(("decoder.hidden_update.", "value_encoder.hidden_reinforce.")) for key in state)
    assert state["decoder.fuser.block1.conv1.weight"].shape[1] == NO_SENSORY_FUSER_INPUT
    assert _count_parameters(network) == NO_SENSORY_PARAMETERS


def test_single_object_network_layout():
    network = _meta_network(single_object=True)
    assert tuple(network.state_dict()["value_encoder.conv1.weight"].shape) == (64, 4, 7, 7)
    assert _count_parameters(network) == SINGLE_OBJECT_PARAMETERS


def test_save_and_strict_load_round_trip(recipe_checkpoint_path, recipe_state_dict):
    loaded = load_network(recipe_checkpoint_path).state_dict()
    assert list(loaded) == list(recipe_state_dict)
    assert all(torch.equal(loaded[key], recipe_state_dict[key]) for key in loaded)


def test_fresh_network_uses_reference_initialisation():
    network = XMem()
    key_weight = network.key_proj.key_proj.weight.flatten(start_dim=1)
    torch.testing.assert_close(key_weight @ key_weight.t(), torch.eye(key_weight.shape[0]), atol=1e-4, rtol=0)
    assert torch.count_nonzero(network.key_proj.key_proj.bias) == 0
    assert network.device == torch.device("cpu")


# ----------------------------------------------------------------------------------------------- method contracts
def test_forward_points_to_the_typed_methods(recipe_network):
    with pytest.raises(NotImplementedError, match="encode_key, encode_value, read_memory or segment"):
        recipe_network(torch.zeros(1, 3, *SMALL_FRAME))


def test_encode_key_rejects_wrong_rank(recipe_network):
    with pytest.raises(ValueError, match=r"B×3×H×W or B×T×3×H×W, got \(3, 64, 112\)"):
        recipe_network.encode_key(torch.zeros(3, *SMALL_FRAME))


def test_encode_key_clip_layout_matches_per_frame(recipe_network):
    generator = torch.Generator().manual_seed(0)
    clip = torch.randn(1, 2, 3, *SMALL_FRAME, generator=generator)
    with torch.no_grad():
        clip_encoding = recipe_network.encode_key(clip)
        frame_encoding = recipe_network.encode_key(clip[:, 1], need_shrinkage=False, need_selection=False)
    height, width = SMALL_FRAME[0] // 16, SMALL_FRAME[1] // 16
    assert clip_encoding.key.shape == (1, 64, 2, height, width)
    assert clip_encoding.shrinkage.shape == (1, 1, 2, height, width)
    assert clip_encoding.f16.shape == (1, 2, 1024, height, width)
    assert clip_encoding.f4.shape == (1, 2, 256, 4 * height, 4 * width)
    assert frame_encoding.shrinkage is None and frame_encoding.selection is None
    torch.testing.assert_close(clip_encoding.key[:, :, 1], frame_encoding.key, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clip_encoding.f8[:, 1], frame_encoding.f8, rtol=1e-5, atol=1e-5)


def test_segment_selector_and_background(recipe_network):
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(1, 3, *SMALL_FRAME, generator=generator)
    height, width = SMALL_FRAME[0] // 16, SMALL_FRAME[1] // 16
    readout = torch.randn(1, 2, 512, height, width, generator=generator)
    hidden = torch.zeros(1, 2, 64, height, width)
    with torch.no_grad():
        encoding = recipe_network.encode_key(image)
        features = (encoding.f16, encoding.f8, encoding.f4)
        full = recipe_network.segment(features, readout, hidden, strip_background=False)
        stripped = recipe_network.segment(features, readout, hidden, update_hidden=False)
        selected = recipe_network.segment(features, readout, hidden, selector=torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    assert full.prob.shape == (1, 3, *SMALL_FRAME)
    torch.testing.assert_close(full.prob.sum(dim=1), torch.ones(1, *SMALL_FRAME))
    torch.testing.assert_close(stripped.prob, full.prob[:, 1:])
    assert stripped.hidden is None and full.hidden.shape == hidden.shape
    assert float(selected.prob[:, 1].max()) < 1e-6  # the de-selected object gets (almost) no probability


def test_segment_requires_hidden_on_sensory_network(recipe_network):
    with pytest.raises(ValueError, match="segment needs hidden"):
        recipe_network.segment((None, None, None), torch.zeros(1, 1, 512, 4, 7), None)


def test_encode_value_others_channel_is_soft_sum_of_other_objects(recipe_network):
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(1, 3, *SMALL_FRAME, generator=generator)
    masks = torch.rand(1, 3, *SMALL_FRAME, generator=generator)
    height, width = SMALL_FRAME[0] // 16, SMALL_FRAME[1] // 16
    hidden = torch.zeros(1, 3, 64, height, width)
    with torch.no_grad():
        f16 = recipe_network.encode_key(image, need_shrinkage=False, need_selection=False).f16
        value, new_hidden = recipe_network.encode_value(image, f16, hidden, masks)
        solo_value, same_hidden = recipe_network.value_encoder(
            image, f16, hidden[:, :1], masks[:, :1], masks[:, 1:].sum(dim=1, keepdim=True), is_deep_update=False
        )
    assert value.shape == (1, 3, 512, height, width) and new_hidden.shape == hidden.shape
    assert torch.equal(same_hidden, hidden[:, :1])  # no deep update: sensory memory passes through
    torch.testing.assert_close(value[:, :1], solo_value, rtol=1e-5, atol=1e-5)
    assert not math.isclose(float(new_hidden.abs().sum()), 0.0)


def test_module_docstring_example_runs():
    results = doctest.testmod(model.network, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0 and results.failed == 0
