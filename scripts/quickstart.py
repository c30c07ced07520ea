"""See the whole system work in one command: synthetic data, XMem trained from scratch, held-out evaluation, a video.

    python scripts/quickstart.py            # about 12 minutes on two idle CPU cores (uses a GPU when present)
    python scripts/quickstart.py --fast     # under 3 minutes: the same pipeline with a token amount of training

Steps, each done with the project's own code (nothing is special-cased for the quickstart):
1. Synthetic data (dataset/synthetic.py): static image + mask pairs in the reference stage-0 layout, training
   videos (`easy` preset) in a DAVIS-layout folder, and held-out videos (`held_out` preset: faster motion,
   distractors, colour drift; other seeds) laid out as a DAVIS 2017 val split.
2. A random-init XMem (the full network) whose BatchNorm statistics are calibrated on synthetic training frames,
   then training with train.py's entry point and configs/quickstart.yaml: stage 0 (static pseudo-videos), then
   stage 3 (videos). Read that file for every departure from the paper's recipe.
3. Evaluation with eval.py's entry point (D17 layout, paper memory settings) of the trained network and of the
   same network at its initialisation, each in a fresh process so that its peak memory is its own; and the
   copy-the-first-frame-mask baseline scored by the same metrics (inference/evaluation/metrics.py, DAVIS mode).
4. A table of J&F / J / F, FPS and peak memory; an overlay video (.mp4) and a contact sheet (.png) of one
   held-out video, made by scripts/evaluation/visualize.py.

Everything goes under --out (default ./quickstart_out/default); a rerun reuses finished data, training and evaluation.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from configs import load_config
from configs.common import project_command, run_child, run_cli
from dataset.eval_datasets import read_video_list
from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from dataset.synthetic_plan import (CALIBRATION_SEED, DEFAULT_PLAN, FAST_PLAN, HELD_OUT_PRESET, DataFolders,
                                    calibration_clips, make_data)
from inference.evaluation.folder_evaluation import evaluate_folders
from inference.evaluation.metrics import MODE_DAVIS
from model.batchnorm_calibration import INIT_CHECKPOINT, calibrated_initial_network
from model.training.run_folder import RunDirectory

VISUALIZE_SCRIPT = "scripts/evaluation/visualize.py"
RESULTS_FILE = "quickstart_results.json"
DEFAULT_OUTPUT = Path("quickstart_out")  # git-ignored
REQUIRED_MARGIN_OVER_COPY = 0.15  # J&F points (as a fraction) the trained model should gain over copying frame 0
TIMINGS_FILE = "timings.csv"  # eval.py's per-video frames and seconds (data loading excluded)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true",
                        help="a token amount of training and fewer videos (under 3 minutes on two CPU cores)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for data, checkpoints, results and videos (default ./quickstart_out/default, "
                             "with --fast ./quickstart_out/fast)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available, else CPU) | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice; on a machine shared with other "
                             "jobs, 1 is often much faster than oversubscribing)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides for training, e.g. train.stage3.iterations=300")
    args = parser.parse_args(argv)
    if args.device not in ("auto", "cpu", "cuda"):
        parser.error(f"--device {args.device!r} is invalid; expected auto, cpu or cuda")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads {args.threads} is invalid; expected a positive number of threads")
    return args


# ---------------------------------------------------------------------------------------------------- training
def _threads_env(threads: int | None) -> dict[str, str]:
    """The environment that gives a child CLI `threads` CPU threads (none: torch's choice)."""
    return {} if threads is None else {variable: str(threads) for variable in THREAD_VARIABLES}


def train_network(preset: str, folders: DataFolders, init_path: Path, save_dir: Path, device: str,
                  overrides: Sequence[str], threads: int | None) -> Path:
    """Train with train.py (the stages of the preset) and return the final snapshot.

    A finished run is reused; an interrupted one continues from its last resume checkpoint.
    """
    arguments = [f"train.save_dir={save_dir.resolve()}", f"train.load_network={init_path.resolve()}",
                 f"train.data.static_root={folders.static_root.resolve()}",
                 f"train.data.generic_root={folders.train_root.resolve()}", f"train.device={device}", *overrides]
    train = load_config(preset, arguments).train
    last_stage = train.stage(train.stages[-1])
    run = RunDirectory(train.save_dir, train.exp_id)
    snapshot = run.snapshot(train.stages, last_stage.total_iterations)
    if not snapshot.is_file():
        resume = ["--resume"] if run.checkpoints() else []
        run_child(project_command("train.py", "--config", preset, *arguments, *resume), env_extra=_threads_env(threads),
                  check=True)
    return snapshot


# ---------------------------------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(preset: str, checkpoint: Path, folders: DataFolders, output: Path, device: str,
                        threads: int | None) -> dict[str, Any]:
    """Segment the held-out split with eval.py, then score its masks with the project's metrics (DAVIS mode, as
    eval.py scores D17).

    Returns:
        {"scores": global scores (fractions), "fps": frames per second without data loading (eval.py's
        timings.csv), "peak_memory_mb": eval.py's peak RSS, or None where unknown}.
    """
    command = project_command("eval.py", "--config", preset, f"eval.d17_path={folders.held_out_root.resolve()}",
                              f"eval.model={checkpoint.resolve()}", f"eval.output={output.resolve()}",
                              f"eval.device={device}", "eval.overwrite=true")
    peak_memory_mb = run_child(command, env_extra=_threads_env(threads), check=True).peak_memory_mb
    with open(output / TIMINGS_FILE, newline="") as timings:
        rows = list(csv.DictReader(timings))
    fps = sum(int(row["frames"]) for row in rows) / sum(float(row["seconds"]) for row in rows)
    results = evaluate_folders(folders.held_out.annotations, output, read_mask=read_mask_ids,
                               imageset=folders.held_out.video_list, mode=MODE_DAVIS, num_processes=1)
    return {"scores": results.global_scores(), "fps": fps, "peak_memory_mb": peak_memory_mb}


def copy_first_mask_baseline(folders: DataFolders, output: Path) -> dict[str, float]:
    """Write the first-frame mask as the prediction of every frame and score it with the same metrics."""
    for video in read_video_list(folders.held_out.video_list):
        masks = sorted((folders.held_out.annotations / video).glob("*.png"))
        first, palette = read_index_mask(masks[0])
        for mask in masks:
            if not (output / video / mask.name).is_file():
                write_index_mask(output / video / mask.name, first, palette)
    results = evaluate_folders(folders.held_out.annotations, output, read_mask=read_mask_ids,
                               imageset=folders.held_out.video_list, mode=MODE_DAVIS, num_processes=1)
    return results.global_scores()


# ---------------------------------------------------------------------------------------------------- report
SCORE_COLUMNS = (("J&F", "J&F-Mean"), ("J", "J-Mean"), ("F", "F-Mean"))


def format_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Rows of (method, {"scores": global scores, optional "fps" and "peak_memory_mb"}) as a text table; scores
    are printed × 100."""
    header = f"{'method':<32}" + "".join(f"{title:>7}" for title, _ in SCORE_COLUMNS) + f"{'FPS':>8}{'peak RSS':>11}"
    lines = [header, "-" * len(header)]
    for name, row in rows:
        scores = "".join(f"{100 * row['scores'][column]:7.1f}" for _, column in SCORE_COLUMNS)
        fps = f"{row['fps']:8.1f}" if "fps" in row else f"{'-':>8}"
        memory = row.get("peak_memory_mb")
        speed = fps + (f"{memory:8.0f} MB" if memory is not None else f"{'-':>11}")
        lines.append(f"{name:<32}{scores}{speed}")
    return "\n".join(lines)


def visualize(folders: DataFolders, predictions: Path, video: str, out: Path) -> tuple[Path, Path]:
    """The overlay video and contact sheet of one held-out video, made by scripts/evaluation/visualize.py."""
    video_path, sheet_path = out / f"overlay_{video}.mp4", out / f"contact_sheet_{video}.png"
    run_child(project_command(VISUALIZE_SCRIPT, "--frames", str(folders.held_out.frames / video), "--masks",
                              str(predictions / video), "--video", str(video_path), "--sheet", str(sheet_path)),
              check=True)
    return video_path, sheet_path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the quickstart; returns what it writes to <out>/quickstart_results.json."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    plan = FAST_PLAN if args.fast else DEFAULT_PLAN
    config = load_config(plan.preset, list(args.overrides))  # fails before any work on a bad preset or override
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    out = args.out or DEFAULT_OUTPUT / ("fast" if args.fast else "default")
    clock = _StepClock()

    folders = make_data(plan, out)
    clock.lap("data")
    clips = calibration_clips(folders.static_root, config.train.data.crop_size, plan.calibration_clips)
    init_path = calibrated_initial_network(clips, out / INIT_CHECKPOINT, device, seed=CALIBRATION_SEED)
    clock.lap("calibration")
    snapshot = train_network(plan.preset, folders, init_path, out / "saves", device.type, args.overrides,
                             args.threads)
    clock.lap("training")
    rows = {
        "trained": evaluate_checkpoint(plan.preset, snapshot, folders, out / "eval" / "trained", device.type,
                                       args.threads),
        "initialisation": evaluate_checkpoint(plan.preset, init_path, folders, out / "eval" / "initialisation",
                                              device.type, args.threads),
        "copy_first_mask": {"scores": copy_first_mask_baseline(folders, out / "eval" / "copy_first_mask")},
    }
    clock.lap("evaluation")
    videos = read_video_list(folders.held_out.video_list)
    video_path, sheet_path = visualize(folders, out / "eval" / "trained", videos[0], out)
    clock.lap("visualisation")

    table = format_table([("XMem trained from scratch", rows["trained"]),
                          ("same network at initialisation", rows["initialisation"]),
                          ("copy first-frame mask", rows["copy_first_mask"])])
    trained = rows["trained"]["scores"]["J&F-Mean"]
    over_copy = trained - rows["copy_first_mask"]["scores"]["J&F-Mean"]
    over_initialisation = trained - rows["initialisation"]["scores"]["J&F-Mean"]
    results = {"table": table, **rows, "held_out_videos": videos, "snapshot": str(snapshot),
               "overlay_video": str(video_path), "contact_sheet": str(sheet_path), "seconds": clock.with_total,
               "device": device.type}
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=1))
    print(f"\nHeld-out synthetic videos: {len(videos)} ({HELD_OUT_PRESET} preset, {plan.height}x{plan.width}, "
          f"{plan.held_out_video_frames} frames), DAVIS-mode metrics x 100, FPS without data loading, on "
          f"{device.type}:")
    print(table)
    print(f"trained - copy first-frame mask: {100 * over_copy:+.1f} J&F (the default run aims at "
          f"+{100 * REQUIRED_MARGIN_OVER_COPY:.0f}); trained - initialisation: {100 * over_initialisation:+.1f} J&F")
    print(f"overlay video: {video_path}\ncontact sheet: {sheet_path}\nresults: {out / RESULTS_FILE}")
    print("time: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in clock.with_total.items()))
    return results


class _StepClock:
    """Wall time of consecutive steps, plus the total."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 1)
        self.last = now

    @property
    def with_total(self) -> dict[str, float]:
        return {**self.laps, "total": round(self.last - self.started, 1)}


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
