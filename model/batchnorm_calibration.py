"""The starting network of a from-scratch run: a random-init XMem whose BatchNorm statistics are calibrated on
training clips (what the quickstart and the ablation study train from)."""
from __future__ import annotations

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
    device = network.device
    frames = batch["rgb"].to(device)  # B×T×3×S×S
    encoding = network.encode_key(frames)
    first_frames, first_f16 = frames[:, 0], encoding.f16[:, 0]
    masks = batch["first_frame_gt"][:, 0].to(device)  # B×1×S×S
    hidden = torch.zeros(masks.shape[0], masks.shape[1], network.hidden_dim, *first_f16.shape[-2:], device=device)
    network.encode_value(first_frames, first_f16, hidden, masks)
    for module, momentum in zip(batch_norms, momenta):
        module.momentum = momentum
    network.eval()


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
