"""The files of a training run: names, resume checkpoints, config / environment records and snapshot sidecars.

`<train.save_dir>/<train.exp_id>/` holds network snapshots `<exp_id>_s<stages so far>_<iteration>.pth` (plain
state_dicts, loadable by `model.checkpoint.load_network`), each with a sidecar `.yaml` of the model switches they
were trained with (a `model:` config section, readable as a config preset); resume checkpoints
`<exp_id>_s<stages so far>_checkpoint_<iteration>.pth`; `config.yaml` (the resolved config), `environment.yaml`,
and TensorBoard logs under `tensorboard/stage<name>/`. Every file is written atomically.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import warnings
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
import yaml

from configs.common import atomic_write, atomic_write_text
from configs.schema import KNOWN_STAGES, Config

CHECKPOINT_FORMAT = 1  # version of the resume-checkpoint dict
GIT_TIMEOUT_S = 10
REPOSITORY = Path(__file__).resolve().parents[2]
BYTES_PER_MB = 1e6
_CHECKPOINT_PATTERN = re.compile(r"_s(?P<stages>\d+)_checkpoint_(?P<iteration>\d+)\.pth$")


def validate_stages(stages: str) -> None:
    """Raises: ValueError when `stages` is empty, repeats a stage or names one outside 0-3."""
    if not stages or any(stage not in KNOWN_STAGES for stage in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"train.stages={stages!r}: expected distinct stage names from {', '.join(KNOWN_STAGES)} "
                         "in order of training, e.g. '03' (released XMem) or '012'")


def write_yaml(data: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a YAML file atomically."""
    atomic_write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


class RunDirectory:
    """File names of one run (`<save_dir>/<exp_id>/`); see the module docstring."""

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

    def start(self, resolved_config: Mapping[str, Any], *, resume: bool) -> dict[str, Any] | None:
        """Check the run folder before training: returns the latest resume checkpoint (resume) or None.

        Raises:
            FileNotFoundError: resume without a checkpoint.
            ValueError: resume with a config that differs from the checkpoint's.
            FileExistsError: the folder already holds checkpoints and resume is off.
        """
        if not resume:
            if self.checkpoints():
                raise FileExistsError(f"{self.root} already holds checkpoints of run {self.exp_id!r}; pass --resume "
                                      "to continue it, or choose another train.exp_id")
            return None
        path = self.latest_checkpoint()
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        removed: list[str] = []
        difference = _first_difference(checkpoint["config"], resolved_config, _plain(dataclasses.asdict(Config())),
                                       removed=removed)
        if removed:
            warnings.warn(f"--resume: {path} was written with settings this version no longer has "
                          f"({', '.join(removed)}); they are ignored", stacklevel=2)
        if difference:
            raise ValueError(f"--resume: the config differs from the one of {path}: {difference}; resume with the "
                             "same preset and overrides")
        return checkpoint

    def write_records(self, resolved_config: Mapping[str, Any], environment: Mapping[str, Any]) -> None:
        """config.yaml and environment.yaml (written once the data has been checked)."""
        write_yaml(resolved_config, self.root / "config.yaml")
        write_yaml(dict(environment), self.root / "environment.yaml")


def save_resume_checkpoint(path: Path, *, stage: str, stages_so_far: str, trainer_state: Mapping[str, Any],
                           data_position: Mapping[str, Any], resolved_config: Mapping[str, Any]) -> None:
    """Write the full training state of this moment atomically (with torch's global RNG state).

    `trainer_state` and `data_position` are plain dicts (`Trainer.state_dict()`, `DataPosition.to_dict()`), so the
    training plumbing needs nothing of `dataset/`.
    """
    state = {
        "format": CHECKPOINT_FORMAT, "stage": stage, "stages_so_far": stages_so_far,
        "trainer": dict(trainer_state), "torch_rng": torch.get_rng_state(),
        "data_position": dict(data_position),
        "config": dict(resolved_config),
    }
    atomic_write(path, lambda temporary: torch.save(state, temporary))


def _plain(value: Any) -> Any:
    """A config dict as it is stored (tuples as lists)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, (list, tuple)) else value


def _first_difference(saved: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, Any],
                      prefix: str = "", *, removed: list[str]) -> str | None:
    """The first setting where a checkpoint's config and the current one differ, described, or None.

    A run resumes across versions of this code: a setting added since the checkpoint was written counts as equal
    while it holds its default (the behaviour the checkpoint was trained with), and a setting since removed is
    collected in `removed` (the caller warns) instead of blocking the resume.
    """
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if key not in current:
            removed.append(name)
            continue
        left, right, default = saved.get(key), current[key], defaults.get(key) if isinstance(defaults, Mapping) else None
        if key not in saved and right == default:
            continue
        if isinstance(left, Mapping) and isinstance(right, Mapping):
            found = _first_difference(left, right, default if isinstance(default, Mapping) else {}, f"{name}.",
                                      removed=removed)
            if found:
                return found
        elif left != right:
            return f"{name} (checkpoint: {left!r}, now: {right!r})"
    return None


def describe_file(path: Path) -> str:
    """`path (12.3 MB)`, for the paths a finished run prints."""
    return f"{path} ({path.stat().st_size / BYTES_PER_MB:.1f} MB)"


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


def environment_record(device: torch.device, world_size: int, argv: list[str]) -> dict[str, Any]:
    """The facts environment.yaml records: start time, command line, commit, versions, device, world size, host."""
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
