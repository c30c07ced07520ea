"""One training iteration of XMem: the unrolled clip and the optimisation step.

- `ClipUnroller` (an nn.Module, DDP's single forward) unrolls a clip with the network's typed methods;
  every random choice of the iteration comes in as a `ClipPlan`, drawn from an explicit, checkpointed generator.
- `Trainer.train_step(batch)` is one optimisation step and nothing else; it reads the stage's settings from the
  typed config (`configs.schema`).

The loop around it (stages, data, logging, snapshots, resume) is `train.py`.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import warnings
from functools import partial
from typing import Any, Mapping, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from configs.common import per_rank_batch_size
from configs.schema import Config, MemoryReading, ModelConfig, StageConfig, TrainConfig
from model.memory_util import XMEM_READING
from model.training.losses import bootstrap_fraction, clip_losses
from model.network import XMem

BATCH_KEYS = ("rgb", "first_frame_gt", "cls_gt", "selector", "info")


# ------------------------------------------------------------------------------------------------------------------
# The unrolled clip


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """Every random choice of one training iteration, drawn before the forward pass.

    memory_frames[t − 1], for query frame t = 1..T−1: None when the memory is all previous frames (t ≤
        num_ref_frames), else a B×R int64 tensor of frame indices per sample (frame 0 first, then R − 1 distinct
        random earlier frames; R = num_ref_frames).
    deep_update[t − 1], for t = 1..T−2: whether frame t's value encoding deep-updates the sensory memory (one draw
        per batch and frame; frame 0 always deep-updates, the last frame is not encoded).
    readout_scale: None (the readout as read, as the original), or B floats in [0, 1] that multiply each sample's
        memory readout on every frame (the stage's readout schedule, `readout_scale`).
    """

    memory_frames: tuple[torch.Tensor | None, ...]
    deep_update: tuple[bool, ...]
    readout_scale: torch.Tensor | None = None

    def for_samples(self, start: int, stop: int) -> ClipPlan:
        """The plan of samples [start, stop) (a rank's share of a global batch)."""
        return ClipPlan(tuple(None if frames is None else frames[start:stop] for frames in self.memory_frames),
                        self.deep_update, None if self.readout_scale is None else self.readout_scale[start:stop])


def sample_clip_plan(batch_size: int, num_frames: int, num_ref_frames: int, deep_update_prob: float,
                     generator: torch.Generator) -> ClipPlan:
    """Draw a `ClipPlan` as the original does: per query frame, memory indices per sample, then the deep-update coin.

    Args:
        batch_size: B, the global batch (every rank draws the same plan and takes its slice).
        num_frames: T ≥ 2.
        num_ref_frames: R ≥ 1, memory frames read per query frame.
        deep_update_prob: probability that a non-final frame's value encoding deep-updates the sensory memory.
        generator: CPU generator, advanced in place.
    Raises:
        ValueError: T < 2 or R < 1.
    """
    if num_frames < 2 or num_ref_frames < 1:
        raise ValueError(f"a training clip needs num_frames ≥ 2 and num_ref_frames ≥ 1, got "
                         f"num_frames={num_frames}, num_ref_frames={num_ref_frames}; fix train.stageN")
    memory_frames: list[torch.Tensor | None] = []
    deep_update: list[bool] = []
    for frame in range(1, num_frames):
        if frame <= num_ref_frames:
            memory_frames.append(None)
        else:
            earlier = [torch.randperm(frame - 1, generator=generator)[:num_ref_frames - 1] + 1
                       for _ in range(batch_size)]
            first = torch.zeros(batch_size, 1, dtype=torch.int64)
            memory_frames.append(torch.cat([first, torch.stack(earlier)], dim=1))
        if frame < num_frames - 1:
            deep_update.append(torch.rand((), generator=generator).item() < deep_update_prob)
    return ClipPlan(tuple(memory_frames), tuple(deep_update))


def readout_scale(iteration: int, stage: StageConfig, batch_size: int, seed: int) -> torch.Tensor | None:
    """The per-sample factors of the memory readout at `iteration` (0-based, within the stage), or None for 1.

    The stage's readout warm-up and ramp give every sample the same factor (0, then rising linearly to 1); readout
    dropout then zeroes each sample's factor with probability `stage.readout_dropout`. The dropout's coins come
    from a generator seeded by (seed, iteration), not from the plan's generator, so that the memory-frame and
    deep-update draws are the same as without it and a resumed run draws the same coins.

    Returns:
        B float32 factors in [0, 1], or None when every factor is 1.
    """
    ramp_position = iteration - stage.readout_warmup
    if ramp_position < 0:
        factor = 0.0
    else:
        factor = min(1.0, (ramp_position + 1) / stage.readout_ramp) if stage.readout_ramp else 1.0
    scale = torch.full((batch_size,), factor)
    if stage.readout_dropout > 0 and iteration < stage.readout_dropout_iterations:
        coins = torch.rand(batch_size, generator=torch.Generator().manual_seed(seed * 1_000_003 + iteration))
        scale[coins < stage.readout_dropout] = 0.0
    return None if bool((scale == 1.0).all()) else scale


def recent_frames_plan(batch_size: int, num_frames: int, num_ref_frames: int) -> ClipPlan:
    """A plan without randomness (for visualisation): memory = frame 0 + the most recent R − 1 frames, no deep
    update after frame 0."""
    memory_frames: list[torch.Tensor | None] = []
    for frame in range(1, num_frames):
        if frame <= num_ref_frames:
            memory_frames.append(None)
        else:
            indices = [0, *range(frame - num_ref_frames + 1, frame)]
            memory_frames.append(torch.tensor(indices).expand(batch_size, -1))
    return ClipPlan(tuple(memory_frames), (False,) * max(num_frames - 2, 0))


class ClipOutput(NamedTuple):
    """Predictions for frames 1..T−1: logits B×(N+1)×H×W (background first), masks B×N×H×W in [0, 1]."""

    logits: list[torch.Tensor]
    masks: list[torch.Tensor]


def _select_frames(tensor: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Per-sample frame selection along dim 2: tensor B×C×T×…, frames B×R -> B×C×R×…."""
    return torch.stack([tensor[sample, :, frames[sample]] for sample in range(tensor.shape[0])])


class ClipUnroller(nn.Module):
    """The training forward of XMem over a clip: DDP's single forward, built from the network's typed methods.

    By default the whole network stays in eval mode even while training (BatchNorm keeps its ImageNet statistics;
    its affine parameters are still optimised), as in the original.

    Args:
        network: the XMem to train.
        reading: the memory-reading switches (ablations), see `XMem.read_memory`.
        batch_statistics: BatchNorm in train mode (train.batchnorm = batch) instead of frozen.
    """

    def __init__(self, network: XMem, *, reading: MemoryReading = XMEM_READING, batch_statistics: bool = False):
        super().__init__()
        self.network = network
        self.reading = reading
        self.batch_statistics = batch_statistics

    def train(self, mode: bool = True) -> ClipUnroller:
        super().train(mode)
        if not self.batch_statistics:
            self.network.eval()  # frozen BatchNorm statistics for the whole of training, as the original
        return self

    def forward(self, rgb: torch.Tensor, first_frame_gt: torch.Tensor, selector: torch.Tensor,
                plan: ClipPlan) -> ClipOutput:
        """Segment frames 1..T−1 of a clip given frame 0's masks.

        Args:
            rgb: B×T×3×H×W normalised RGB, H and W multiples of 16.
            first_frame_gt: B×N×H×W float masks of frame 0 in {0, 1} (padded slots all zero).
            selector: B×N float, 1 for real objects, 0 for padded slots.
            plan: the iteration's random choices for these B samples.
        Returns:
            ClipOutput with T − 1 logits and masks; masks are fed back into the value encoder soft and with
            gradients, as in the original.
        """
        network = self.network
        batch_size, num_frames = rgb.shape[:2]
        key, shrinkage, selection, f16, f8, f4 = network.encode_key(rgb)
        object_selector = selector[:, :, None, None]
        hidden = None
        if network.hidden_dim > 0:
            # In the input's dtype (float32 under AMP too), as the original's hidden state starts.
            hidden = torch.zeros(batch_size, first_frame_gt.shape[1], network.hidden_dim, *key.shape[-2:],
                                 device=rgb.device, dtype=rgb.dtype)
        value, hidden = network.encode_value(rgb[:, 0], f16[:, 0], hidden, first_frame_gt, is_deep_update=True)
        values = [value]
        logits, masks = [], []
        for frame in range(1, num_frames):
            memory_value = torch.stack(values, dim=3)  # B×N×C^v×t×h×w
            memory_key, memory_shrinkage = key[:, :, :frame], shrinkage[:, :, :frame]
            frames = plan.memory_frames[frame - 1]
            if frames is not None:
                memory_key = _select_frames(memory_key, frames)
                memory_shrinkage = _select_frames(memory_shrinkage, frames)
                memory_value = torch.stack([memory_value[sample, :, :, frames[sample]]
                                            for sample in range(batch_size)])
            readout = network.read_memory(
                key[:, :, frame], selection[:, :, frame], memory_key, memory_shrinkage, memory_value,
                reading=self.reading)
            if plan.readout_scale is not None:
                readout = readout * plan.readout_scale.to(readout)[:, None, None, None, None]
            is_last = frame == num_frames - 1
            hidden, frame_logits, frame_masks = network.segment(
                (f16[:, frame], f8[:, frame], f4[:, frame]), readout, hidden, selector=object_selector,
                update_hidden=not is_last)
            if not is_last:
                value, hidden = network.encode_value(rgb[:, frame], f16[:, frame], hidden, frame_masks,
                                                     is_deep_update=plan.deep_update[frame - 1])
                values.append(value)
            logits.append(frame_logits)
            masks.append(frame_masks)
        return ClipOutput(logits, masks)


# ------------------------------------------------------------------------------------------------------------------
# One optimisation step


def learning_rate_factor(iteration: int, stage: StageConfig, gamma: float) -> float:
    """The factor of `stage.lr` for the step at `iteration` (0-based, within the stage).

    A linear warm-up over the first `stage.lr_warmup` iterations (from 1 / lr_warmup to 1) times the schedule:
    "step" multiplies by `gamma` at each of `stage.lr_steps` (the original's MultiStepLR), "cosine" falls from 1
    to 0 along half a cosine over `stage.total_iterations`.
    """
    warmup = min(1.0, (iteration + 1) / stage.lr_warmup) if stage.lr_warmup else 1.0
    if stage.lr_schedule == "cosine":
        progress = min(iteration / stage.total_iterations, 1.0)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warmup * gamma ** bisect.bisect_right(sorted(stage.lr_steps), iteration)


class Trainer:
    """Optimises an XMem over training clips: AdamW, the lr schedule stepped per iteration, AMP + GradScaler on CUDA.

    With torch.distributed initialised (world size > 1), the clip unroller is wrapped in DDP; every rank draws
    the plan of the whole global batch from the same generator and uses its own slice, so a DDP run equals a
    single-process run on the same global batch.

    A non-finite loss: in float32 it raises at once. Under a GradScaler (AMP) the step is skipped as GradScaler
    intends (its inf/NaN gradients make `scaler.step` skip and `scaler.update` lower the scale), counted in
    `nonfinite_steps` and warned about; only `train.max_nonfinite_steps` of them in a row raise.

    Args:
        network: the XMem to train (on `device`).
        config: the resolved configuration; the trainer reads `train`, `train.stage<stage>` and `model`.
        stage: '0'..'3'.
        device: where batches go.
        rank, world_size: this process's place in the process group.
    Raises:
        ValueError: unknown stage, or the global batch is not divisible by world_size.
    """

    def __init__(self, network: XMem, config: Config, stage: str, *, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1):
        self.network = network
        self.train_config: TrainConfig = config.train
        self.stage_config: StageConfig = config.train.stage(stage)
        self.model_config: ModelConfig = config.model
        self.stage = stage
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.local_batch_size = per_rank_batch_size(self.stage_config.batch_size, world_size,
                                                    what=f"train.stage{stage}.batch_size")
        self.iteration = 0  # within the stage; drives the bootstrapped-CE schedule
        self.nonfinite_steps = 0  # skipped (non-finite loss) steps of this stage so far
        self.consecutive_nonfinite_steps = 0
        self.use_amp = self.train_config.use_amp and self.device.type == "cuda"
        self.generator = torch.Generator().manual_seed(self.train_config.seed)
        reading = self.model_config.reading
        unroller = ClipUnroller(network, reading=reading, batch_statistics=self.train_config.batchnorm == "batch")
        self.model: nn.Module = unroller.train()
        if world_size > 1:
            self.model = DistributedDataParallel(
                unroller, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=_has_unused_parameters(self.stage_config, reading, network))
        # The fused kernel computes the same update as the original's AdamW, several times faster.
        self.optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad],
                                           lr=self.stage_config.lr, weight_decay=self.train_config.weight_decay,
                                           fused=_supports_fused_adamw(self.device))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(learning_rate_factor, stage=self.stage_config, gamma=self.train_config.gamma))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One iteration on a batch; returns every loss term as a float ("total_loss", "p", "ce_loss_t", ...).

        Args:
            batch: this rank's share of the global batch: rgb B×T×3×H×W normalised, first_frame_gt B×1×N×H×W
                float {0, 1}, cls_gt B×T×1×H×W int64 (0 = background, i + 1 = slot i), selector B×N float,
                info.num_objects B int (≥ 1).
        Returns:
            the loss terms; after a skipped step (`last_step_skipped`) some are inf/NaN.
        Raises:
            KeyError: a batch entry is missing. ValueError: wrong batch size.
            FloatingPointError: the loss is not finite in float32, or under AMP for `train.max_nonfinite_steps`
                iterations in a row (names the iteration and every loss term).
        """
        rgb, first_frame_gt, class_maps, selector, num_objects = self._unpack(batch)
        plan = self._sample_plan(rgb.shape[1])
        stage, train = self.stage_config, self.train_config
        fraction = bootstrap_fraction(self.iteration, stage.start_warm, stage.end_warm,
                                      train.bootstrap_final_fraction)

        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            output = self.model(rgb, first_frame_gt, selector, plan)
            losses = clip_losses(output.logits, output.masks, class_maps, num_objects, fraction)
        values = {name: loss.item() for name, loss in losses.items()}
        self._count_non_finite(values)
        self.scaler.scale(losses["total_loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        if train.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.network.parameters(), train.clip_grad_norm)
        self.scaler.step(self.optimizer)  # skipped when the unscaled gradients hold inf/NaN
        self.scaler.update()  # and then the loss scale is lowered
        self.scheduler.step()

        self.iteration += 1
        return values

    @property
    def last_step_skipped(self) -> bool:
        """Whether the last `train_step` had a non-finite loss and therefore left the weights unchanged."""
        return self.consecutive_nonfinite_steps > 0

    @torch.no_grad()
    def predict_masks(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Masks of frames 1..T−1 (B×N×H×W) with a plan free of randomness, for image logs; no state changes."""
        rgb, first_frame_gt, _, selector, _ = self._unpack(batch)
        plan = recent_frames_plan(rgb.shape[0], rgb.shape[1], self.stage_config.num_ref_frames)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            return self._unroller(rgb, first_frame_gt, selector, plan).masks

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        """Network, optimiser, scheduler, scaler, iteration and clip-plan generator state."""
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "iteration": self.iteration, "plan_generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()`'s output (network weights included) so that training continues exactly."""
        self.network.load_state_dict(state["network"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler_state = dict(state["scheduler"])
        # Checkpoints of earlier versions hold a MultiStepLR's state: its iteration count is all that carries over.
        scheduler_state.setdefault("lr_lambdas", [None] * len(self.optimizer.param_groups))
        self.scheduler.load_state_dict(scheduler_state)
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.generator.set_state(state["plan_generator"])

    @property
    def _unroller(self) -> ClipUnroller:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def _sample_plan(self, num_frames: int) -> ClipPlan:
        stage = self.stage_config
        plan = sample_clip_plan(stage.batch_size, num_frames, stage.num_ref_frames, self.train_config.deep_update_prob,
                                self.generator)
        plan = dataclasses.replace(plan, readout_scale=readout_scale(self.iteration, stage, stage.batch_size,
                                                                     self.train_config.seed))
        start = self.rank * self.local_batch_size
        return plan.for_samples(start, start + self.local_batch_size)

    def _unpack(self, batch: Mapping[str, Any]):
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise KeyError(f"training batch lacks {missing}; expected entries {list(BATCH_KEYS)} (info with "
                           "num_objects), as the training datasets produce")
        rgb = batch["rgb"].to(self.device, non_blocking=True)
        if rgb.shape[0] != self.local_batch_size:
            raise ValueError(f"training batch has {rgb.shape[0]} clips, expected {self.local_batch_size} per process "
                             f"(global batch {self.stage_config.batch_size} over {self.world_size} processes)")
        first_frame_gt = batch["first_frame_gt"].to(self.device, rgb.dtype, non_blocking=True)[:, 0]
        class_maps = batch["cls_gt"].to(self.device, non_blocking=True).long()
        selector = batch["selector"].to(self.device, rgb.dtype, non_blocking=True)
        num_objects = [int(count) for count in batch["info"]["num_objects"]]
        return rgb, first_frame_gt, class_maps, selector, num_objects

    def _count_non_finite(self, values: Mapping[str, float]) -> None:
        """Raise, or (under a GradScaler) count and warn, when a loss term is not finite on any rank."""
        non_finite = not all(math.isfinite(value) for value in values.values())
        if self.world_size > 1:  # every rank must take the same decision (the gradients are shared anyway)
            flag = torch.tensor([float(non_finite)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            non_finite = bool(flag.item())
        if not non_finite:
            self.consecutive_nonfinite_steps = 0
            return
        terms = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
        where = f"non-finite loss at iteration {self.iteration} of stage {self.stage}: {terms}"
        if not self.scaler.is_enabled():
            raise FloatingPointError(f"{where}; lower the learning rate, or check the data of this batch")
        self.nonfinite_steps += 1
        self.consecutive_nonfinite_steps += 1
        limit = self.train_config.max_nonfinite_steps
        if self.consecutive_nonfinite_steps >= limit:
            raise FloatingPointError(f"{where}; {self.consecutive_nonfinite_steps} non-finite steps in a row "
                                     f"(train.max_nonfinite_steps={limit}); lower the learning rate, or check the "
                                     "data")
        warnings.warn(f"{where}; step skipped by the AMP GradScaler ({self.consecutive_nonfinite_steps} in a row, "
                      f"training stops at {limit})", RuntimeWarning, stacklevel=3)


def _supports_fused_adamw(device: torch.device) -> bool:
    return device.type in ("cuda", "cpu")  # fused kernels for both since torch 2.4, the floor of requirements.txt


def _has_unused_parameters(stage: StageConfig, reading: MemoryReading, network: XMem) -> bool:
    """Whether some parameters get no gradient in every iteration (DDP must then search for them)."""
    # A 2-frame clip never runs the decoder's sensory update; switched-off reading terms leave projections unused.
    return (stage.num_frames < 3 and network.hidden_dim > 0) or not reading.uses_every_key_projection_output
