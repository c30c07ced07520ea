"""The settings that shape an evaluation's outputs, recorded with each finished video so reruns never mix them.

`output_settings` flattens them into one mapping (`model.sha256`, the model switches, the whole `inference`
section, AMP as resolved, and the `eval` settings that change what is written); `changed_settings` names what
differs between two such mappings. Settings that only say where or how fast (output folder, device string,
overwrite, scoring options) are left out: a rerun may change them freely.

Example:
    >>> changed_settings({"eval.size": 480, "eval.flip": False}, {"eval.size": -1, "eval.flip": False})
    ['eval.size: 480 -> -1']
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any, Mapping

from configs.schema import Config

# The eval settings that change what is written (besides the dataset root, added per dataset).
OUTPUT_EVAL_SETTINGS = ("dataset", "split", "size", "flip", "save_scores", "save_all", "use_all_masks")
DATASET_ROOT_SETTING = {"D16": "d16_path", "D17": "d17_path", "Y18": "y18_path", "Y19": "y19_path",
                        "LV1": "lv_path", "LV3": "lv_path", "LVOS1": "lvos_path", "LVOS2": "lvos_path",
                        "G": "generic_path"}
_HASH_CHUNK_BYTES = 1 << 20
_digest_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, computed once per (absolute path, size, modification time) in this process.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path).resolve()
    status = path.stat()
    key = (str(path), status.st_size, status.st_mtime_ns)
    if key not in _digest_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
        _digest_cache[key] = digest.hexdigest()
    return _digest_cache[key]


def output_settings(config: Config, *, model_sha256: str, use_amp: bool, size: int) -> dict[str, Any]:
    """The flat mapping of every setting that shapes the outputs of a run.

    Args:
        config: the run's config, with the checkpoint's sidecar switches applied.
        model_sha256: SHA-256 of the checkpoint file (`file_sha256`).
        use_amp: whether autocast runs (`inference.use_amp` resolved for the device).
        size: the size the benchmark really uses (Long-time Video forces -1 whatever `eval.size` says).
    """
    options = config.eval
    settings: dict[str, Any] = {"model.sha256": model_sha256, "amp": bool(use_amp)}
    settings.update({f"model.{name}": value for name, value in dataclasses.asdict(config.model).items()})
    settings.update({f"inference.{name}": value for name, value in dataclasses.asdict(config.inference).items()})
    settings.update({f"eval.{name}": getattr(options, name) for name in OUTPUT_EVAL_SETTINGS})
    settings["eval.size"] = size
    root_setting = DATASET_ROOT_SETTING.get(options.dataset)
    if root_setting is not None and getattr(options, root_setting) is not None:
        settings[f"eval.{root_setting}"] = str(Path(getattr(options, root_setting)).resolve())
    return settings


def changed_settings(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """`key: old -> new` for every setting that differs (a missing key shows as `unset`), in key order."""
    unset = "unset"
    return [f"{key}: {recorded.get(key, unset)!r} -> {current.get(key, unset)!r}".replace("'", "")
            for key in sorted(set(recorded) | set(current)) if recorded.get(key, unset) != current.get(key, unset)]
