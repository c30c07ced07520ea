"""Train XMem: `python train.py [--config PRESET] [key=value ...] [--resume] [--debug]`, or under torchrun for DDP.

Examples:
    python train.py --config train/recipe_03                        # released XMem.pth recipe (s0 then s3)
    python train.py --config train/recipe_012 train.exp_id=s012     # XMem-s012
    torchrun --nproc_per_node 4 train.py --config train/recipe_03   # one node, 4 GPUs (global batch sizes)
    python train.py --config train/recipe_03 --resume               # continue the run's latest checkpoint

The run's files (snapshots, resume checkpoints, TensorBoard logs, config.yaml, environment.yaml) go to
`<train.save_dir>/<train.exp_id>/` (see model/training/run_folder.py); the data of every stage is checked before any of
them is written. A finished run prints its final network snapshot and resume checkpoint. One training iteration is
model/training/trainer.py; this file is the recipe around it.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import torch
import torch.distributed as dist
from tqdm import tqdm

from configs import Config, config_to_dict, load_config
from configs.common import resolve_device, run_cli
from configs.schema import STATIC_STAGE, ModelConfig
from configs.sidecar import write_sidecar
from dataset.training_data import DataPosition, StageData, stage_data
from model.checkpoint import build_network_from_state_dict, load_imagenet_trunks, load_network, save_network
from model.network import XMem
from model.training.logger import TrainingLogger, image_grid
from model.training.run_folder import (RunDirectory, describe_file, environment_record, save_resume_checkpoint,
                                       validate_stages)
from model.training.trainer import Trainer

def main(argv: list[str]) -> None:
    arguments = _parse_arguments(argv)
    config = load_config(arguments.config, arguments.overrides)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's environment; 1 without it
    rank = int(os.environ.get("RANK", "0"))
    device = _device(config, int(os.environ["LOCAL_RANK"]) if "LOCAL_RANK" in os.environ else None)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # training crops have one fixed size
    try:
        result = run_training(
            config, lambda stage: stage_data(config, stage, rank=rank, world_size=world_size,
                                             pin_memory=device.type == "cuda"),
            device=device, rank=rank, world_size=world_size, resume=arguments.resume,
            environment=environment_record(device, world_size, ["train.py", *argv]))
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    if rank == 0:
        print(f"final network snapshot: {describe_file(result.snapshot)}")
        print(f"resume checkpoint: {describe_file(result.checkpoint)}")


class TrainingResult(NamedTuple):
    """The network after the last stage and that stage's final files."""

    network: XMem
    snapshot: Path
    checkpoint: Path


def run_training(config: Config, data_for_stage: Callable[[str], StageData], *, device: torch.device | str = "cpu",
                 rank: int = 0, world_size: int = 1, resume: bool = False,
                 environment: Mapping[str, Any] | None = None) -> TrainingResult:
    """Train all stages of `config.train.stages`, each starting from the previous stage's weights (a stage-0
    network is widened to 5 value-encoder input channels with orthogonal random weights).

    Args:
        config: the resolved configuration (its plain-dict form goes to config.yaml and every checkpoint).
        data_for_stage: stage name -> its `StageData` for this rank; called for every stage to train before
            anything is written, so that bad data fails before the run folder is touched.
        device: this rank's device.
        rank, world_size: this process's place (torch.distributed already initialised when world_size > 1).
        resume: continue from the run's latest resume checkpoint (same resolved config required).
        environment: facts written to environment.yaml (git commit, versions, command line).
    Raises:
        ValueError: bad stages string, bad data, or --resume with a config that differs from the checkpoint's.
        FileExistsError: the run folder already has checkpoints and resume is off.
        FileNotFoundError: resume without a checkpoint, or a missing data root.
    """
    train = config.train
    validate_stages(train.stages)
    resolved_config = config_to_dict(config)
    run = RunDirectory(train.save_dir, train.exp_id)
    checkpoint = run.start(resolved_config, resume=resume)
    first_stage = train.stages.index(checkpoint["stage"]) if checkpoint else 0
    data = {stage: data_for_stage(stage) for stage in train.stages[first_stage:]}
    if rank == 0:
        run.write_records(resolved_config, environment or {})

    network = None
    for index in range(first_stage, len(train.stages)):
        stage, stages_so_far = train.stages[index], train.stages[:index + 1]
        restoring = checkpoint is not None and index == first_stage
        torch.manual_seed(train.seed)  # weight initialisation, e.g. the 4 -> 5 channel widening
        if restoring:
            network = build_network_from_state_dict(checkpoint["trainer"]["network"], device,
                                                    single_object=stage == STATIC_STAGE)
        else:
            network = _stage_network(config, stage, device, previous=network)
        trainer = Trainer(network, config, stage, device=device, rank=rank, world_size=world_size)
        position = None
        if restoring:
            trainer.load_state_dict(checkpoint["trainer"])
            torch.set_rng_state(checkpoint["torch_rng"])
            position = DataPosition.from_dict(checkpoint["data_position"])
        files = StageFiles(run, stages_so_far, config, resolved_config) if rank == 0 else None
        if trainer.iteration < config.train.stage(stage).total_iterations:
            train_stage(trainer, data[stage], files, position)
    last = train.stage(train.stages[-1]).total_iterations
    return TrainingResult(network, run.snapshot(train.stages, last), run.checkpoint(train.stages, last))


@dataclass(frozen=True)
class StageFiles:
    """Where and what rank 0 saves during a stage: run folder, stages so far (e.g. '03', in the file names), the
    config and its plain-dict form (stored in resume checkpoints)."""

    run: RunDirectory
    stages_so_far: str
    config: Config
    resolved_config: Mapping[str, Any]

    def save_snapshot(self, network: XMem, iteration: int) -> None:
        """The plain state_dict plus its sidecar of model switches."""
        path = self.run.snapshot(self.stages_so_far, iteration)
        save_network(network, path)
        write_sidecar(path, model_switches(self.config.model, network))

    def save_checkpoint(self, trainer: Trainer, position: DataPosition) -> None:
        save_resume_checkpoint(self.run.checkpoint(self.stages_so_far, trainer.iteration), stage=trainer.stage,
                               stages_so_far=self.stages_so_far, trainer_state=trainer.state_dict(),
                               data_position=position.to_dict(), resolved_config=self.resolved_config)


def train_stage(trainer: Trainer, data: StageData, files: StageFiles | None,
                position: DataPosition | None = None) -> DataPosition:
    """Train one stage to its last iteration (fine-tune phase included), logging and saving at the configured
    intervals, and always saving a snapshot and a resume checkpoint at the end.

    A change of curriculum phase starts a new epoch of the rebuilt data (as the original, which drops the
    current epoch); the data position (phase, epoch, batches done) is part of every resume checkpoint.

    Args:
        trainer: at its current iteration (0, or restored from a checkpoint).
        data: the stage's curriculum and batches.
        files: what to save where (rank 0); None saves and writes nothing (other ranks).
        position: where the data stream stands (from a resume checkpoint); None = start of the stage.
    Returns:
        the final data position.
    Raises:
        RuntimeError: an epoch yields no batch at all (empty dataset).
    """
    train, stage = trainer.train_config, trainer.stage
    total = trainer.stage_config.total_iterations
    position = position or DataPosition(data.phase_at(trainer.iteration))
    logger = TrainingLogger(files.run.tensorboard(stage) if files else None, world_size=trainer.world_size,
                            device=trainer.device)
    batches = iter(data.batches(position.phase, position.epoch, position.batches_done))
    progress = tqdm(total=total, initial=trainer.iteration, desc=f"stage {stage}", unit="it",
                    disable=files is None, dynamic_ncols=True)
    try:
        while trainer.iteration < total:
            phase = data.phase_at(trainer.iteration)
            if phase != position.phase:
                position = DataPosition(phase, position.epoch + 1)
                batches = iter(data.batches(position.phase, position.epoch, 0))
            batch = next(batches, None)
            if batch is None:
                if position.batches_done == 0:
                    raise RuntimeError(f"stage {stage}: epoch {position.epoch} of the training data yielded no "
                                       "batch; check the data roots and that there are at least batch_size clips")
                position = DataPosition(position.phase, position.epoch + 1)
                batches = iter(data.batches(position.phase, position.epoch, 0))
                continue
            position = DataPosition(position.phase, position.epoch, position.batches_done + 1)

            losses = trainer.train_step(batch)

            iteration = trainer.iteration
            logger.add(None if trainer.last_step_skipped else losses)
            progress.update(1)
            if _is_due(iteration, train.log_text_interval):
                _log_scalars(logger, trainer, progress)
            if files and _is_due(iteration, train.log_image_interval):
                logger.log_images(iteration, image_grid(batch["rgb"], trainer.predict_masks(batch), batch["cls_gt"],
                                                        batch["first_frame_gt"][:, 0]))
            if files and iteration < total:
                network_interval = (train.save_network_interval_finetune if position.phase.finetune
                                    else train.save_network_interval)
                if _is_due(iteration, network_interval):
                    files.save_snapshot(trainer.network, iteration)
                if _is_due(iteration, train.save_checkpoint_interval):
                    files.save_checkpoint(trainer, position)
        if logger.iterations:  # the tail of a stage whose length is not a multiple of the log interval
            _log_scalars(logger, trainer, progress)
    finally:
        progress.close()
        logger.close()
    if files:
        files.save_snapshot(trainer.network, trainer.iteration)
        files.save_checkpoint(trainer, position)
    return position


def _log_scalars(logger: TrainingLogger, trainer: Trainer, progress: tqdm) -> None:
    averages = logger.log_scalars(trainer.iteration, trainer.lr, {"train/nonfinite_steps": trainer.nonfinite_steps})
    if "total_loss" in averages:  # absent when every step since the last log was skipped
        progress.set_postfix(loss=f"{averages['total_loss']:.4f}", lr=f"{trainer.lr:.2g}")


def _stage_network(config: Config, stage: str, device: torch.device | str, *, previous: XMem | None) -> XMem:
    """The network a stage starts from: the previous stage's weights, else `train.load_network`, else ImageNet
    trunks (`train.imagenet_init`), else random initialisation.

    Raises:
        FileNotFoundError: a named checkpoint or the ImageNet weights are missing (see `load_imagenet_trunks`).
    """
    single_object = stage == STATIC_STAGE
    if previous is not None:
        return build_network_from_state_dict(previous.state_dict(), device, for_training=True,
                                             single_object=single_object)
    if config.train.load_network is not None:
        return load_network(config.train.load_network, device, for_training=True, single_object=single_object)
    model = config.model
    network = XMem(key_dim=model.key_dim, value_dim=model.value_dim, hidden_dim=model.hidden_dim,
                   single_object=single_object)
    if config.train.imagenet_init:
        load_imagenet_trunks(network)
    return network.to(device)


def model_switches(model: ModelConfig, network: XMem) -> dict[str, Any]:
    """The `model:` config section a snapshot was trained with, dims taken from the network itself."""
    return {"key_dim": network.key_dim, "value_dim": network.value_dim, "hidden_dim": network.hidden_dim,
            "single_object": network.single_object, **asdict(model.reading)}


def _is_due(iteration: int, interval: int) -> bool:
    return interval > 0 and iteration % interval == 0


def _parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="preset path or name under configs/ (e.g. train/recipe_03)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in <train.save_dir>/<train.exp_id>/")
    parser.add_argument("overrides", nargs="*", help="config overrides like train.stage3.iterations=1000")
    return parser.parse_args(argv)


def _device(config: Config, local_rank: int | None) -> torch.device:
    """The device of this process: `train.device`, with torchrun ranks on cuda:LOCAL_RANK."""
    try:
        device = resolve_device(config.train.device)
    except ValueError as error:
        raise ValueError(f"train.device={config.train.device!r}: {error}") from None
    if device.type == "cuda" and local_rank is not None:
        return torch.device("cuda", local_rank)
    return device


if __name__ == "__main__":
    sys.exit(run_cli(main))
