"""Checkpoint sidecars: the `model:` switches a training snapshot was trained with, in `<checkpoint>.yaml`.

A plain state_dict cannot say whether it was trained with selection, shrinkage or the dot product; training
snapshots therefore carry a sidecar YAML with their `model:` section. `apply_checkpoint_switches` makes an
evaluation use them; `write_sidecar` writes one beside a checkpoint.

Example:
    >>> sidecar_path("saves/run/xmem_s03_10000.pth").name
    'xmem_s03_10000.yaml'
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from configs.common import atomic_write_text
from configs.loader import load_config
from configs.schema import Config, MemoryReading, ModelConfig

SIDECAR_SUFFIX = ".yaml"


def sidecar_path(checkpoint: str | os.PathLike) -> Path:
    """`<checkpoint>` with suffix .yaml."""
    return Path(checkpoint).with_suffix(SIDECAR_SUFFIX)


def write_sidecar(checkpoint_path: str | os.PathLike, model_switches: Mapping[str, Any]) -> Path:
    """Write `{model: model_switches}` beside a checkpoint, atomically; return the sidecar's path.

    Raises:
        ValueError: a key that `ModelConfig` does not have (named), so a sidecar can always be read back.
    """
    known = {item.name for item in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(model_switches) - known)
    if unknown:
        raise ValueError(f"sidecar for {str(checkpoint_path)!r}: unknown model switch {unknown[0]!r}; "
                         f"known: {', '.join(sorted(known))}")
    path = sidecar_path(checkpoint_path)
    atomic_write_text(path, yaml.safe_dump({"model": dict(model_switches)}, sort_keys=False))
    return path


def read_sidecar(checkpoint: str | os.PathLike) -> Optional[ModelConfig]:
    """The model switches in a checkpoint's sidecar, or None when it has none (released checkpoints).

    Raises:
        ValueError: the sidecar is not a valid `model:` preset (the message names the file).
    """
    path = sidecar_path(checkpoint)
    if not path.is_file():
        return None
    try:
        return load_config(path).model
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        raise ValueError(f"checkpoint sidecar {str(path)!r}: not a valid model preset ({message}); fix or "
                         "delete it") from error


def _describe_switches(reading: MemoryReading) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in dataclasses.asdict(reading).items())


def apply_checkpoint_switches(config: Config, checkpoint: str | os.PathLike, hidden_dim: int) -> Config:
    """The config with the model switches a checkpoint was trained with (a new Config; `config` is unchanged).

    The memory-reading switches (`MemoryReading`, what a state_dict cannot tell) are compared as one object: when
    the config leaves them all at their defaults, the sidecar's are used (with a warning if they differ); when it
    sets any of them, all must agree with the sidecar. Released checkpoints have no sidecar: the config is used as
    given.

    Args:
        config: the resolved run config.
        checkpoint: the checkpoint path (its sidecar is the same path with suffix .yaml).
        hidden_dim: C^h of the loaded weights (0: no sensory memory).
    Returns:
        the config to run with.
    Raises:
        ValueError: the config's reading switches contradict the sidecar, `model.hidden_dim` is set to a value the
            weights do not have, or the sidecar is not a valid `model:` preset (each message names the file).
    """
    model, defaults = config.model, ModelConfig()
    if model.hidden_dim != defaults.hidden_dim and model.hidden_dim != hidden_dim:
        raise ValueError(
            f"config model.hidden_dim={model.hidden_dim} but checkpoint {str(checkpoint)!r} has C^h={hidden_dim}; "
            "pass a checkpoint trained with that sensory size (no sensory memory: hidden_dim=0, e.g. "
            "XMem-no-sensory.pth), or keep this one and set inference.use_sensory_memory=false to hold its sensory "
            "memory at zero"
        )
    trained = read_sidecar(checkpoint)
    if trained is None:
        return config
    wanted, used = model.reading, trained.reading
    if wanted == used:
        return config
    if wanted != defaults.reading:
        raise ValueError(
            f"checkpoint sidecar {str(sidecar_path(checkpoint))!r}: the checkpoint was trained with "
            f"{_describe_switches(used)} but the config sets {_describe_switches(wanted)}; drop those settings or "
            "evaluate a checkpoint trained with them"
        )
    warnings.warn(f"memory reading as the checkpoint was trained ({_describe_switches(used)}, from "
                  f"{sidecar_path(checkpoint)})", stacklevel=2)
    return dataclasses.replace(config, model=dataclasses.replace(model, **dataclasses.asdict(used)))
