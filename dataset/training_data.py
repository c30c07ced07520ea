"""The data side of the training loop: curriculum phases, the data position, the global-batch sampler, and each
stage's dataset and loader.

A stage's data is a `StageData`: `phase_at(iteration)` (curriculum max_skip and fine-tune switch) and
`batches(phase, epoch, start_batch)`, a pure function of its arguments, so that a resumed run sees exactly the
batches it would have seen without the interruption.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import cv2
import torch
from torch.utils.data import DataLoader, Dataset

from configs.common import per_rank_batch_size
from configs.schema import STATIC_STAGE, Config, StageConfig
from dataset.sampling import SkipCurriculum
from dataset.static_dataset import StaticImageDataset, reference_static_sources
from dataset.vos_dataset import VOSDataset, main_training_mix


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

    def to_dict(self) -> dict[str, Any]:
        """The form stored in resume checkpoints."""
        return {"max_skip": self.phase.max_skip, "finetune": self.phase.finetune, "epoch": self.epoch,
                "batches_done": self.batches_done}

    @classmethod
    def from_dict(cls, position: Mapping[str, Any]) -> DataPosition:
        return cls(DataPhase(int(position["max_skip"]), bool(position["finetune"])), int(position["epoch"]),
                   int(position["batches_done"]))


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


def phase_schedule(stage_config: StageConfig) -> Callable[[int], DataPhase]:
    """iteration -> data phase of a stage: the max_skip curriculum (switches at round(fraction · iterations)) and
    the fine-tune phase (the last finetune_iterations iterations)."""
    curriculum = SkipCurriculum(stage_config.initial_max_skip, stage_config.skip_fractions, stage_config.skip_values)

    def phase_at(iteration: int) -> DataPhase:
        return DataPhase(curriculum.max_skip_at(iteration, stage_config.iterations),
                         stage_config.finetune_iterations > 0 and iteration >= stage_config.iterations)

    return phase_at


def stage_dataset(config: Config, stage: str) -> Dataset:
    """The training set of a stage: static images (0), BL30K (1), DAVIS ×5 + YouTube-VOS (2, 3), or the user's
    DAVIS-layout folder (`train.data.generic_root`, stages 1-3). Listing the files checks the data.

    Raises:
        FileNotFoundError: a data root is missing.
        ValueError: no usable image or video, or fewer samples than one global batch.
    """
    data, stage_config = config.train.data, config.train.stage(stage)
    if stage == STATIC_STAGE:
        dataset = StaticImageDataset(reference_static_sources(data.static_root), num_frames=stage_config.num_frames,
                                     crop_size=data.crop_size, seed=config.train.seed)
    else:
        options = dict(num_frames=stage_config.num_frames, max_num_objects=data.max_num_objects,
                       crop_size=data.crop_size, max_skip=stage_config.initial_max_skip, seed=config.train.seed)
        if data.generic_root is not None:
            dataset = VOSDataset.davis_layout_folder(data.generic_root, **options)
        elif stage == "1":
            dataset = VOSDataset.bl30k(data.bl_root, **options)
        else:
            dataset = main_training_mix(data.davis_root, data.yv_root, youtube_subset_file=data.yv_subset,
                                        davis_repeats=data.davis_multiplier, **options)
    if len(dataset) < stage_config.batch_size:
        raise ValueError(f"stage {stage}: the training set has {len(dataset)} samples, fewer than one global batch "
                         f"of train.stage{stage}.batch_size={stage_config.batch_size}; add data or lower the batch "
                         "size")
    return dataset


def without_opencv_threads(worker_id: int) -> None:
    """DataLoader worker start: OpenCV single-threaded, as the original, so that num_workers workers (16 by
    default) each running OpenCV's own thread pool do not oversubscribe the CPU."""
    cv2.setNumThreads(0)


def training_loader(dataset: Dataset, sampler: GlobalBatchSampler, *, num_workers: int,
                    pin_memory: bool) -> DataLoader:
    """The DataLoader of one epoch (workers are started per epoch, so they copy the dataset's epoch settings)."""
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      worker_init_fn=without_opencv_threads)


def stage_data(config: Config, stage: str, *, rank: int = 0, world_size: int = 1,
               pin_memory: bool = False) -> StageData:
    """Curriculum and batches of a stage for this rank (workers and batch divided across ranks). The dataset is
    built, and so checked, now.

    Raises:
        FileNotFoundError, ValueError: see `stage_dataset`.
    """
    stage_config = config.train.stage(stage)
    dataset = stage_dataset(config, stage)
    workers = config.train.data.num_workers // world_size

    def batches(phase: DataPhase, epoch: int, start_batch: int) -> DataLoader:
        if stage != STATIC_STAGE:
            dataset.set_max_skip(phase.max_skip)
            dataset.set_finetune(phase.finetune)
        dataset.set_epoch(epoch)
        sampler = GlobalBatchSampler(len(dataset), stage_config.batch_size, rank=rank, world_size=world_size,
                                     seed=config.train.seed, epoch=epoch, start_batch=start_batch)
        return training_loader(dataset, sampler, num_workers=workers, pin_memory=pin_memory)

    return StageData(phase_schedule(stage_config), batches)
