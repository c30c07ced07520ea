"""The starting network of a from-scratch run: a random-init XMem whose BatchNorm statistics are calibrated on
training clips (what the quickstart and the ablation study train from)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import default_collate

from configs.schema import ModelConfig
from model.checkpoint import save_network
from model.network import XMem

INIT_CHECKPOINT = "calibrated_init.pth"  # the file name a run folder keeps its starting network under


@torch.no_grad()
def calibrate_batchnorm(network: XMem, clips: Sequence[dict[str, Any]]) -> None:
    """Set every BatchNorm's running mean and variance to its statistics over `clips`, then freeze it again.

    A random-init network has running statistics 0 / 1, under which the deep trunks' activations grow from block
    to block; the paper instead starts from ImageNet statistics and never updates them. Here each BatchNorm averages
    the batch statistics it sees (cumulative average) while the trunks run in train mode over the clips' frames
    and first-frame masks; each layer is normalised by batch statistics meanwhile, so every later layer is
    calibrated on the inputs it will see in eval mode. No weight changes.

    Args:
        network: a single-object (stage-0) XMem; modified in place and left in eval mode.
        clips: StaticImageDataset samples (rgb T×3×S×S normalised, first_frame_gt 1×1×S×S in {0, 1}).
    """
    batch_norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [module.momentum for module in batch_norms]
    network.eval()
    for module in batch_norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative moving average: every batch counts the same
        module.train()
    batch = default_collate(list(clips))
    _run_trunks(network, batch["rgb"], batch["first_frame_gt"][:, 0])
    for module, momentum in zip(batch_norms, momenta):
        module.momentum = momentum
    network.eval()


def _run_trunks(network: XMem, frames: torch.Tensor, masks: torch.Tensor) -> None:
    """Both trunks over a batch: the key encoder on every frame (B×T×3×S×S), the value encoder on frame 0 with its
    per-object masks (B×N×S×S) and a zero sensory memory."""
    device = network.device
    frames, masks = frames.to(device), masks.to(device)
    first_f16 = network.encode_key(frames).f16[:, 0]
    hidden = torch.zeros(masks.shape[0], masks.shape[1], network.hidden_dim, *first_f16.shape[-2:], device=device)
    network.encode_value(frames[:, 0], first_f16, hidden, masks)


@dataclass(frozen=True)
class BatchNormDrift:
    """How far one frozen BatchNorm's running statistics lie from the statistics of its input on a batch."""

    layer: str  # the module's name in the network, e.g. key_encoder.layer3.5.bn1
    mean_shift: float  # channel mean of |batch mean − running mean| / running standard deviation
    variance_log_ratio: float  # channel mean of |ln(batch variance / running variance)|


@torch.no_grad()
def batchnorm_drift(network: XMem, frames: torch.Tensor, masks: torch.Tensor) -> list[BatchNormDrift]:
    """Every BatchNorm's drift on a batch, the network in eval mode throughout (nothing in it changes).

    Training with frozen statistics (`train.batchnorm: frozen`) keeps each BatchNorm's running statistics where
    they started while the weights before it learn; this measures how far apart the two have moved. Right after
    `calibrate_batchnorm` on the same batch it is 0 at the trunks' stems and small deeper (calibration normalised
    each layer's input by the batch's biased variance, eval mode by the running, unbiased one).

    Args:
        network: an XMem (single-object or not).
        frames: B×T×3×S×S normalised RGB; the key encoder sees every frame, the value encoder frame 0.
        masks: B×N×S×S frame 0's per-object masks (N = 1 for a single-object network).
    Returns:
        one BatchNormDrift per BatchNorm, in module order.
    """
    batch_norms = {name: module for name, module in network.named_modules() if isinstance(module, nn.BatchNorm2d)}
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in batch_norms}
    hooks = [module.register_forward_hook(lambda _module, args, _output, name=name: inputs[name].append(args[0]))
             for name, module in batch_norms.items()]
    try:
        network.eval()
        _run_trunks(network, frames, masks)
    finally:
        for hook in hooks:
            hook.remove()
    drifts = []
    for name, module in batch_norms.items():
        channels = torch.cat([tensor.transpose(0, 1).flatten(1) for tensor in inputs[name]], dim=1)  # C×(B·H·W)
        running_std = (module.running_var + module.eps).sqrt()
        mean_shift = (channels.mean(dim=1) - module.running_mean).abs() / running_std
        log_ratio = (channels.var(dim=1) / module.running_var).log().abs()
        drifts.append(BatchNormDrift(name, mean_shift.mean().item(), log_ratio.mean().item()))
    return drifts


def calibrated_initial_network(clips: Sequence[dict[str, Any]], path: Path, device: torch.device | str, *,
                               seed: int, hidden_dim: int = ModelConfig.hidden_dim) -> Path:
    """Write the random-init single-object XMem with BatchNorm calibrated on `clips` that training starts from (a few
    seconds; callers redo it every run, so that it follows the crop size and the data). `seed` draws the random
    weights; hidden_dim: C^h (0: no sensory memory)."""
    torch.manual_seed(seed)
    network = XMem(single_object=True, hidden_dim=hidden_dim).to(device)
    calibrate_batchnorm(network, clips)
    save_network(network, path)
    return path
