"""What an evaluation run reports: `RunSummary`, returned by `eval.main`, written by eval.py as
`<output>/summary.json` and read back by the tools that run eval.py as a process (scripts/study/run_ablations.py).

The same class writes and reads the file, so a field added here reaches every reader. In the file, paths are
strings, NaN (a rate over zero seconds) is JSON's `NaN`, and the keys are the field names in field order.

Example:

    >>> summary = RunSummary.read(Path("../output/d17_val/summary.json"))  # doctest: +SKIP
    >>> summary.scores["J&F-Mean"], summary.fps, summary.memory["long_term_elements"]  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from configs.common import atomic_write_text
from inference.video_runner import STORE_PEAK_KEYS

# A video record's memory figures that the summary reports, each as its largest value over the finished videos.
MEMORY_RECORD_KEYS = ("working_elements", "long_term_elements", "sensory_peak_abs", *STORE_PEAK_KEYS)
SUMMARY_FILE = "summary.json"  # where eval.py writes the summary in its output folder
_PATH_FIELDS = ("output", "timings", "config", "zip", "page", "summary")
JSON_INDENT = 1


@dataclass(frozen=True)
class RunSummary:
    """One evaluation run, over every rank of a torchrun job.

    Video lists are in the benchmark's order. `fps` is this run's frames over the summed per-video compute seconds
    of all ranks (data loading excluded); `fps_end_to_end` is frames over the wall time of the video loop of all
    ranks together (reading and writing included). `memory` holds, for each of MEMORY_RECORD_KEYS, the largest value
    over the finished videos (None where no record has it: records of an older version, or no sensory memory).
    """

    output: Path  # the output folder
    world_size: int  # ranks (1 without torchrun)
    skipped_finished: list[str]  # finished by an earlier run and kept
    inputs_changed: list[str]  # finished earlier, redone because their inputs changed
    processed: list[str]
    skipped_empty: list[str]  # videos without frames
    failed: dict[str, str]  # video -> error message
    rank_frames: list[int]  # frames processed per rank
    frames: int  # frames of this run's processed videos
    seconds: float  # their summed compute seconds
    fps: float
    wall_seconds: float
    fps_end_to_end: float
    peak_memory_mb_per_rank: list[float]
    peak_memory_mb: float  # largest over ranks
    peak_memory_kind: str  # what was measured: CUDA max allocated, or the process's peak RSS
    memory: dict[str, Any]
    timings: Path  # timings.csv of every finished video
    config: Path  # the run's resolved config.yaml
    zip: Optional[Path]  # the benchmark server's submission zip, if it has one
    unscored: dict[str, str]  # video -> why its ground truth could not be scored
    scores: Optional[dict[str, float]]  # the global J&F table, or None when nothing was scored
    page: Optional[Path] = None  # report.html, or None (off, or it could not be written)
    report: str = ""  # the text eval.py prints
    summary: Optional[Path] = None  # where this summary is written

    def write(self, path: Path) -> RunSummary:
        """Write the summary as JSON to `path` atomically; returns it with `summary` set to `path`."""
        written = dataclasses.replace(self, summary=path)
        atomic_write_text(path, json.dumps(dataclasses.asdict(written), indent=JSON_INDENT, default=str))
        return written

    @classmethod
    def read(cls, path: Path) -> RunSummary:
        """Raises: ValueError when `path` is not a summary written by this class (names the file and the keys)."""
        try:
            fields = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a run summary, its JSON does not parse ({error})") from None
        names = [field.name for field in dataclasses.fields(cls)]
        if not isinstance(fields, dict) or sorted(fields) != sorted(names):
            got = sorted(fields) if isinstance(fields, dict) else type(fields).__name__
            raise ValueError(f"{path}: not a run summary of this version; expected the keys {names}, got {got}")
        for name in _PATH_FIELDS:
            fields[name] = None if fields[name] is None else Path(fields[name])
        return cls(**fields)

    def report_lines(self) -> list[str]:
        """The report's lines about speed, memory, files and problems (eval.py prints them under the scores)."""
        lines = [f"frames {self.frames}  time {self.seconds:.2f} s  FPS {self.fps:.2f} (data loading excluded)  "
                 f"peak memory {self.peak_memory_mb:.0f} MB ({self.peak_memory_kind})"]
        processes = "1 process" if self.world_size == 1 else f"{self.world_size} processes together"
        lines.append(f"end-to-end FPS {self.fps_end_to_end:.2f} ({processes}, wall {self.wall_seconds:.2f} s, "
                     "reading and writing included)")
        if self.world_size > 1:
            lines.append("per rank: " + ", ".join(
                f"rank {rank} {frames} frames, peak {peak:.0f} MB"
                for rank, (frames, peak) in enumerate(zip(self.rank_frames, self.peak_memory_mb_per_rank))))
        if self.memory["working_elements"] is not None:
            lines.append(f"memory at the end of a video (largest): {self.memory['working_elements']} working, "
                         f"{self.memory['long_term_elements']} long-term elements")
        lines.append(f"per-video timings: {self.timings}  config: {self.config}")
        if self.inputs_changed:
            lines.append("redone, their inputs changed since they were finished: " + ", ".join(self.inputs_changed))
        if self.page is not None:
            lines.append(f"report page: {self.page}")
        lines += [f"FAILED {name}: {message}" for name, message in self.failed.items()]
        lines += [f"NOT SCORED {name}: {message}" for name, message in self.unscored.items()]
        return lines


def rate(count: float, seconds: float) -> float:
    """count / seconds, NaN when no time was measured."""
    return count / seconds if seconds > 0 else math.nan


def largest_memory(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary's `memory`: each of MEMORY_RECORD_KEYS at its largest over the videos' records (None where no
    record has it)."""
    largest = {}
    for key in MEMORY_RECORD_KEYS:
        values = [record[key] for record in records if record.get(key) is not None]
        largest[key] = max(values) if values else None
    return largest
