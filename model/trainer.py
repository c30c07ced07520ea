"""Training XMem: the unrolled clip, one optimisation step, and the per-stage loop with logging and checkpoints.

Three layers, each readable on its own:
- `ClipUnroller` (an nn.Module, DDP's single forward) unrolls a clip with the network's typed methods;
  every random choice of the iteration comes in as a `ClipPlan`, drawn from an explicit, checkpointed generator.
- `Trainer.train_step(batch)` is one optimisation step and nothing else.
- `run_stage` / `run_training` are the outer loop: curriculum and fine-tune phases, data position, logging
  (TensorBoard + tqdm), network snapshots and exact-resume checkpoints, stages one after another.

This module never imports `configs` or `dataset` (import rules): the loop takes the resolved config by duck typing
(a `configs.schema.Config`) and a `StageData` (curriculum + batch builder) per stage from the caller.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Sequence

import torch
import torch.distributed as dist
import torchvision
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from model.checkpoint import build_network_from_state_dict, load_imagenet_trunks, load_network, save_network
from model.losses import bootstrap_fraction, clip_losses
from model.network import XMem

SINGLE_OBJECT_STAGE = "0"  # stage 0 (static images) trains the single-object network
KNOWN_STAGES = ("0", "1", "2", "3")
BATCH_KEYS = ("rgb", "first_frame_gt", "cls_gt", "selector", "info")
MAX_LOGGED_SAMPLES = 2  # image grids show at most this many clips
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT_FORMAT = 1  # version of the resume-checkpoint dict
FUSED_ADAMW_CPU_SINCE = (2, 4)  # torch version with a fused AdamW kernel for CPU tensors


# ------------------------------------------------------------------------------------------------------------------
# The unrolled clip


@dataclass(frozen=True)
class ClipPlan:
    """Every random choice of one training iteration, drawn before the forward pass.

    memory_frames[t − 1], for query frame t = 1..T−1: None when the memory is all previous frames (t ≤
        num_ref_frames), else a B×R int64 tensor of frame indices per sample (frame 0 first, then R − 1 distinct
        random earlier frames; R = num_ref_frames).
    deep_update[t − 1], for t = 1..T−2: whether frame t's value encoding deep-updates the sensory memory (one draw
        per batch and frame; frame 0 always deep-updates, the last frame is not encoded).
    """

    memory_frames: tuple[torch.Tensor | None, ...]
    deep_update: tuple[bool, ...]

    def for_samples(self, start: int, stop: int) -> ClipPlan:
        """The plan of samples [start, stop) (a rank's share of a global batch)."""
        return ClipPlan(tuple(None if frames is None else frames[start:stop] for frames in self.memory_frames),
                        self.deep_update)


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

    The whole network stays in eval mode even while training (BatchNorm keeps its ImageNet statistics; its affine
    parameters are still optimised), as in the original.

    Args:
        network: the XMem to train.
        similarity_mode, use_shrinkage, use_selection: memory-reading switches (ablations), see
            `XMem.read_memory`.
    """

    def __init__(self, network: XMem, *, similarity_mode: str = "l2", use_shrinkage: bool = True,
                 use_selection: bool = True):
        super().__init__()
        self.network = network
        self.similarity_mode = similarity_mode
        self.use_shrinkage = use_shrinkage
        self.use_selection = use_selection

    def train(self, mode: bool = True) -> ClipUnroller:
        super().train(mode)
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
                similarity_mode=self.similarity_mode, use_shrinkage=self.use_shrinkage,
                use_selection=self.use_selection)
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


@dataclass(frozen=True)
class StepSettings:
    """Everything one optimisation step of a stage needs (derived from the config; batch sizes are global).

    Build with `StepSettings.from_config(config, stage)` or directly in tests.
    """

    lr: float = 1e-5
    lr_steps: tuple[int, ...] = ()  # MultiStepLR milestones (iterations within the stage)
    gamma: float = 0.1
    weight_decay: float = 0.05
    start_warm: int = 20_000
    end_warm: int = 70_000
    bootstrap_final_fraction: float = 0.15
    deep_update_prob: float = 0.2
    num_frames: int = 8
    num_ref_frames: int = 3
    batch_size: int = 8  # global; each of the world_size ranks gets batch_size / world_size samples
    use_amp: bool = True  # honoured on CUDA only
    clip_grad_norm: float | None = None
    seed: int = 14159265  # seeds the clip-plan generator
    similarity_mode: str = "l2"
    use_shrinkage: bool = True
    use_selection: bool = True

    @classmethod
    def from_config(cls, config: Any, stage: str) -> StepSettings:
        """From a resolved `configs.schema.Config` and a stage name '0'..'3'."""
        train, stage_config = config.train, getattr(config.train, f"stage{stage}")
        return cls(
            lr=stage_config.lr, lr_steps=tuple(stage_config.lr_steps), gamma=train.gamma,
            weight_decay=train.weight_decay, start_warm=stage_config.start_warm, end_warm=stage_config.end_warm,
            bootstrap_final_fraction=train.bootstrap_final_fraction, deep_update_prob=train.deep_update_prob,
            num_frames=stage_config.num_frames, num_ref_frames=stage_config.num_ref_frames,
            batch_size=stage_config.batch_size, use_amp=train.use_amp, clip_grad_norm=train.clip_grad_norm,
            seed=train.seed, similarity_mode=config.model.similarity, use_shrinkage=config.model.use_shrinkage,
            use_selection=config.model.use_selection)


def per_rank_batch_size(global_batch_size: int, world_size: int, *, what: str = "batch_size") -> int:
    """The share of one rank.

    Raises:
        ValueError: the global batch is not divisible by the number of processes.
    """
    if global_batch_size < 1 or global_batch_size % world_size:
        raise ValueError(f"{what}={global_batch_size} (global) must be a positive multiple of the {world_size} "
                         f"processes; change {what} or --nproc_per_node")
    return global_batch_size // world_size


class Trainer:
    """Optimises an XMem over training clips: AdamW, MultiStepLR stepped per iteration, AMP + GradScaler on CUDA.

    With torch.distributed initialised (world size > 1), the clip unroller is wrapped in DDP; every rank draws
    the plan of the whole global batch from the same generator and uses its own slice, so a DDP run equals a
    single-process run on the same global batch.

    Args:
        network: the XMem to train (on `device`).
        settings: the stage's step settings.
        device: where batches go.
        rank, world_size: this process's place in the process group.
        stage: stage name, for error messages.
    Raises:
        ValueError: the global batch is not divisible by world_size.
    """

    def __init__(self, network: XMem, settings: StepSettings, *, device: torch.device | str = "cpu", rank: int = 0,
                 world_size: int = 1, stage: str = "3"):
        self.network = network
        self.settings = settings
        self.device = torch.device(device)
        self.rank = rank
        self.world_size = world_size
        self.stage = stage
        self.local_batch_size = per_rank_batch_size(settings.batch_size, world_size)
        self.iteration = 0  # within the stage; drives the bootstrapped-CE schedule
        self.use_amp = settings.use_amp and self.device.type == "cuda"
        self.generator = torch.Generator().manual_seed(settings.seed)
        unroller = ClipUnroller(network, similarity_mode=settings.similarity_mode,
                                use_shrinkage=settings.use_shrinkage, use_selection=settings.use_selection)
        self.model: nn.Module = unroller.train()
        if world_size > 1:
            self.model = DistributedDataParallel(
                unroller, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=_has_unused_parameters(settings, network))
        # The fused kernel computes the same update as the original's AdamW, several times faster.
        self.optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad], lr=settings.lr,
                                           weight_decay=settings.weight_decay, fused=_supports_fused_adamw(self.device))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(settings.lr_steps),
                                                              settings.gamma)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.use_amp)

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        """One iteration on a batch; returns every loss term as a float ("total_loss", "p", "ce_loss_t", ...).

        Args:
            batch: this rank's share of the global batch: rgb B×T×3×H×W normalised, first_frame_gt B×1×N×H×W
                float {0, 1}, cls_gt B×T×1×H×W int64 (0 = background, i + 1 = slot i), selector B×N float,
                info.num_objects B int (≥ 1).
        Raises:
            KeyError: a batch entry is missing. ValueError: wrong batch size.
            FloatingPointError: the loss is not finite (names the iteration and every loss term).
        """
        rgb, first_frame_gt, class_maps, selector, num_objects = self._unpack(batch)
        plan = self._sample_plan(rgb.shape[1])
        fraction = bootstrap_fraction(self.iteration, self.settings.start_warm, self.settings.end_warm,
                                      self.settings.bootstrap_final_fraction)

        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.use_amp):
            output = self.model(rgb, first_frame_gt, selector, plan)
            losses = clip_losses(output.logits, output.masks, class_maps, num_objects, fraction)
        values = {name: loss.item() for name, loss in losses.items()}
        self._raise_if_not_finite(values)
        self.scaler.scale(losses["total_loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        if self.settings.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.network.parameters(), self.settings.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

        self.iteration += 1
        return values

    @torch.no_grad()
    def predict_masks(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Masks of frames 1..T−1 (B×N×H×W) with a plan free of randomness, for image logs; no state changes."""
        rgb, first_frame_gt, _, selector, _ = self._unpack(batch)
        plan = recent_frames_plan(rgb.shape[0], rgb.shape[1], self.settings.num_ref_frames)
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
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.generator.set_state(state["plan_generator"])

    @property
    def _unroller(self) -> ClipUnroller:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def _sample_plan(self, num_frames: int) -> ClipPlan:
        settings = self.settings
        plan = sample_clip_plan(settings.batch_size, num_frames, settings.num_ref_frames, settings.deep_update_prob,
                                self.generator)
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
                             f"(global batch {self.settings.batch_size} over {self.world_size} processes)")
        first_frame_gt = batch["first_frame_gt"].to(self.device, rgb.dtype, non_blocking=True)[:, 0]
        class_maps = batch["cls_gt"].to(self.device, non_blocking=True).long()
        selector = batch["selector"].to(self.device, rgb.dtype, non_blocking=True)
        num_objects = [int(count) for count in batch["info"]["num_objects"]]
        return rgb, first_frame_gt, class_maps, selector, num_objects

    def _raise_if_not_finite(self, values: Mapping[str, float]) -> None:
        if not all(math.isfinite(value) for value in values.values()):
            terms = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
            raise FloatingPointError(f"non-finite loss at iteration {self.iteration} of stage {self.stage}: {terms}; "
                                     "lower the learning rate, or check the data of this batch")


def _supports_fused_adamw(device: torch.device) -> bool:
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return device.type == "cuda" or (device.type == "cpu" and (major, minor) >= FUSED_ADAMW_CPU_SINCE)


def _has_unused_parameters(settings: StepSettings, network: XMem) -> bool:
    """Whether some parameters get no gradient in every iteration (DDP must then search for them)."""
    # A 2-frame clip never runs the decoder's sensory update; switched-off ablation terms leave projections unused.
    return (settings.num_frames < 3 and network.hidden_dim > 0) or not (settings.use_shrinkage
                                                                        and settings.use_selection)


# ------------------------------------------------------------------------------------------------------------------
# Curriculum, data order and position


@dataclass(frozen=True)
class DataPhase:
    """What the data of an iteration looks like: the curriculum's max frame skip and the fine-tune switch."""

    max_skip: int
    finetune: bool


@dataclass(frozen=True)
class DataPosition:
    """Where the data stream of a stage stands: phase, epoch (within the stage) and batches consumed in it."""

    phase: DataPhase
    epoch: int = 0
    batches_done: int = 0


@dataclass(frozen=True)
class StageData:
    """The training data of one stage, for this rank.

    phase_at: within-stage iteration -> the data phase in force (curriculum max_skip, fine-tune switch).
    batches: (phase, epoch, start_batch) -> this rank's batches of that epoch from global batch `start_batch` on
        (e.g. a DataLoader over `GlobalBatchSampler`); a pure function of its arguments, so resume is exact.
    """

    phase_at: Callable[[int], DataPhase]
    batches: Callable[[DataPhase, int, int], Iterable[Mapping[str, Any]]]


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Batches of sample indices: one permutation per (seed, epoch); global batch g = perm[g·G : (g+1)·G] (the
    incomplete last one is dropped); this rank gets its contiguous slice, so the ranks together see exactly the
    batches of a single process, independently of the number of workers.

    Args:
        num_samples: dataset length.
        global_batch_size: G.
        rank, world_size: this process's share.
        seed, epoch: the permutation.
        start_batch: skip this many global batches (resume).
    Raises:
        ValueError: G not divisible by world_size, or fewer than G samples.
    """

    def __init__(self, num_samples: int, global_batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, epoch: int = 0, start_batch: int = 0):
        self.local_batch_size = per_rank_batch_size(global_batch_size, world_size)
        if num_samples < global_batch_size:
            raise ValueError(f"the training set has {num_samples} samples, fewer than one global batch of "
                             f"{global_batch_size}; add data or lower the batch size")
        self.num_samples, self.global_batch_size = num_samples, global_batch_size
        self.rank, self.seed, self.epoch, self.start_batch = rank, seed, epoch, start_batch

    def __len__(self) -> int:
        return max(self.num_samples // self.global_batch_size - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        offset = self.rank * self.local_batch_size
        for batch in range(self.start_batch, self.num_samples // self.global_batch_size):
            start = batch * self.global_batch_size + offset
            yield order[start:start + self.local_batch_size]


# ------------------------------------------------------------------------------------------------------------------
# Files of a run


_DEFAULT_FILE_MODE = 0o666  # what open() would create, before the umask


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Run `write(temporary_path)` then rename onto `path`, so that a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, _DEFAULT_FILE_MODE & ~_current_umask())  # mkstemp makes 0600; runs are shared
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_yaml(data: Mapping[str, Any], path: Path) -> None:
    """Write a YAML file atomically."""
    _atomic_write(Path(path), lambda temporary: Path(temporary).write_text(yaml.safe_dump(dict(data),
                                                                                            sort_keys=False)))


_CHECKPOINT_PATTERN = re.compile(r"_s(?P<stages>\d+)_checkpoint_(?P<iteration>\d+)\.pth$")


class RunDirectory:
    """File names of one run (`<save_dir>/<exp_id>/`).

    Network snapshots `<exp_id>_s<stages so far>_<iteration>.pth` (plain state_dicts, loadable by
    `model.checkpoint.load_network`) each with a sidecar `.yaml` of the model switches they were trained with
    (a `model:` config section, readable as a config preset); resume checkpoints
    `<exp_id>_s<stages so far>_checkpoint_<iteration>.pth`; `config.yaml` (resolved config),
    `environment.yaml`, and TensorBoard logs under `tensorboard/stage<name>/`.
    """

    def __init__(self, save_dir: str | os.PathLike, exp_id: str):
        self.root = Path(save_dir) / exp_id
        self.exp_id = exp_id

    def snapshot(self, stages_so_far: str, iteration: int) -> Path:
        return self.root / f"{self.exp_id}_s{stages_so_far}_{iteration}.pth"

    def checkpoint(self, stages_so_far: str, iteration: int) -> Path:
        return self.root / f"{self.exp_id}_s{stages_so_far}_checkpoint_{iteration}.pth"

    def tensorboard(self, stage: str) -> Path:
        return self.root / "tensorboard" / f"stage{stage}"

    def checkpoints(self) -> list[Path]:
        """Resume checkpoints, oldest first (by number of stages, then iteration)."""
        found = []
        for path in self.root.glob(f"{self.exp_id}_s*_checkpoint_*.pth"):
            match = _CHECKPOINT_PATTERN.search(path.name)
            if match:
                found.append((len(match["stages"]), int(match["iteration"]), path))
        return [path for _, _, path in sorted(found)]

    def latest_checkpoint(self) -> Path:
        """Raises: FileNotFoundError when the run has no resume checkpoint."""
        checkpoints = self.checkpoints()
        if not checkpoints:
            raise FileNotFoundError(f"--resume: no checkpoint '{self.exp_id}_s*_checkpoint_*.pth' in {self.root}; "
                                    "check train.save_dir / train.exp_id, or start without --resume")
        return checkpoints[-1]


def save_snapshot(network: XMem, path: Path, model_switches: Mapping[str, Any]) -> None:
    """Save a plain state_dict plus its sidecar YAML (`path` with suffix .yaml), both atomically."""
    save_network(network, path)
    write_yaml({"model": dict(model_switches)}, path.with_suffix(".yaml"))


def model_switches(config: Any, network: XMem) -> dict[str, Any]:
    """The `model:` config section a snapshot was trained with, dims taken from the network itself."""
    model = config.model
    return {"key_dim": network.key_dim, "value_dim": network.value_dim, "hidden_dim": network.hidden_dim,
            "single_object": network.single_object, "similarity": model.similarity,
            "use_shrinkage": model.use_shrinkage, "use_selection": model.use_selection}


# ------------------------------------------------------------------------------------------------------------------
# Logging


def _palette(num_colours: int) -> torch.Tensor:
    """The PASCAL VOC / DAVIS colour map (bit-interleaved), num_colours×3 float in [0, 1]."""
    colours = []
    for index in range(num_colours):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((red, green, blue))
    return torch.tensor(colours, dtype=torch.float32) / 255


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
    colours = _palette(first_frame_gt.shape[1] + 1)
    tiles = []
    for sample in range(samples):
        frames = (rgb[sample].float().cpu() * std + mean).clamp(0, 1)
        object_masks = [first_frame_gt[sample]] + [masks[sample] for masks in predicted]
        with_background = [torch.cat([1 - m.sum(0, keepdim=True).clamp(max=1), m]) for m in object_masks]
        prediction = torch.stack([m.float().cpu().argmax(0) for m in with_background])
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
        self.started = time.perf_counter()

    def add(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def log_scalars(self, iteration: int, lr: float) -> dict[str, float]:
        """Write the averages since the last call (loss/<term>, train/lr, train/s_per_it); returns the averages."""
        names = sorted(self.sums)
        averages = torch.tensor([self.sums[name] / max(self.count, 1) for name in names], dtype=torch.float64,
                                device=self.device)
        if self.world_size > 1:
            dist.all_reduce(averages)
            averages /= self.world_size
        seconds_per_iteration = (time.perf_counter() - self.started) / max(self.count, 1)
        result = dict(zip(names, averages.tolist()))
        if self.writer is not None:
            for name, value in result.items():
                self.writer.add_scalar(f"loss/{name}", value, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)
            self.writer.add_scalar("train/s_per_it", seconds_per_iteration, iteration)
        self.sums, self.count, self.started = {}, 0, time.perf_counter()
        return result

    def log_images(self, iteration: int, grid: torch.Tensor) -> None:
        if self.writer is not None:
            self.writer.add_image("train/rgb_prediction_truth", grid, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------------------------------------
# The loop


@dataclass(frozen=True)
class StageContext:
    """What the loop of one stage needs beyond the trainer.

    name: '0'..'3'; stages_so_far: e.g. '03' (names the files); config: the resolved `configs.schema.Config`;
    resolved_config: its plain-dict form (saved in checkpoints); run: the run's files (None: save nothing);
    rank, world_size: this process's place.
    """

    name: str
    stages_so_far: str
    config: Any
    resolved_config: Mapping[str, Any]
    run: RunDirectory | None
    rank: int = 0
    world_size: int = 1

    @property
    def stage_config(self) -> Any:
        return getattr(self.config.train, f"stage{self.name}")

    @property
    def total_iterations(self) -> int:
        return self.stage_config.iterations + self.stage_config.finetune_iterations

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _is_due(iteration: int, interval: int) -> bool:
    return interval > 0 and iteration % interval == 0


def save_resume_checkpoint(trainer: Trainer, context: StageContext, position: DataPosition) -> Path:
    """Write the full training state of this moment (rank 0 only), atomically; returns its path."""
    path = context.run.checkpoint(context.stages_so_far, trainer.iteration)
    state = {
        "format": CHECKPOINT_FORMAT, "stage": context.name, "stages_so_far": context.stages_so_far,
        "trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state(),
        "data_position": {"max_skip": position.phase.max_skip, "finetune": position.phase.finetune,
                          "epoch": position.epoch, "batches_done": position.batches_done},
        "config": dict(context.resolved_config),
    }
    _atomic_write(path, lambda temporary: torch.save(state, temporary))
    return path


def data_position_from_checkpoint(state: Mapping[str, Any]) -> DataPosition:
    position = state["data_position"]
    return DataPosition(DataPhase(int(position["max_skip"]), bool(position["finetune"])), int(position["epoch"]),
                        int(position["batches_done"]))


def run_stage(trainer: Trainer, context: StageContext, data: StageData,
              position: DataPosition | None = None) -> DataPosition:
    """Train one stage to its last iteration (fine-tune phase included), logging and saving at the configured
    intervals, and always saving a snapshot and a resume checkpoint at the end.

    A change of curriculum phase starts a new epoch of the rebuilt data (as the original, which drops the
    current epoch); the data position (phase, epoch, batches done) is part of every resume checkpoint.

    Args:
        trainer: at its current iteration (0, or restored from a checkpoint).
        context: stage, config, run files and rank.
        data: the stage's curriculum and batches.
        position: where the data stream stands (from a resume checkpoint); None = start of the stage.
    Returns:
        the final data position.
    Raises:
        RuntimeError: an epoch yields no batch at all (empty dataset).
    """
    train = context.config.train
    total = context.total_iterations
    position = position or DataPosition(data.phase_at(trainer.iteration))
    logger = TrainingLogger(context.run.tensorboard(context.name) if context.run and context.is_main else None,
                            world_size=context.world_size, device=trainer.device)
    batches = iter(data.batches(position.phase, position.epoch, position.batches_done))
    progress = tqdm(total=total, initial=trainer.iteration, desc=f"stage {context.name}", unit="it",
                    disable=not context.is_main, dynamic_ncols=True)
    try:
        while trainer.iteration < total:
            phase = data.phase_at(trainer.iteration)
            if phase != position.phase:
                position = DataPosition(phase, position.epoch + 1)
                batches = iter(data.batches(position.phase, position.epoch, 0))
            batch = next(batches, None)
            if batch is None:
                if position.batches_done == 0:
                    raise RuntimeError(f"stage {context.name}: epoch {position.epoch} of the training data yielded no "
                                       "batch; check the data roots and that there are at least batch_size clips")
                position = DataPosition(position.phase, position.epoch + 1)
                batches = iter(data.batches(position.phase, position.epoch, 0))
                continue
            position = DataPosition(position.phase, position.epoch, position.batches_done + 1)

            losses = trainer.train_step(batch)

            iteration = trainer.iteration
            logger.add(losses)
            progress.update(1)
            if _is_due(iteration, train.log_text_interval):
                averages = logger.log_scalars(iteration, trainer.lr)
                progress.set_postfix(loss=f"{averages['total_loss']:.4f}", lr=f"{trainer.lr:.2g}")
            if context.is_main and _is_due(iteration, train.log_image_interval) and logger.writer is not None:
                logger.log_images(iteration, image_grid(batch["rgb"], trainer.predict_masks(batch), batch["cls_gt"],
                                                        batch["first_frame_gt"][:, 0]))
            if context.is_main and context.run is not None and iteration < total:
                network_interval = (train.save_network_interval_finetune if position.phase.finetune
                                    else train.save_network_interval)
                if _is_due(iteration, network_interval):
                    save_snapshot(trainer.network, context.run.snapshot(context.stages_so_far, iteration),
                                  model_switches(context.config, trainer.network))
                if _is_due(iteration, train.save_checkpoint_interval):
                    save_resume_checkpoint(trainer, context, position)
        if logger.count:  # the tail of a stage whose length is not a multiple of the log interval
            logger.log_scalars(trainer.iteration, trainer.lr)
    finally:
        progress.close()
        logger.close()
    if context.is_main and context.run is not None:
        save_snapshot(trainer.network, context.run.snapshot(context.stages_so_far, trainer.iteration),
                      model_switches(context.config, trainer.network))
        save_resume_checkpoint(trainer, context, position)
    return position


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (used by weight initialisation such as the 4 -> 5 channel widening)."""
    torch.manual_seed(seed)


def initial_network(config: Any, device: torch.device | str, *, single_object: bool) -> XMem:
    """The network the first stage starts from: `train.load_network`, else ImageNet trunks (`train.imagenet_init`),
    else random initialisation.

    Raises:
        FileNotFoundError: a named checkpoint or the ImageNet weights are missing (see `load_imagenet_trunks`).
    """
    train, model = config.train, config.model
    if train.load_network is not None:
        return load_network(train.load_network, device, for_training=True, single_object=single_object)
    network = XMem(key_dim=model.key_dim, value_dim=model.value_dim, hidden_dim=model.hidden_dim,
                   single_object=single_object)
    if train.imagenet_init:
        load_imagenet_trunks(network)
    return network.to(device)


def _first_difference(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "") -> str | None:
    for key in sorted(set(saved) | set(current)):
        left, right = saved.get(key), current.get(key)
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            found = _first_difference(left, right, f"{prefix}{key}.")
            if found:
                return found
        elif left != right:
            return f"{prefix}{key} (checkpoint: {left!r}, now: {right!r})"
    return None


def validate_stages(stages: str) -> None:
    """Raises: ValueError when `stages` is empty, repeats a stage or names one outside 0-3."""
    if not stages or any(stage not in KNOWN_STAGES for stage in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"train.stages={stages!r}: expected distinct stage names from 0, 1, 2, 3 in order of "
                         "training, e.g. '03' (released XMem) or '012'")


def run_training(config: Any, resolved_config: Mapping[str, Any], data_for_stage: Callable[[str], StageData],
                 *, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1,
                 resume: bool = False, run_metadata: Mapping[str, Any] | None = None) -> XMem:
    """Train all stages of `config.train.stages`, each starting from the previous stage's weights (a stage-0
    network is widened to 5 value-encoder input channels with orthogonal random weights).

    Args:
        config: the resolved `configs.schema.Config`.
        resolved_config: its plain-dict form (written to config.yaml and every checkpoint).
        data_for_stage: stage name -> its `StageData` for this rank (called when the stage starts).
        device: this rank's device.
        rank, world_size: this process's place (torch.distributed already initialised when world_size > 1).
        resume: continue from the run's latest resume checkpoint (same resolved config required).
        run_metadata: environment facts written to environment.yaml (git commit, versions, command line).
    Returns:
        the trained network (after the last stage).
    Raises:
        ValueError: bad stages string, or --resume with a config that differs from the checkpoint's.
        FileExistsError: the run folder already has checkpoints and resume is off.
        FileNotFoundError: resume without a checkpoint.
    """
    train = config.train
    validate_stages(train.stages)
    run = RunDirectory(train.save_dir, train.exp_id)
    checkpoint = None
    if resume:
        checkpoint_path = run.latest_checkpoint()
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        difference = _first_difference(checkpoint["config"], resolved_config)
        if difference:
            raise ValueError(f"--resume: the config differs from the one of {checkpoint_path}: {difference}; resume "
                             "with the same preset and overrides")
    elif run.checkpoints():
        raise FileExistsError(f"{run.root} already holds checkpoints of run {train.exp_id!r}; pass --resume to "
                              "continue it, or choose another train.exp_id")
    if rank == 0:
        write_yaml(resolved_config, run.root / "config.yaml")
        write_yaml(dict(run_metadata or {}), run.root / "environment.yaml")

    first_stage = train.stages.index(checkpoint["stage"]) if checkpoint else 0
    previous_weights: Mapping[str, torch.Tensor] | None = None
    network = None
    for index in range(first_stage, len(train.stages)):
        stage = train.stages[index]
        single_object = stage == SINGLE_OBJECT_STAGE
        data = data_for_stage(stage)  # first, so that a wrong data root fails before any heavy work
        seed_everything(train.seed)
        if checkpoint is not None and index == first_stage:
            network = build_network_from_state_dict(checkpoint["trainer"]["network"], device,
                                                    single_object=single_object)
        elif previous_weights is not None:
            network = build_network_from_state_dict(previous_weights, device, for_training=True,
                                                    single_object=single_object)
        else:
            network = initial_network(config, device, single_object=single_object)
        context = StageContext(stage, train.stages[:index + 1], config, resolved_config, run, rank, world_size)
        trainer = Trainer(network, StepSettings.from_config(config, stage), device=device, rank=rank,
                          world_size=world_size, stage=stage)
        position = None
        if checkpoint is not None and index == first_stage:
            trainer.load_state_dict(checkpoint["trainer"])
            torch.set_rng_state(checkpoint["torch_rng"])
            position = data_position_from_checkpoint(checkpoint)
        if trainer.iteration < context.total_iterations:
            run_stage(trainer, context, data, position)
        previous_weights = network.state_dict()
    return network
