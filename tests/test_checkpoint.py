"""Checkpoint loading: dim inference, stage-0 widening, training checkpoints, ImageNet trunks, every error path."""
from __future__ import annotations

import re

import pytest
import torch

from model.checkpoint import (
    build_network_from_state_dict,
    infer_network_dims,
    load_imagenet_trunks,
    load_network,
    save_network,
)
from model.network import XMem

VALUE_CONV1 = "value_encoder.conv1.weight"
SENSORY_PREFIXES = ("decoder.hidden_update.", "value_encoder.hidden_reinforce.")
NO_SENSORY_FUSER_INPUT = 1536  # f16 1024 + readout 512: the hidden channels are the last 64 of 1600
SMALL_FRAME = (64, 112)


def _single_object(state_dict):
    state_dict[VALUE_CONV1] = state_dict[VALUE_CONV1][:, :4].clone()
    return state_dict


def _no_sensory(state_dict):
    state_dict = {key: tensor for key, tensor in state_dict.items() if not key.startswith(SENSORY_PREFIXES)}
    for name in ("conv1", "downsample"):
        key = f"decoder.fuser.block1.{name}.weight"
        state_dict[key] = state_dict[key][:, :NO_SENSORY_FUSER_INPUT].clone()
    return state_dict


# ----------------------------------------------------------------------------------------------- successful loads
def test_infer_dims_of_released_layout(recipe_state_dict):
    dims = infer_network_dims(recipe_state_dict)
    assert (dims.key_dim, dims.value_dim, dims.hidden_dim, dims.single_object) == (64, 512, 64, False)


def test_stage0_checkpoint_widens_with_zeros_for_evaluation(recipe_state_dict, tmp_path):
    state_dict = _single_object(recipe_state_dict)
    path = tmp_path / "stage0.pth"
    torch.save(state_dict, path)
    network = load_network(path)
    weight = network.state_dict()[VALUE_CONV1]
    assert weight.shape == (64, 5, 7, 7)
    assert torch.equal(weight[:, :4], state_dict[VALUE_CONV1])
    assert torch.count_nonzero(weight[:, 4]) == 0
    assert not network.training and not network.single_object


def test_stage0_checkpoint_widens_orthogonally_for_training(recipe_state_dict):
    state_dict = _single_object(recipe_state_dict)
    network = build_network_from_state_dict(state_dict, for_training=True)
    extra = network.state_dict()[VALUE_CONV1][:, 4].flatten(start_dim=1)  # 64×49: orthogonal rows can't all fit
    assert torch.count_nonzero(extra) == extra.numel()
    torch.testing.assert_close(extra.t() @ extra, torch.eye(extra.shape[1]), atol=1e-4, rtol=0)


def test_stage0_checkpoint_loads_as_single_object_network(recipe_state_dict):
    network = build_network_from_state_dict(_single_object(recipe_state_dict), single_object=True)
    assert network.single_object and network.value_encoder.conv1.weight.shape[1] == 4


def test_no_sensory_checkpoint_gives_hidden_dim_zero_and_runs(recipe_state_dict):
    state_dict = _no_sensory(recipe_state_dict)
    network = build_network_from_state_dict(state_dict)
    assert network.hidden_dim == 0 and infer_network_dims(state_dict).hidden_dim == 0
    assert len(network.state_dict()) == len(state_dict)
    image = torch.zeros(1, 3, *SMALL_FRAME)
    masks = torch.ones(1, 2, *SMALL_FRAME) / 2
    with torch.no_grad():
        encoding = network.encode_key(image)
        value, hidden = network.encode_value(image, encoding.f16, None, masks)
        readout = network.read_memory(
            encoding.key, encoding.selection, encoding.key.unsqueeze(2), encoding.shrinkage.unsqueeze(2),
            value.unsqueeze(3),
        )
        result = network.segment((encoding.f16, encoding.f8, encoding.f4), readout, None)
    assert hidden is None and result.hidden is None
    assert result.prob.shape == (1, 2, *SMALL_FRAME) and torch.isfinite(result.prob).all()


def test_training_checkpoint_dict_with_network_entry(tmp_path):
    network = XMem(hidden_dim=0, key_dim=32)
    path = tmp_path / "training.pth"
    torch.save({"network": network.state_dict(), "it": 7, "optimizer": {"lr": [1e-5]}}, path)
    loaded = load_network(path)
    assert (loaded.key_dim, loaded.hidden_dim) == (32, 0)
    assert torch.equal(loaded.key_proj.key_proj.weight, network.key_proj.key_proj.weight)


def test_save_network_is_atomic_and_leaves_no_temporary(tmp_path, recipe_network):
    path = tmp_path / "nested" / "xmem.pth"
    save_network(recipe_network, path)
    assert [entry.name for entry in path.parent.iterdir()] == ["xmem.pth"]

    class Unsaveable(torch.nn.Module):
        def state_dict(self, *args, **kwargs):
            raise RuntimeError("simulated crash while saving")

    with pytest.raises(RuntimeError, match="simulated crash"):
        save_network(Unsaveable(), path)
    assert [entry.name for entry in path.parent.iterdir()] == ["xmem.pth"]
    assert load_network(path).state_dict().keys() == recipe_network.state_dict().keys()


# ----------------------------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(f"checkpoint file not found: {str(path)!r}")):
        load_network(path)


def test_truncated_file(tmp_path):
    full = tmp_path / "full.pth"
    torch.save({"key_proj.key_proj.weight": torch.zeros(64, 1024, 3, 3)}, full)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(f"cannot read checkpoint {str(truncated)!r}: truncated, corrupt")):
        load_network(truncated)


def test_file_that_is_not_weights_only(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"network": XMemLikeObject()}, path)
    with pytest.raises(ValueError, match="not a weights-only PyTorch file"):
        load_network(path)


class XMemLikeObject:
    """An arbitrary pickled class: weights_only loading must refuse it."""


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=re.escape(f"checkpoint {str(path)!r} holds a list, not a state_dict")):
        load_network(path)


def test_foreign_state_dict_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1), "fc.weight": torch.zeros(1)}, path)
    expected = (
        f"checkpoint {str(path)!r} is not an XMem state_dict: missing keys 412 (key_encoder.conv1.weight, "
        "key_encoder.bn1.weight, key_encoder.bn1.bias, ...), unexpected keys 2 (conv1.weight, fc.weight)"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_network(path)


def test_partial_state_dict_lists_missing_keys(recipe_state_dict):
    del recipe_state_dict["decoder.pred.bias"]
    recipe_state_dict["module.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=re.escape(
        "'x.pth' is not an XMem state_dict: missing keys 1 (decoder.pred.bias), unexpected keys 1 (module.extra)"
    )):
        build_network_from_state_dict(recipe_state_dict, source="x.pth")


def test_ddp_wrapped_state_dict_gets_a_hint(recipe_state_dict):
    wrapped = {f"module.{key}": tensor for key, tensor in recipe_state_dict.items()}
    with pytest.raises(ValueError, match=re.escape(
        "missing keys 412 (key_encoder.conv1.weight, key_encoder.bn1.weight, key_encoder.bn1.bias, ...), unexpected "
        "keys 412 (module.key_encoder.conv1.weight, module.key_encoder.bn1.weight, module.key_encoder.bn1.bias, ...)"
        "; the keys carry the DDP wrapper's 'module.' prefix: save network.module.state_dict() instead"
    )):
        build_network_from_state_dict(wrapped, source="ddp.pth")


def test_wrong_shape_names_key_expected_and_received(recipe_state_dict, tmp_path):
    recipe_state_dict["decoder.pred.weight"] = torch.zeros(1, 128, 3, 3)
    path = tmp_path / "wrong_shape.pth"
    torch.save(recipe_state_dict, path)
    expected = (
        f"checkpoint {str(path)!r}: decoder.pred.weight has shape (1, 128, 3, 3), expected (1, 256, 3, 3) for an "
        "XMem with key_dim=64, value_dim=512, hidden_dim=64"
    )
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_network(path)


def test_five_channel_checkpoint_refused_for_single_object_network(recipe_state_dict):
    with pytest.raises(ValueError, match="has a 5-channel value encoder; a single-object network needs 4"):
        build_network_from_state_dict(recipe_state_dict, single_object=True, source="x.pth")


# ----------------------------------------------------------------------------------------------- ImageNet trunks
def _fake_torchvision_state(module, renames, generator):
    """A torchvision-named ResNet state_dict with random tensors shaped like `module`'s trunk, plus layer4/fc."""
    state = {}
    for key, tensor in module.state_dict().items():
        top = key.split(".")[0]
        if top in renames and not key.endswith("num_batches_tracked"):
            state[renames[top] + key[len(top):]] = torch.randn(tensor.shape, generator=generator)
    state["layer4.0.conv1.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(3)
    return state


def test_imagenet_trunks_load_from_legacy_and_current_names(tmp_path, recipe_state_dict):
    network = build_network_from_state_dict(recipe_state_dict)
    generator = torch.Generator().manual_seed(0)
    resnet50 = _fake_torchvision_state(
        network.key_encoder, {"conv1": "conv1", "bn1": "bn1", "res2": "layer1", "layer2": "layer2",
                              "layer3": "layer3"}, generator)
    resnet18 = _fake_torchvision_state(
        network.value_encoder, {"bn1": "bn1", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3"}, generator)
    resnet18["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=generator)
    torch.save(resnet50, tmp_path / "resnet50-19c8e357.pth")  # the original's legacy name
    torch.save(resnet18, tmp_path / "resnet18-f37072fd.pth")  # torchvision's current name
    fuser_before = network.value_encoder.fuser.block1.conv1.weight.clone()

    load_imagenet_trunks(network, checkpoint_dir=tmp_path)

    assert torch.equal(network.key_encoder.res2[0].conv1.weight, resnet50["layer1.0.conv1.weight"])
    assert torch.equal(network.key_encoder.bn1.running_var, resnet50["bn1.running_var"])
    assert torch.equal(network.value_encoder.layer3[1].bn2.weight, resnet18["layer3.1.bn2.weight"])
    conv1 = network.value_encoder.conv1.weight
    assert torch.equal(conv1[:, :3], resnet18["conv1.weight"])
    assert torch.count_nonzero(conv1[:, 3:]) == conv1[:, 3:].numel()  # orthogonal, not zeros
    assert torch.equal(network.value_encoder.fuser.block1.conv1.weight, fuser_before)


def _meta_network() -> XMem:
    with torch.device("meta"):
        return XMem()


def test_missing_imagenet_weights_name_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    network = _meta_network()
    directory = tmp_path / "checkpoints"
    expected = (
        f"ImageNet weights not found: expected {directory / 'resnet50-19c8e357.pth'} and "
        f"{directory / 'resnet18-5c106cde.pth'}; on a machine with internet download "
        "https://download.pytorch.org/models/resnet50-19c8e357.pth and "
        "https://download.pytorch.org/models/resnet18-5c106cde.pth"
    )
    with pytest.raises(FileNotFoundError, match=re.escape(expected)):
        load_imagenet_trunks(network)


def test_corrupt_imagenet_weights(tmp_path):
    (tmp_path / "resnet50-19c8e357.pth").write_bytes(b"not a zip")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet18-5c106cde.pth")
    with pytest.raises(ValueError, match="cannot read ImageNet weights .*resnet50-19c8e357.pth"):
        load_imagenet_trunks(_meta_network(), checkpoint_dir=tmp_path)


def test_foreign_imagenet_weights(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet50-0676ba61.pth")
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "resnet18-5c106cde.pth")
    with pytest.raises(ValueError, match="resnet50-0676ba61.pth' are not a torchvision ResNet state_dict: missing"):
        load_imagenet_trunks(_meta_network(), checkpoint_dir=tmp_path)


def test_wrongly_shaped_imagenet_weights_leave_network_untouched(tmp_path, recipe_state_dict):
    network = build_network_from_state_dict(recipe_state_dict)
    generator = torch.Generator().manual_seed(1)
    resnet50 = _fake_torchvision_state(
        network.key_encoder, {"conv1": "conv1", "bn1": "bn1", "res2": "layer1", "layer2": "layer2",
                              "layer3": "layer3"}, generator)
    resnet18 = _fake_torchvision_state(
        network.value_encoder, {"bn1": "bn1", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3"}, generator)
    resnet18["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=generator)
    resnet18["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(resnet50, tmp_path / "resnet50-0676ba61.pth")
    torch.save(resnet18, tmp_path / "resnet18-5c106cde.pth")
    with pytest.raises(ValueError, match=re.escape(
        "resnet18-5c106cde.pth': layer1.0.conv1.weight has shape (64, 64, 1, 1), expected (64, 64, 3, 3)"
    )):
        load_imagenet_trunks(network, checkpoint_dir=tmp_path)
    assert torch.equal(network.key_encoder.conv1.weight, recipe_state_dict["key_encoder.conv1.weight"])
