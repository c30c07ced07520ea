r"""Per-frame speed and memory of the streaming core on long synthetic videos, and the scaling study.

The video comes from `dataset.synthetic` frame by frame (nothing is written to disk). Frame 0 gives every object
but one; the last object is added on `--late_object_frame`. Each frame's row in the CSV holds its latency
(normalisation + `InferenceCore.step`, rendering excluded), the process's resident memory, CUDA memory when on a
GPU (allocated after the frame, and the frame's peak), and the working and long-term memory element counts. The
summary prints the median latency, FPS and the memory at a few points along the video, so that flat time and
memory can be read off directly.

`--prefill_memory` starts from full memory: after frame 0 (which gives every object), random memory frames are
written through the memory manager's own write path (`MemoryManager.fill_to_bound`) until long-term memory has
been pruned once and working memory holds T_max − 1 frames, so every later frame reads (and consolidates into) a
memory at its bound. That is the slowest steady state of XMem, e.g. at 480p.

`--scaling_study DIR` runs the study: one fresh process per run (so that each run's process memory is its own),
for each of `--study_frames` (default 1000 5000 10000) at --height×--width with long-term memory on and off,
plus `--full_memory_frames` frames at --full_memory_height×--full_memory_width with prefilled memory (long-term
on). It writes each run's per-frame CSV, `scaling_summary.csv` / `.md` (one row per run) and, when matplotlib
is installed (an optional extra: `pip install matplotlib`), `scaling.png`: time per frame, process memory and
memory elements (working + long-term) against the frame index.

Usage:
    python scripts/speed/benchmark.py --frames 2000 --height 96 --width 160 --max_long_term_elements 2000 \
        --late_object_frame 500 --output benchmark.csv
    python scripts/speed/benchmark.py --model saves/XMem.pth --device cuda --frames 10000 --height 480 --width 854
    python scripts/speed/benchmark.py --scaling_study scaling --study_frames 1000 5000 10000 --full_memory_frames 30
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence


import numpy as np
import torch
from tqdm import tqdm

from configs.schema import InferenceConfig
from configs.common import BYTES_PER_MB, atomic_output, peak_rss_mb, run_child, run_cli
from dataset.synthetic import PRESETS, SyntheticVideo
from inference.inference_core import InferenceCore, normalize_image
from model.checkpoint import load_network
from model.network import XMem

COLUMNS = ("frame", "seconds", "rss_mb", "cuda_allocated_mb", "cuda_peak_mb", "working_elements", "long_term_elements",
           "objects")
PROC_STATM = Path("/proc/self/statm")
NUM_OBJECTS = 2  # one from frame 0, one added late (both from frame 0 with prefilled memory)
REPORT_POINTS = (0.1, 0.5, 1.0)  # fractions of the video at which the summary reports memory and time
DEFAULT_SEED = 0

# Scaling study.
STUDY_FRAMES = (1000, 5000, 10000)
FULL_MEMORY_HEIGHT, FULL_MEMORY_WIDTH = 480, 854  # DAVIS 480p
DEFAULT_FULL_MEMORY_FRAMES = 30
EDGE_FRACTION = 0.1  # the summary compares the first and the last tenth of each run
SUMMARY_COLUMNS = ("run", "frames", "height", "width", "long_term", "prefilled", "median_ms_first",
                   "median_ms_last", "rss_mb_first", "rss_mb_last", "max_working_elements",
                   "max_long_term_elements", "seconds_total")
PLOT_WINDOW_FRAMES = 25  # the time curves are rolling medians over this many frames
PLOT_FILE = "scaling.png"
PLOT_DPI = 120
PREFILL_NEEDS_LONG_TERM = ("prefill_memory needs long-term memory (inference.enable_long_term=true): without "
                           "it working memory has no bound to fill to")


def current_rss_mb() -> float:
    """The process's resident memory now (Linux /proc), else its peak (getrusage)."""
    if PROC_STATM.is_file():
        resident_pages = int(PROC_STATM.read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_MB
    return peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # where /proc is absent


def _network(model: Optional[str], device: torch.device) -> XMem:
    if model is not None:
        return load_network(model, device)
    torch.manual_seed(DEFAULT_SEED)  # random weights time the same as trained ones
    return XMem().to(device).eval()


def prefill_memory(core: InferenceCore, seed: int = DEFAULT_SEED) -> None:
    """Fill the memory to its bound with random frames (`MemoryManager.fill_to_bound`, the real write path).

    Call after the first (annotated) frame. Working memory then holds T_max − 1 frames and long-term memory its
    steady-state size (LT_max when P candidates are available), so the next memory frame consolidates and prunes:
    memory stays at its bound, the most a frame ever reads.

    Raises:
        ValueError: long-term memory is off, or the core has not seen its first frame.
    """
    config, memory = core.config, core.memory
    if not config.enable_long_term:
        raise ValueError(PREFILL_NEEDS_LONG_TERM)
    if not memory.initialized:
        raise ValueError("prefill_memory: step the first (annotated) frame before prefilling the memory")
    memory.fill_to_bound(torch.Generator().manual_seed(seed))


def run_benchmark(*, frames: int, height: int, width: int, config: InferenceConfig,
                  late_object_frame: Optional[int], model: Optional[str] = None, device: str = "cpu",
                  seed: int = DEFAULT_SEED, output: Optional[Path] = None,
                  prefill: bool = False) -> dict[str, Any]:
    """Stream a synthetic video through `InferenceCore` and record every frame.

    Args:
        frames, height, width: the video.
        config: inference settings.
        late_object_frame: the frame that adds the second object; None = both objects from frame 0.
        model: checkpoint, or None for random weights. device: torch device string. seed: the video's seed.
        output: per-frame CSV (written atomically), or None.
        prefill: fill the memory to its bound after frame 0 (`prefill_memory`).
    Returns:
        dict with `rows` (one dict per frame, keys COLUMNS), `median_seconds`, `fps` (1 / median) and the CSV path.
    Raises:
        ValueError: `late_object_frame` outside 1..frames-1; `prefill` without long-term memory.
    """
    if late_object_frame is not None and not 0 < late_object_frame < frames:
        raise ValueError(f"late_object_frame {late_object_frame} must be within 1..{frames - 1} (frames={frames})")
    if prefill and not config.enable_long_term:
        raise ValueError(PREFILL_NEEDS_LONG_TERM)
    torch_device = torch.device(device)
    network = _network(model, torch_device)
    # Two objects that stay in view, so that the late one can be given from the generator's own mask.
    difficulty = dataclasses.replace(PRESETS["easy"], min_objects=NUM_OBJECTS, max_objects=NUM_OBJECTS)
    video = SyntheticVideo(seed=seed, height=height, width=width, num_frames=frames, difficulty=difficulty)
    core = InferenceCore(network, config, device=torch_device, num_frames=frames)
    rows = []
    for index, rgb, mask in tqdm(video.frames(), total=frames, unit="frame", desc="benchmark"):
        given = None
        if index == 0:
            given = mask if late_object_frame is None else np.where(mask == NUM_OBJECTS, 0, mask)
        elif index == late_object_frame:
            given = np.where(mask == NUM_OBJECTS, mask, 0)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
            torch.cuda.reset_peak_memory_stats(torch_device)  # the column holds each frame's own peak
        start = time.perf_counter()
        with torch.inference_mode():
            core.step(normalize_image(rgb, device=torch_device),
                      None if given is None else torch.from_numpy(given.astype(np.int64)).to(torch_device),
                      end=index == frames - 1)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        seconds = time.perf_counter() - start
        if prefill and index == 0:
            prefill_memory(core, seed)
        on_cuda = torch_device.type == "cuda"
        cuda_mb = torch.cuda.memory_allocated(torch_device) / BYTES_PER_MB if on_cuda else 0.0
        cuda_peak_mb = torch.cuda.max_memory_allocated(torch_device) / BYTES_PER_MB if on_cuda else 0.0
        rows.append({"frame": index, "seconds": round(seconds, 6), "rss_mb": round(current_rss_mb(), 2),
                     "cuda_allocated_mb": round(cuda_mb, 2), "cuda_peak_mb": round(cuda_peak_mb, 2),
                     "working_elements": core.working_memory_elements,
                     "long_term_elements": core.long_term_memory_elements, "objects": len(core.object_ids)})
    median = statistics.median(row["seconds"] for row in rows)
    if output is not None:
        _write_csv(output, COLUMNS, rows)
    return {"rows": rows, "median_seconds": median, "fps": 1 / median if median > 0 else float("nan"),
            "csv": output}


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    table = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    table.writeheader()
    table.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        Path(temporary).write_text(buffer.getvalue())


def format_summary(result: dict[str, Any]) -> str:
    """Median latency and FPS, then time and memory at REPORT_POINTS of the video."""
    rows = result["rows"]
    lines = [f"{len(rows)} frames: median {1000 * result['median_seconds']:.1f} ms/frame, {result['fps']:.1f} FPS"]
    for fraction in REPORT_POINTS:
        row = rows[max(0, round(fraction * len(rows)) - 1)]
        window = [r["seconds"] for r in rows[max(0, row["frame"] - 50):row["frame"] + 1]]
        lines.append(f"frame {row['frame']}: median of last {len(window)} frames "
                     f"{1000 * statistics.median(window):.1f} ms, RSS {row['rss_mb']:.0f} MB, CUDA "
                     f"{row['cuda_allocated_mb']:.0f} MB, working {row['working_elements']}, long-term "
                     f"{row['long_term_elements']} elements, {row['objects']} objects")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- scaling study
@dataclasses.dataclass(frozen=True)
class StudyRun:
    """One run of the scaling study: its video, whether long-term memory is on and whether memory is prefilled."""

    frames: int
    height: int
    width: int
    long_term: bool
    prefilled: bool = False

    @property
    def name(self) -> str:
        memory = "full_memory" if self.prefilled else f"lt_{'on' if self.long_term else 'off'}"
        return f"{self.frames}f_{self.height}x{self.width}_{memory}"


def study_runs(frame_counts: Sequence[int], height: int, width: int, full_memory_frames: int,
               full_memory_size: tuple[int, int]) -> list[StudyRun]:
    """Long-term on and off for each frame count, then the prefilled full-memory run (if any frames)."""
    runs = [StudyRun(frames, height, width, long_term) for frames in frame_counts for long_term in (True, False)]
    if full_memory_frames > 0:
        runs.append(StudyRun(full_memory_frames, *full_memory_size, long_term=True, prefilled=True))
    return runs


def _run_command(run: StudyRun, csv_path: Path, arguments: argparse.Namespace) -> list[str]:
    """The `benchmark.py` command line of one study run (a fresh process, so that RSS is the run's own)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--frames", str(run.frames), "--height",
               str(run.height), "--width", str(run.width), "--device", arguments.device, "--seed",
               str(arguments.seed), "--output", str(csv_path)]
    for name in ("max_working_frames", "min_working_frames", "max_long_term_elements", "num_prototypes",
                 "mem_every"):
        command += [f"--{name}", str(getattr(arguments, name))]
    if arguments.model is not None:
        command += ["--model", arguments.model]
    if not run.long_term:
        command.append("--disable_long_term")
    if run.prefilled:
        command.append("--prefill_memory")
    return command


def _read_rows(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def summarize_run(run: StudyRun, rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    """One summary row: median time and RSS over the first and last tenth of the run, peak element counts."""
    edge = max(1, round(EDGE_FRACTION * len(rows)))
    first, last = rows[:edge], rows[-edge:]
    return {
        "run": run.name, "frames": run.frames, "height": run.height, "width": run.width,
        "long_term": run.long_term, "prefilled": run.prefilled,
        "median_ms_first": round(1000 * statistics.median(row["seconds"] for row in first), 2),
        "median_ms_last": round(1000 * statistics.median(row["seconds"] for row in last), 2),
        "rss_mb_first": round(statistics.median(row["rss_mb"] for row in first), 1),
        "rss_mb_last": round(statistics.median(row["rss_mb"] for row in last), 1),
        "max_working_elements": int(max(row["working_elements"] for row in rows)),
        "max_long_term_elements": int(max(row["long_term_elements"] for row in rows)),
        "seconds_total": round(sum(row["seconds"] for row in rows), 1),
    }


def format_markdown(summary: Sequence[dict[str, Any]]) -> str:
    """The study's summary rows as a markdown table."""
    header = ("run", "frames", "size", "long-term", "ms/frame first 10%", "ms/frame last 10%", "RSS MB first 10%",
              "RSS MB last 10%", "max working el.", "max long-term el.")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in summary:
        long_term = "on, prefilled" if row["prefilled"] else ("on" if row["long_term"] else "off")
        cells = (row["run"], row["frames"], f"{row['height']}×{row['width']}", long_term, row["median_ms_first"],
                 row["median_ms_last"], row["rss_mb_first"], row["rss_mb_last"], row["max_working_elements"],
                 row["max_long_term_elements"])
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    return "\n".join(lines)


def _rolling_median(values: np.ndarray, window: int) -> np.ndarray:
    return np.array([np.median(values[max(0, index - window + 1):index + 1]) for index in range(len(values))])


def plot_study(curves: Sequence[tuple[StudyRun, Sequence[dict[str, float]]]], path: Path) -> Optional[Path]:
    """Time per frame (rolling median), process memory and memory elements against the frame index, one line a run.

    Returns:
        the PNG path, or None when matplotlib (an optional extra) is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    groups = [[item for item in curves if not item[0].prefilled], [item for item in curves if item[0].prefilled]]
    groups = [group for group in groups if group]
    figure, axes = pyplot.subplots(len(groups), 3, figsize=(18, 4 * len(groups)), squeeze=False)
    for (time_axis, memory_axis, elements_axis), group in zip(axes, groups):
        for run, rows in group:
            frame = np.array([row["frame"] for row in rows])
            milliseconds = 1000 * np.array([row["seconds"] for row in rows])
            style = "-" if run.long_term else "--"
            label = f"{run.frames} frames, long-term {'on' if run.long_term else 'off'}"
            if run.prefilled:
                label = f"{run.height}×{run.width}, prefilled memory (long-term on)"
            time_axis.plot(frame, _rolling_median(milliseconds, PLOT_WINDOW_FRAMES), style, label=label)
            memory_axis.plot(frame, [row["rss_mb"] for row in rows], style, label=label)
            elements = [row["working_elements"] + row["long_term_elements"] for row in rows]
            elements_axis.plot(frame, elements, style, label=label)
        size = f"{group[0][0].height}×{group[0][0].width}"
        time_axis.set(xlabel="frame", ylabel=f"ms per frame (median of {PLOT_WINDOW_FRAMES})",
                      title=f"time per frame, {size}")
        memory_axis.set(xlabel="frame", ylabel="process RSS (MB)", title=f"process memory, {size}")
        elements_axis.set(xlabel="frame", ylabel="working + long-term elements", title=f"memory elements, {size}")
        for axis in (time_axis, memory_axis, elements_axis):
            axis.legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=PLOT_DPI, format="png")
    pyplot.close(figure)
    return path


def run_scaling_study(arguments: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume) every study run in its own process; write the summary CSV / markdown and the plot.

    A run whose CSV exists is not repeated (delete it to redo the run).

    Returns:
        dict with `summary` (rows of SUMMARY_COLUMNS), `markdown`, `csv` and `plot` (None without matplotlib).
    Raises:
        subprocess.CalledProcessError: a run failed (its output is shown above).
    """
    directory = Path(arguments.scaling_study)
    runs = study_runs(arguments.study_frames, arguments.height, arguments.width, arguments.full_memory_frames,
                      (arguments.full_memory_height, arguments.full_memory_width))
    curves = []
    for run in runs:
        csv_path = directory / f"{run.name}.csv"
        if not csv_path.is_file():
            print(f"scaling study: {run.name}", flush=True)
            run_child(_run_command(run, csv_path, arguments), check=True)
        curves.append((run, _read_rows(csv_path)))
    summary = [summarize_run(run, rows) for run, rows in curves]
    _write_csv(directory / "scaling_summary.csv", SUMMARY_COLUMNS, summary)
    markdown = format_markdown(summary)
    with atomic_output(directory / "scaling_summary.md") as temporary:
        Path(temporary).write_text(markdown + "\n")
    plot = plot_study(curves, directory / PLOT_FILE)
    return {"summary": summary, "markdown": markdown, "csv": directory / "scaling_summary.csv", "plot": plot}


# --------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    defaults = InferenceConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--late_object_frame", type=int, default=None,
                        help="default: a quarter into the video (none with --prefill_memory)")
    parser.add_argument("--model", default=None, help="checkpoint; default: random weights (same speed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--output", type=Path, default=None, help="per-frame CSV")
    parser.add_argument("--max_working_frames", type=int, default=defaults.max_working_frames, help="T_max")
    parser.add_argument("--min_working_frames", type=int, default=defaults.min_working_frames, help="T_min")
    parser.add_argument("--max_long_term_elements", type=int, default=defaults.max_long_term_elements,
                        help="LT_max")
    parser.add_argument("--num_prototypes", type=int, default=defaults.num_prototypes, help="P")
    parser.add_argument("--mem_every", type=int, default=defaults.mem_every, help="r")
    parser.add_argument("--disable_long_term", action="store_true",
                        help="working memory only, never consolidated (grows with the video)")
    parser.add_argument("--prefill_memory", action="store_true",
                        help="start from full memory: T_max − 1 working frames and LT_max long-term elements")
    study = parser.add_argument_group("scaling study")
    study.add_argument("--scaling_study", type=Path, default=None, metavar="DIR",
                       help="run the scaling study into DIR (resumes: runs whose CSV exists are kept)")
    study.add_argument("--study_frames", type=int, nargs="+", default=list(STUDY_FRAMES),
                       help="video lengths, each with long-term memory on and off")
    study.add_argument("--full_memory_frames", type=int, default=DEFAULT_FULL_MEMORY_FRAMES,
                       help="frames of the prefilled full-memory run (0 = none)")
    study.add_argument("--full_memory_height", type=int, default=FULL_MEMORY_HEIGHT)
    study.add_argument("--full_memory_width", type=int, default=FULL_MEMORY_WIDTH)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    arguments = build_parser().parse_args(argv)
    if arguments.scaling_study is not None:
        result = run_scaling_study(arguments)
        print(result["markdown"])
        print(f"summary: {result['csv']}; plot: " +
              (str(result["plot"]) if result["plot"] else "not drawn (pip install matplotlib)"))
        return result
    config = dataclasses.replace(
        InferenceConfig(), max_working_frames=arguments.max_working_frames,
        min_working_frames=arguments.min_working_frames, max_long_term_elements=arguments.max_long_term_elements,
        num_prototypes=arguments.num_prototypes, mem_every=arguments.mem_every,
        enable_long_term=not arguments.disable_long_term)
    late = arguments.late_object_frame
    if late is None and not arguments.prefill_memory:
        late = arguments.frames // 4
    result = run_benchmark(frames=arguments.frames, height=arguments.height, width=arguments.width, config=config,
                           late_object_frame=late, model=arguments.model, device=arguments.device,
                           seed=arguments.seed, output=arguments.output, prefill=arguments.prefill_memory)
    print(format_summary(result))
    return result


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
