"""Loading and saving XMem weights: released state_dicts, training checkpoints and ImageNet backbones.

Every load uses `torch.load(..., weights_only=True)` and a strict key match. Network dims are read from the
weights (C^k from the key projection, C^v from the value fuser, C^h from the decoder's sensory updater, 0 when
absent). A single-object (stage-0) checkpoint has a 4-channel value-encoder conv1; a multi-object network widens
it to 5 channels: zeros for evaluation (the original's eval path, so the network ignores "others" exactly as
trained), orthogonal random for training (the original's stage 0 -> 1/2/3 path).
"""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from configs.common import atomic_write, plain_text, resolve_device
from model.network import DEFAULT_HIDDEN_DIM, DEFAULT_KEY_DIM, DEFAULT_VALUE_DIM, XMem

_KEY_DIM_KEY = "key_proj.key_proj.weight"
_VALUE_DIM_KEY = "value_encoder.fuser.block2.conv2.weight"
_HIDDEN_DIM_KEY = "decoder.hidden_update.transform.weight"
_VALUE_CONV1_KEY = "value_encoder.conv1.weight"
_TRAINING_CHECKPOINT_ENTRY = "network"  # training checkpoints store the state_dict under this key
_GRU_GATES = 3
_SINGLE_OBJECT_CHANNELS = 4  # RGB + mask
_MULTI_OBJECT_CHANNELS = 5  # RGB + mask + others
_DDP_PREFIX = "module."
_KEYS_SHOWN = 3  # how many missing/unexpected keys an error message lists

# ImageNet trunks as torchvision publishes them (same V1 weights under the legacy and the current name).
_IMAGENET_URL_ROOT = "https://download.pytorch.org/models/"
_RESNET50_FILES = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")
_RESNET18_FILES = ("resnet18-5c106cde.pth", "resnet18-f37072fd.pth")
# torchvision module name -> our name; only the stem and layers 1-3 are kept (layer4 and fc are skipped).
_RESNET50_TO_KEY_ENCODER = {"conv1": "conv1", "bn1": "bn1", "layer1": "res2", "layer2": "layer2", "layer3": "layer3"}
_RESNET18_TO_VALUE_ENCODER = {
    "conv1": "conv1", "bn1": "bn1", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3"
}


@dataclass(frozen=True)
class NetworkDims:
    """Network dims read from a state_dict: C^k, C^v, C^h (0 = no sensory) and whether conv1 has 4 channels."""

    key_dim: int
    value_dim: int
    hidden_dim: int
    single_object: bool


def _describe(source: str | os.PathLike | None) -> str:
    return f"checkpoint {str(source)!r}" if source is not None else "state_dict"


def _list_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > _KEYS_SHOWN else ''})"


def _not_xmem_error(state_dict: Mapping[str, torch.Tensor], expected: list[str], source) -> ValueError:
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in set(expected)]
    wrapped = bool(unexpected) and all(key.startswith(_DDP_PREFIX) for key in unexpected)
    fix = (
        f"the keys carry the DDP wrapper's {_DDP_PREFIX!r} prefix: save network.module.state_dict() instead"
        if wrapped
        else "pass a released XMem .pth or a checkpoint saved by this project"
    )
    return ValueError(
        f"{_describe(source)} is not an XMem state_dict: missing keys {_list_keys(missing)}, unexpected keys "
        f"{_list_keys(unexpected)}; {fix}"
    )


def infer_network_dims(state_dict: Mapping[str, torch.Tensor], *, source=None) -> NetworkDims:
    """Read C^k, C^v, C^h and the value-encoder input width from XMem weights.

    Args:
        state_dict: XMem state_dict (released layout).
        source: file name used in error messages.
    Returns:
        NetworkDims; hidden_dim is 0 when `decoder.hidden_update.*` is absent (no-sensory model).
    Raises:
        ValueError: the keys the dims are read from are missing (not an XMem state_dict).
    """
    if not all(key in state_dict for key in (_KEY_DIM_KEY, _VALUE_DIM_KEY, _VALUE_CONV1_KEY)):
        default_dims = NetworkDims(DEFAULT_KEY_DIM, DEFAULT_VALUE_DIM, DEFAULT_HIDDEN_DIM, single_object=False)
        raise _not_xmem_error(state_dict, _expected_keys(default_dims), source)
    hidden_weight = state_dict.get(_HIDDEN_DIM_KEY)
    return NetworkDims(
        key_dim=state_dict[_KEY_DIM_KEY].shape[0],
        value_dim=state_dict[_VALUE_DIM_KEY].shape[0],
        hidden_dim=0 if hidden_weight is None else hidden_weight.shape[0] // _GRU_GATES,
        single_object=state_dict[_VALUE_CONV1_KEY].shape[1] == _SINGLE_OBJECT_CHANNELS,
    )


def _build_on_meta(dims: NetworkDims) -> XMem:
    """An XMem with no storage (for key/shape checks and to skip random initialisation)."""
    with torch.device("meta"):
        return XMem(
            key_dim=dims.key_dim, value_dim=dims.value_dim, hidden_dim=dims.hidden_dim,
            single_object=dims.single_object,
        )


def _expected_keys(dims: NetworkDims) -> list[str]:
    return list(_build_on_meta(dims).state_dict().keys())


def _widened_conv1(weight: torch.Tensor, extra_channels: int, *, orthogonal: bool) -> torch.Tensor:
    """Append `extra_channels` input channels to a conv1 weight: zeros, or orthogonal random (as the original)."""
    padding = torch.zeros(weight.shape[0], extra_channels, *weight.shape[2:], dtype=weight.dtype)
    if orthogonal:
        nn.init.orthogonal_(padding)
    return torch.cat([weight, padding.to(weight.device)], dim=1)


def build_network_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    device: str | torch.device = "cpu",
    *,
    for_training: bool = False,
    single_object: bool = False,
    source: str | os.PathLike | None = None,
) -> XMem:
    """Build an XMem with the dims of `state_dict` and load it strictly.

    Args:
        state_dict: XMem weights (released layout, no `module.` prefix).
        device: where the network goes: auto (cuda, mps or cpu, the first available), cpu, cuda, cuda:N, mps.
        for_training: widen a 4-channel value conv1 with orthogonal random weights (stage 0 -> main training)
            instead of zeros (evaluation).
        single_object: build the 4-channel single-object network (stage-0 training); needs a 4-channel conv1.
        source: file name used in error messages.
    Returns:
        XMem in eval mode on `device`.
    Raises:
        ValueError: not an XMem state_dict (summary of missing/unexpected keys), a wrongly shaped tensor (key,
            expected and received shape), or a 5-channel checkpoint for a single-object network.
    """
    dims = infer_network_dims(state_dict, source=source)
    weights = dict(state_dict)
    if dims.single_object and not single_object:
        weights[_VALUE_CONV1_KEY] = _widened_conv1(
            weights[_VALUE_CONV1_KEY], _MULTI_OBJECT_CHANNELS - _SINGLE_OBJECT_CHANNELS, orthogonal=for_training
        )
    elif single_object and not dims.single_object:
        raise ValueError(
            f"{_describe(source)} has a {weights[_VALUE_CONV1_KEY].shape[1]}-channel value encoder; a single-object "
            f"network needs {_SINGLE_OBJECT_CHANNELS} (load it as multi-object with single_object=False)"
        )
    target_dims = NetworkDims(dims.key_dim, dims.value_dim, dims.hidden_dim, single_object)
    skeleton = _build_on_meta(target_dims)
    expected = skeleton.state_dict()
    if set(expected) != set(weights):
        raise _not_xmem_error(weights, list(expected), source)
    for key, reference in expected.items():
        if weights[key].shape != reference.shape:
            raise ValueError(
                f"{_describe(source)}: {key} has shape {tuple(weights[key].shape)}, expected "
                f"{tuple(reference.shape)} for an XMem with key_dim={dims.key_dim}, value_dim={dims.value_dim}, "
                f"hidden_dim={dims.hidden_dim}"
            )
    # Every tensor is overwritten by the strict load, so skip random initialisation.
    network = skeleton.to_empty(device=resolve_device(device))
    network.load_state_dict(weights, strict=True)
    return network.eval()


def _read_weights_file(path: Path, what: str) -> object:
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} file not found: {str(path)!r}; check the path (released XMem weights: "
            "scripts/data/download_models.py)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, OSError) as error:
        reason = plain_text(str(error).strip().splitlines()[0]) if str(error).strip() else type(error).__name__
        raise ValueError(
            f"cannot read {what} {str(path)!r}: truncated, corrupt or not a weights-only PyTorch file ({reason}); "
            "download it again"
        ) from error


def load_network(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    for_training: bool = False,
    single_object: bool = False,
) -> XMem:
    """Load a released XMem state_dict or a training checkpoint (a dict with a 'network' entry).

    Example: `network = load_network("saves/XMem.pth", device="cuda")`.

    Args:
        path: .pth file.
        device: where the network goes: auto (cuda, mps or cpu, the first available), cpu, cuda, cuda:N, mps.
        for_training: how a 4-channel (stage-0) value conv1 is widened: orthogonal random when True, zeros
            when False.
        single_object: build the single-object (4-channel) network instead; for resuming stage-0 training.
    Returns:
        XMem in eval mode on `device`, dims read from the weights.
    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is truncated/corrupt/not loadable with weights_only, is not an XMem state_dict, or
            has a wrongly shaped tensor (each message names the file).
    """
    path = Path(path)
    loaded = _read_weights_file(path, "checkpoint")
    if isinstance(loaded, Mapping) and isinstance(loaded.get(_TRAINING_CHECKPOINT_ENTRY), Mapping):
        loaded = loaded[_TRAINING_CHECKPOINT_ENTRY]
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {type(loaded).__name__}, not a state_dict of tensors; pass a released "
            "XMem .pth or a training checkpoint with a 'network' entry"
        )
    return build_network_from_state_dict(
        loaded, device, for_training=for_training, single_object=single_object, source=path
    )


def save_network(network: XMem, path: str | os.PathLike) -> None:
    """Save the network's plain state_dict (the released format) atomically: temp file, then rename.

    Args:
        network: the XMem to save (a DDP wrapper's `.module`, not the wrapper).
        path: destination .pth; parent folders are created.
    """
    atomic_write(path, lambda temporary: torch.save(network.state_dict(), temporary))


def _find_imagenet_file(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def _trunk_state(torchvision_state: Mapping[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ResNet state_dict into our names, keeping the trunk and dropping num_batches_tracked."""
    renamed = {}
    for key, tensor in torchvision_state.items():
        module_name, _, rest = key.partition(".")
        if module_name in renames and not key.endswith("num_batches_tracked"):
            renamed[f"{renames[module_name]}.{rest}"] = tensor
    return renamed


def _checked_trunk_targets(
    module: nn.Module, state: Mapping[str, torch.Tensor], trunk_names: set[str], path: Path
) -> dict[str, torch.Tensor]:
    """`module`'s trunk tensors (to copy `state` into), after checking that `state` has each one, rightly shaped."""
    targets = {
        key: tensor for key, tensor in module.state_dict().items()
        if key.partition(".")[0] in trunk_names and not key.endswith("num_batches_tracked")
    }
    missing = [key for key in targets if key not in state]
    if missing:
        raise ValueError(
            f"ImageNet weights {str(path)!r} are not a torchvision ResNet state_dict: missing "
            f"{_list_keys(missing)}; download the file again"
        )
    for key, target in targets.items():
        if state[key].shape != target.shape:
            raise ValueError(
                f"ImageNet weights {str(path)!r}: {key} has shape {tuple(state[key].shape)}, expected "
                f"{tuple(target.shape)}; use torchvision's ResNet-50 / ResNet-18 ImageNet files"
            )
    return targets


def load_imagenet_trunks(network: XMem, *, checkpoint_dir: str | os.PathLike | None = None) -> None:
    """Initialise both ResNet trunks from torchvision's ImageNet weights found locally (start of training).

    Looks in `checkpoint_dir` (default: `torch.hub.get_dir()/checkpoints`, torchvision's cache) for
    resnet50-19c8e357.pth or resnet50-0676ba61.pth, and resnet18-5c106cde.pth or resnet18-f37072fd.pth. Never
    downloads. The value encoder's conv1 gets orthogonal random weights for its extra mask channels (2 for
    multi-object, 1 for single-object), as the original. BatchNorm `num_batches_tracked` is left untouched.

    Args:
        network: the XMem whose trunks are overwritten in place.
        checkpoint_dir: folder holding the .pth files.
    Raises:
        FileNotFoundError: a file is absent (the message names the expected path and the download URL).
        ValueError: a file is corrupt or not a torchvision ResNet.
    """
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    found = {names: _find_imagenet_file(directory, names) for names in (_RESNET50_FILES, _RESNET18_FILES)}
    absent = [names[0] for names, file in found.items() if file is None]
    if absent:
        raise FileNotFoundError(
            "ImageNet weights not found: expected "
            + " and ".join(str(directory / name) for name in absent)
            + "; on a machine with internet download "
            + " and ".join(_IMAGENET_URL_ROOT + name for name in absent)
            + f" into {directory} (or pass checkpoint_dir=)"
        )
    resnet50_path, resnet18_path = found[_RESNET50_FILES], found[_RESNET18_FILES]
    key_state = _trunk_state(_read_weights_file(resnet50_path, "ImageNet weights"), _RESNET50_TO_KEY_ENCODER)
    value_state = _trunk_state(_read_weights_file(resnet18_path, "ImageNet weights"), _RESNET18_TO_VALUE_ENCODER)
    conv1 = value_state.get("conv1.weight")
    input_channels = network.value_encoder.conv1.weight.shape[1]
    if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] < input_channels:
        value_state["conv1.weight"] = _widened_conv1(conv1, input_channels - conv1.shape[1], orthogonal=True)
    # Check both files before writing anything, so a bad file leaves the network untouched.
    copies = [
        (state, _checked_trunk_targets(module, state, set(renames.values()), path))
        for module, state, renames, path in (
            (network.key_encoder, key_state, _RESNET50_TO_KEY_ENCODER, resnet50_path),
            (network.value_encoder, value_state, _RESNET18_TO_VALUE_ENCODER, resnet18_path),
        )
    ]
    with torch.no_grad():
        for state, targets in copies:
            for key, target in targets.items():
                target.copy_(state[key])
