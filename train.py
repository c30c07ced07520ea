"""Train XMem: `python train.py [--config PRESET] [key=value ...] [--resume]`, or under torchrun for DDP.

Examples:
    python train.py --config train/recipe_03                        # released XMem.pth recipe (s0 then s3)
    python train.py --config train/recipe_012 train.exp_id=s012     # XMem-s012
    torchrun --nproc_per_node 4 train.py --config train/recipe_03   # one node, 4 GPUs (global batch sizes)
    python train.py --config train/recipe_03 --resume               # continue the run's latest checkpoint

The run's files (snapshots, resume checkpoints, TensorBoard logs, config.yaml, environment.yaml) go to
`<train.save_dir>/<train.exp_id>/`. See model/trainer.py for what each stage does.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from configs import Config, config_to_dict, load_config
from dataset.sampling import SkipCurriculum
from dataset.static_dataset import StaticImageDataset, reference_static_sources
from dataset.vos_dataset import VOSDataset, main_training_mix
from model.trainer import DataPhase, GlobalBatchSampler, StageData, run_training

REPOSITORY = Path(__file__).resolve().parent
GIT_TIMEOUT_S = 10


def _parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="preset path or name under configs/ (e.g. train/recipe_03)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in <train.save_dir>/<train.exp_id>/")
    parser.add_argument("overrides", nargs="*", help="config overrides like train.stage3.iterations=1000")
    return parser.parse_args(argv)


def _device(config: Config, local_rank: int | None) -> torch.device:
    """The device of this process: `train.device`, with torchrun ranks on cuda:LOCAL_RANK."""
    requested = config.train.device
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device={requested!r}: expected auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if requested == "auto" else requested == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but CUDA is not available; use train.device=cpu or auto")
    if not use_cuda:
        return torch.device("cpu")
    return torch.device("cuda", local_rank or 0)


def _stage_dataset(config: Config, stage: str) -> Any:
    """The training set of a stage: static images (0), BL30K (1), DAVIS ×5 + YouTube-VOS (2, 3), or the user's
    DAVIS-layout folder (`train.data.generic_root`, stages 1-3)."""
    data, stage_config = config.train.data, getattr(config.train, f"stage{stage}")
    if stage == "0":
        return StaticImageDataset(reference_static_sources(data.static_root), num_frames=stage_config.num_frames,
                                  crop_size=data.crop_size, seed=config.train.seed)
    options = dict(num_frames=stage_config.num_frames, max_num_objects=data.max_num_objects,
                   crop_size=data.crop_size, max_skip=stage_config.initial_max_skip, seed=config.train.seed)
    if data.generic_root is not None:
        return VOSDataset.davis_layout_folder(data.generic_root, **options)
    if stage == "1":
        return VOSDataset.bl30k(data.bl_root, **options)
    return main_training_mix(data.davis_root, data.yv_root, youtube_subset_file=data.yv_subset,
                             davis_repeats=data.davis_multiplier, **options)


def phase_schedule(stage_config: Any) -> Callable[[int], DataPhase]:
    """iteration -> data phase of a stage: the max_skip curriculum (switches at round(fraction · iterations)) and
    the fine-tune phase (the last finetune_iterations iterations)."""
    curriculum = SkipCurriculum(stage_config.initial_max_skip, stage_config.skip_fractions, stage_config.skip_values)

    def phase_at(iteration: int) -> DataPhase:
        return DataPhase(curriculum.max_skip_at(iteration, stage_config.iterations),
                         stage_config.finetune_iterations > 0 and iteration >= stage_config.iterations)

    return phase_at


def _stage_data(config: Config, stage: str, *, rank: int, world_size: int, device: torch.device) -> StageData:
    """Curriculum and batches of a stage for this rank (workers and batch divided across ranks)."""
    stage_config = getattr(config.train, f"stage{stage}")
    dataset = _stage_dataset(config, stage)
    workers = config.train.data.num_workers // world_size

    def batches(phase: DataPhase, epoch: int, start_batch: int) -> DataLoader:
        if stage != "0":  # static images have neither frame skip nor a fine-tune phase
            dataset.set_max_skip(phase.max_skip)
            dataset.set_finetune(phase.finetune)
        dataset.set_epoch(epoch)
        sampler = GlobalBatchSampler(len(dataset), stage_config.batch_size, rank=rank, world_size=world_size,
                                     seed=config.train.seed, epoch=epoch, start_batch=start_batch)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda")

    return StageData(phase_schedule(stage_config), batches)


def _git_commit() -> str | None:
    """The repository's commit (with '+dirty' for local changes), or None outside a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True,
                                timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY,
                               capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _environment(device: torch.device, world_size: int, argv: list[str]) -> dict[str, Any]:
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *argv]),
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "world_size": world_size,
        "host": platform.node(),
    }


def main(argv: list[str] | None = None) -> None:
    arguments = _parse_arguments(argv)
    config = load_config(arguments.config, arguments.overrides)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None
    device = _device(config, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size
    try:
        run_training(
            config, config_to_dict(config),
            lambda stage: _stage_data(config, stage, rank=rank, world_size=world_size, device=device),
            device=device, rank=rank, world_size=world_size, resume=arguments.resume,
            run_metadata=_environment(device, world_size, sys.argv if argv is None else ["train.py", *argv]))
    finally:
        if world_size > 1:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
