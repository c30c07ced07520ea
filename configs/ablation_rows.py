"""The ablation rows (configs/ablations/*.yaml and any folder like it): how a row file is read and selected.

A row file is an ordinary config preset holding only what the row changes; its first line is a `# <group>: <label>`
title. scripts/study/run_ablations.py runs rows through eval.py; the study (scripts/study/run_study.py,
study_rows.py) selects and writes rows of its own with the same reader.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from configs.loader import MAX_EXTENDS_DEPTH, load_config, resolve_preset_path

ABLATION_DIR = Path(__file__).resolve().parent / "ablations"
ROW_SECTIONS = ("model", "inference", "eval")  # what a row may change for evaluation (train is for training)
TITLE_PREFIX = "# "
GROUP_ORDER = ("Memory stores", "Memory reading", "Long-term memory", "Memory sizes", "Deep update")
OTHER_GROUP = "Other"


@dataclasses.dataclass(frozen=True)
class AblationRow:
    """One row: its file, title and the settings it changes.

    Attributes:
        name: the file stem (what --rows selects).
        group, label: from the file's `# <group>: <label>` first line.
        overrides: `section.field=value` strings for the model / inference / eval fields the row sets.
        checkpoint: the row's own checkpoint (`eval.model` set in the file), or None to use --model.
    """

    name: str
    path: Path
    group: str
    label: str
    overrides: tuple[str, ...]
    checkpoint: Optional[str]


def _title(path: Path) -> tuple[str, str]:
    first_line = path.read_text().splitlines()[0] if path.read_text().strip() else ""
    title = first_line[len(TITLE_PREFIX):].strip() if first_line.startswith(TITLE_PREFIX) else ""
    group, separator, label = title.partition(":")
    if not separator:
        return OTHER_GROUP, title or path.stem
    return group.strip(), label.strip()


def _render(value: Any) -> str:
    """A value as the text of a `key=value` override (JSON is YAML flow style; strings as they are)."""
    return value if isinstance(value, str) else json.dumps(value)


def _written_settings(path: Path, depth: int = 0) -> dict[str, Any]:
    """`section.field -> value` for every field a preset file (and its `extends` chain) writes, even where the value
    equals the default, so that a row wins over the user's arguments on every field it names."""
    if depth > MAX_EXTENDS_DEPTH:
        raise ValueError(f"config {path}: more than {MAX_EXTENDS_DEPTH} levels of 'extends' (a cycle?)")
    data = yaml.safe_load(path.read_text()) or {}
    parent = data.pop("extends", None)
    settings = {} if parent is None else _written_settings(resolve_preset_path(parent, path.parent), depth + 1)

    def flatten(mapping: dict[str, Any], prefix: str) -> None:
        for key, value in mapping.items():
            if isinstance(value, dict):
                flatten(value, f"{prefix}{key}.")
            else:
                settings[f"{prefix}{key}"] = value

    flatten(data, "")
    return settings


def load_row(path: Path) -> AblationRow:
    """Read one row file (a config preset; `extends` allowed).

    Raises:
        FileNotFoundError, UnknownConfigKeyError, TypeError, ValueError: as `configs.loader.load_config`.
    """
    load_config(path)  # validates every key and value
    checkpoint = None
    overrides = []
    for key, value in _written_settings(path).items():
        if key.split(".")[0] not in ROW_SECTIONS:
            continue
        if key == "eval.model":
            checkpoint = value
        else:
            overrides.append(f"{key}={_render(value)}")
    group, label = _title(path)
    return AblationRow(path.stem, path, group, label, tuple(overrides), checkpoint)


def select_rows(patterns: Optional[Sequence[str]], directory: Path = ABLATION_DIR) -> list[AblationRow]:
    """The rows named by `patterns` (file stems or shell patterns, in the given order), or all rows sorted by
    group (GROUP_ORDER) and name.

    Raises:
        FileNotFoundError: the directory has no row file.
        ValueError: a pattern matches no row (the message lists the rows).
    """
    paths = {path.stem: path for path in sorted(Path(directory).glob("*.yaml"))}
    if not paths:
        raise FileNotFoundError(f"no ablation configs (*.yaml) in {str(directory)!r}")
    if not patterns:
        rows = [load_row(path) for path in paths.values()]
        rank = {group: index for index, group in enumerate(GROUP_ORDER)}
        return sorted(rows, key=lambda row: (rank.get(row.group, len(GROUP_ORDER)), row.name))
    names: list[str] = []
    for pattern in patterns:
        matched = [name for name in paths if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ValueError(f"--rows {pattern!r} matches no ablation config in {str(directory)!r}; rows: "
                             f"{', '.join(paths)}")
        names += [name for name in matched if name not in names]
    return [load_row(paths[name]) for name in names]


