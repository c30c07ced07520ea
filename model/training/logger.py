"""What training shows while it runs: loss averages, learning rate and speed as TensorBoard scalars, and image
grids of RGB / prediction / ground truth."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.distributed as dist
import torchvision

from configs.common import DAVIS_PALETTE, IMAGENET_MEAN, IMAGENET_STD

MAX_LOGGED_SAMPLES = 2  # image grids show at most this many clips
_COLOURS = torch.tensor(list(DAVIS_PALETTE), dtype=torch.float32).view(-1, 3) / 255  # 256×3 in [0, 1]


def image_grid(rgb: torch.Tensor, predicted: Sequence[torch.Tensor], class_maps: torch.Tensor,
               first_frame_gt: torch.Tensor) -> torch.Tensor:
    """A 3×H'×W' grid for TensorBoard: per logged sample, rows RGB / prediction / ground truth over the frames.

    Args:
        rgb: B×T×3×H×W normalised; predicted: T−1 masks B×N×H×W in [0, 1]; class_maps: B×T×1×H×W int64;
        first_frame_gt: B×N×H×W in {0, 1}.
    Returns:
        float32 3×H'×W' in [0, 1].
    """
    samples = min(rgb.shape[0], MAX_LOGGED_SAMPLES)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    colours = _COLOURS[:first_frame_gt.shape[1] + 1]
    tiles = []
    for sample in range(samples):
        frames = (rgb[sample].float().cpu() * std + mean).clamp(0, 1)
        object_masks = [first_frame_gt[sample]] + [masks[sample] for masks in predicted]
        with_background = [torch.cat([1 - m.sum(0, keepdim=True).clamp(max=1), m]) for m in object_masks]
        prediction = torch.stack([m.float().cpu().max(0).indices for m in with_background])  # argmax, far faster on CPU
        truth = class_maps[sample, :, 0].cpu().clamp(max=colours.shape[0] - 1)
        tiles += [frames, colours[prediction].permute(0, 3, 1, 2), colours[truth].permute(0, 3, 1, 2)]
    return torchvision.utils.make_grid(torch.cat(tiles), nrow=rgb.shape[1])


class TrainingLogger:
    """Averages loss terms between logs (all-reduced over ranks) and writes TensorBoard scalars and images.

    Only rank 0 writes; every rank must call `log_scalars` at the same iterations (it all-reduces).
    """

    def __init__(self, log_dir: Path | None, *, world_size: int = 1, device: torch.device | str = "cpu"):
        self.world_size = world_size
        self.device = torch.device(device)  # NCCL reduces only CUDA tensors
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # rank 0 only; the import is slow

            self.writer = SummaryWriter(str(log_dir))
        self.sums: dict[str, float] = {}
        self.count = 0
        self.iterations = 0  # since the last log, skipped steps included (for s_per_it)
        self.started = time.perf_counter()

    def add(self, values: Mapping[str, float] | None) -> None:
        """One iteration's loss terms; None for a skipped step (its inf/NaN terms stay out of the averages)."""
        self.iterations += 1
        if values is None:
            return
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def log_scalars(self, iteration: int, lr: float, extras: Mapping[str, float] | None = None) -> dict[str, float]:
        """Write the averages since the last call (loss/<term>), train/lr, train/s_per_it and `extras` (name ->
        value, the same on every rank); returns the averages."""
        names = sorted(self.sums)
        averages = torch.tensor([self.sums[name] / max(self.count, 1) for name in names], dtype=torch.float64,
                                device=self.device)
        if self.world_size > 1:
            dist.all_reduce(averages)
            averages /= self.world_size
        seconds_per_iteration = (time.perf_counter() - self.started) / max(self.iterations, 1)
        result = dict(zip(names, averages.tolist()))
        if self.writer is not None:
            for name, value in result.items():
                self.writer.add_scalar(f"loss/{name}", value, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)
            self.writer.add_scalar("train/s_per_it", seconds_per_iteration, iteration)
            for name, value in (extras or {}).items():
                self.writer.add_scalar(name, value, iteration)
        self.sums, self.count, self.iterations, self.started = {}, 0, 0, time.perf_counter()
        return result

    def log_images(self, iteration: int, grid: torch.Tensor) -> None:
        if self.writer is not None:
            self.writer.add_image("train/rgb_prediction_truth", grid, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
