"""Per-frame speed and memory of the streaming core on a long synthetic video (frames rendered on the fly).

The video comes from `dataset.synthetic` frame by frame (nothing is written to disk). Frame 0 gives every object
but one; the last object is added on `--late_object_frame`. Each frame's row in the CSV holds its latency
(normalisation + `InferenceCore.step`, rendering excluded), the process's resident memory, CUDA memory when on a
GPU, and the working and long-term memory element counts. The summary prints the median latency, FPS and the
memory at a few points along the video, so that flat time and memory can be read off directly.

Usage:
    python scripts/benchmark.py --frames 2000 --height 96 --width 160 --max_long_term_elements 2000 \
        --late_object_frame 500 --output benchmark.csv
    python scripts/benchmark.py --model saves/XMem.pth --device cuda --frames 10000 --height 480 --width 854
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from configs.schema import InferenceConfig  # noqa: E402
from dataset.synthetic import PRESETS, SyntheticVideo  # noqa: E402
from inference.inference_core import InferenceCore, normalize_image  # noqa: E402
from model.checkpoint import load_network  # noqa: E402
from model.network import XMem  # noqa: E402

COLUMNS = ("frame", "seconds", "rss_mb", "cuda_allocated_mb", "working_elements", "long_term_elements", "objects")
BYTES_PER_MB = 2**20
PROC_STATM = Path("/proc/self/statm")
RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024  # ru_maxrss units (fallback when /proc is absent)
NUM_OBJECTS = 2  # one from frame 0, one added late
REPORT_POINTS = (0.1, 0.5, 1.0)  # fractions of the video at which the summary reports memory and time
DEFAULT_SEED = 0


def current_rss_mb() -> float:
    """The process's resident memory now (Linux /proc), else its peak (getrusage)."""
    if PROC_STATM.is_file():
        resident_pages = int(PROC_STATM.read_text().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_MB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT_BYTES / BYTES_PER_MB


def _network(model: Optional[str], device: torch.device) -> XMem:
    if model is not None:
        return load_network(model, device)
    torch.manual_seed(DEFAULT_SEED)  # random weights time the same as trained ones
    return XMem().to(device).eval()


def run_benchmark(*, frames: int, height: int, width: int, config: InferenceConfig, late_object_frame: int,
                  model: Optional[str] = None, device: str = "cpu", seed: int = DEFAULT_SEED,
                  output: Optional[Path] = None) -> dict[str, Any]:
    """Stream a synthetic video through `InferenceCore` and record every frame.

    Returns:
        dict with `rows` (one dict per frame, keys COLUMNS), `median_seconds`, `fps` (1 / median) and the CSV path.
    Raises:
        ValueError: `late_object_frame` outside 1..frames-1.
    """
    if not 0 < late_object_frame < frames:
        raise ValueError(f"late_object_frame {late_object_frame} must be within 1..{frames - 1} (frames={frames})")
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
            given = np.where(mask == NUM_OBJECTS, 0, mask)
        elif index == late_object_frame:
            given = np.where(mask == NUM_OBJECTS, mask, 0)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        start = time.perf_counter()
        with torch.inference_mode():
            core.step(normalize_image(rgb, device=torch_device),
                      None if given is None else torch.from_numpy(given.astype(np.int64)).to(torch_device),
                      end=index == frames - 1)
        if torch_device.type == "cuda":
            torch.cuda.synchronize(torch_device)
        seconds = time.perf_counter() - start
        cuda_mb = torch.cuda.memory_allocated(torch_device) / BYTES_PER_MB if torch_device.type == "cuda" else 0.0
        rows.append({"frame": index, "seconds": round(seconds, 6), "rss_mb": round(current_rss_mb(), 2),
                     "cuda_allocated_mb": round(cuda_mb, 2), "working_elements": core.working_memory_elements,
                     "long_term_elements": core.long_term_memory_elements, "objects": len(core.object_ids)})
    median = statistics.median(row["seconds"] for row in rows)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", newline="") as handle:
            table = csv.DictWriter(handle, fieldnames=COLUMNS)
            table.writeheader()
            table.writerows(rows)
    return {"rows": rows, "median_seconds": median, "fps": 1 / median if median > 0 else float("nan"),
            "csv": output}


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


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    defaults = InferenceConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--late_object_frame", type=int, default=None, help="default: a quarter into the video")
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
    arguments = parser.parse_args(argv)
    config = dataclasses.replace(
        defaults, max_working_frames=arguments.max_working_frames, min_working_frames=arguments.min_working_frames,
        max_long_term_elements=arguments.max_long_term_elements, num_prototypes=arguments.num_prototypes,
        mem_every=arguments.mem_every)
    late = arguments.late_object_frame if arguments.late_object_frame is not None else arguments.frames // 4
    result = run_benchmark(frames=arguments.frames, height=arguments.height, width=arguments.width, config=config,
                           late_object_frame=late, model=arguments.model, device=arguments.device,
                           seed=arguments.seed, output=arguments.output)
    print(format_summary(result))
    return result


if __name__ == "__main__":
    main()
