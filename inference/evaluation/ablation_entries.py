"""What an ablation run reports per row: `AblationEntry`, written by scripts/study/run_ablations.py as
`<output>/ablations.json` beside its tables and read back by the tools that run it as a process
(scripts/study/run_study.py).

The same class writes and reads the file, so a field added here reaches every reader. The file is written once, when
every selected row has its entry (a run that stopped on an error leaves none), as a JSON list of entries whose keys
are the field names in field order; NaN (a score over no frames) is JSON's `NaN`.

Example:

    >>> entries = read_entries(Path("../output/ablations_D17"))  # doctest: +SKIP
    >>> [(entry.row, entry.status, entry.jf) for entry in entries]  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from configs.common import atomic_write_text
from inference.evaluation.run_summary import JSON_INDENT, MEMORY_RECORD_KEYS

ENTRIES_FILE = "ablations.json"  # <output>/ablations.json, beside ablations.md and .csv
# The columns of run_ablations.py's CSV table, in order: the fields, with `memory` spread into its keys.
TABLE_COLUMNS = ("row", "group", "label", "status", "checkpoint", "same_as", "jf", "j", "f", "fps",
                 "peak_memory_mb", "peak_memory_kind", *MEMORY_RECORD_KEYS, "videos", "frames")


@dataclass(frozen=True)
class AblationEntry:
    """One row of an ablation table. Figures are None where the row has none (it was skipped or failed, or the
    benchmark has no ground truth).

    Attributes:
        row, group, label: the row file's stem and its `# <group>: <label>` title.
        status: "done", "done (earlier run)", "failed: <why>" or "skipped: <why>".
        checkpoint: the checkpoint the row runs ("" when none applies).
        same_as: the earlier row with the same settings whose result this row reuses ("" when run itself).
        jf, j, f: J&F, J and F means x 100, rounded to 0.1.
        fps: frames over compute seconds of every finished video (data loading excluded).
        peak_memory_mb, peak_memory_kind: eval.py's peak memory and what was measured.
        memory: each of MEMORY_RECORD_KEYS at its largest over the videos (None where not recorded).
        videos, frames: the finished videos and their frames.
    """

    row: str
    group: str
    label: str
    status: str
    checkpoint: str = ""
    same_as: str = ""
    jf: Optional[float] = None
    j: Optional[float] = None
    f: Optional[float] = None
    fps: Optional[float] = None
    peak_memory_mb: Optional[int] = None
    peak_memory_kind: str = ""
    memory: dict[str, Any] = dataclasses.field(default_factory=lambda: dict.fromkeys(MEMORY_RECORD_KEYS))
    videos: Optional[int] = None
    frames: Optional[int] = None

    def table_row(self) -> dict[str, Any]:
        """{column: value} over TABLE_COLUMNS, "" where there is no value (the CSV table's empty cell)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values = {**fields, **{key: self.memory.get(key) for key in MEMORY_RECORD_KEYS}}
        return {column: "" if values[column] is None else values[column] for column in TABLE_COLUMNS}


def write_entries(entries: Sequence[AblationEntry], output: Path) -> Path:
    """Write `<output>/ablations.json` atomically; returns its path."""
    path = output / ENTRIES_FILE
    atomic_write_text(path, json.dumps([dataclasses.asdict(entry) for entry in entries], indent=JSON_INDENT))
    return path


def read_entries(output: Path) -> list[AblationEntry]:
    """The entries of `<output>/ablations.json`.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a list of entries written by this class (names the file and the keys).
    """
    path = output / ENTRIES_FILE
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not an ablation table, its JSON does not parse ({error})") from None
    names = [field.name for field in dataclasses.fields(AblationEntry)]
    if not isinstance(records, list):
        raise ValueError(f"{path}: not an ablation table; expected a list of entries, got {type(records).__name__}")
    for record in records:
        if not isinstance(record, dict) or sorted(record) != sorted(names):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{path}: not an ablation table of this version; expected the keys {names}, got {got}")
    return [AblationEntry(**record) for record in records]
