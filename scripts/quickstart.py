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
   held-out video, made by scripts/visualize.py.

Everything goes under --out (default ./quickstart_out/default); a rerun reuses finished data, training and evaluation.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import default_collate
from tqdm import tqdm

from configs import common, load_config
from configs.schema import ModelConfig
from dataset.image_io import read_index_mask, read_mask_ids, write_index_mask
from dataset.static_dataset import REFERENCE_STATIC_SOURCES, StaticImageDataset, reference_static_sources
from dataset.synthetic import get_preset, make_videos, without_late_entries
from dataset.synthetic_layouts import (
    make_static_classes, write_davis, write_static_flat, write_static_fss,
)
from inference.evaluation.folder_evaluation import evaluate_folders
from inference.evaluation.metrics import MODE_DAVIS
from model.checkpoint import save_network
from model.network import XMem
from model.training.run_folder import RunDirectory

REPOSITORY = Path(__file__).resolve().parents[1]
VISUALIZE_SCRIPT = REPOSITORY / "scripts" / "visualize.py"
TRAIN_PRESET = "easy"  # slow motion, 1-2 objects, no distractors: learnable in minutes from scratch
HELD_OUT_PRESET = "held_out"
DAVIS_SPLIT_FOLDER = "trainval"  # eval.py reads <d17_path>/trainval/ for the D17 val split
RESULTS_FILE = "quickstart_results.json"
DEFAULT_OUTPUT = Path("quickstart_out")  # git-ignored
REQUIRED_MARGIN_OVER_COPY = 0.15  # J&F points (as a fraction) the trained model should gain over copying frame 0
INIT_CHECKPOINT = "calibrated_init.pth"
TIMINGS_FILE = "timings.csv"  # eval.py's per-video frames and seconds (data loading excluded)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
BYTES_PER_MB = 2**20
RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, kilobytes on Linux
# Seeds of the data sets: distinct streams so that no held-out video repeats a training video.
STATIC_SEED, TRAIN_SEED, HELD_OUT_SEED, CALIBRATION_SEED = 101, 202, 303, 404


@dataclasses.dataclass(frozen=True)
class QuickstartPlan:
    """How much data the quickstart makes and which training preset it uses.

    Attributes:
        preset: training/evaluation config under configs/.
        height, width: frame size of every synthetic video and image (pixels).
        static_images_per_source: image + mask pairs in each of the six stage-0 source folders (FSS-1000 gets
            them as classes of STATIC_IMAGES_PER_CLASS).
        train_videos, train_video_frames: the stage-3 training videos.
        train_video_preset: their difficulty preset (dataset/synthetic.py PRESETS); other seeds than the
            held-out videos.
        held_out_videos, held_out_video_frames: the evaluation videos.
        calibration_clips: static pseudo-video clips (3 frames each) run through the trunks to set BatchNorm
            statistics before training.
    """

    preset: str
    height: int = 96
    width: int = 160
    static_images_per_source: int = 40
    train_videos: int = 40
    train_video_frames: int = 24
    train_video_preset: str = TRAIN_PRESET
    held_out_videos: int = 8
    held_out_video_frames: int = 30
    calibration_clips: int = 32


STATIC_IMAGES_PER_CLASS = 10
DEFAULT_PLAN = QuickstartPlan(preset="quickstart")
FAST_PLAN = QuickstartPlan(preset="quickstart_fast", static_images_per_source=10, train_videos=10,
                           held_out_videos=3, held_out_video_frames=20, calibration_clips=8)


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


# ---------------------------------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class DataFolders:
    """Where the quickstart's synthetic data lives."""

    static_root: Path  # the six stage-0 source folders
    train_root: Path  # DAVIS layout, every frame annotated (train.data.generic_root)
    held_out_root: Path  # eval.d17_path: <root>/trainval/{JPEGImages,Annotations}/480p, ImageSets/2017/val.txt

    @property
    def held_out_split(self) -> Path:
        return self.held_out_root / DAVIS_SPLIT_FOLDER

    @property
    def held_out_annotations(self) -> Path:
        return self.held_out_split / "Annotations" / "480p"

    @property
    def held_out_frames(self) -> Path:
        return self.held_out_split / "JPEGImages" / "480p"

    @property
    def held_out_list(self) -> Path:
        return self.held_out_split / "ImageSets" / "2017" / "val.txt"


def make_data(plan: QuickstartPlan, out: Path) -> DataFolders:
    """Write (or reuse) the static images, training videos and held-out videos of `plan` under `out/data`."""
    folders = DataFolders(out / "data" / "static", out / "data" / "train", out / "data" / "held_out")
    # DAVIS layout: every object is present on frame 0.
    static_difficulty = get_preset(TRAIN_PRESET)
    train_difficulty = without_late_entries(get_preset(plan.train_video_preset))
    held_out_difficulty = without_late_entries(get_preset(HELD_OUT_PRESET))
    static_total = plan.static_images_per_source * len(REFERENCE_STATIC_SOURCES)
    total = (static_total + plan.train_videos * plan.train_video_frames
             + plan.held_out_videos * plan.held_out_video_frames)
    size = dict(height=plan.height, width=plan.width)
    with tqdm(total=total, desc="synthetic data", unit="frame") as progress:
        for source_index, (folder, layout, _) in enumerate(REFERENCE_STATIC_SOURCES):
            seed = STATIC_SEED + source_index
            if layout == "class_folders":
                classes = make_static_classes(max(plan.static_images_per_source // STATIC_IMAGES_PER_CLASS, 1),
                                              STATIC_IMAGES_PER_CLASS, seed=seed, difficulty=static_difficulty,
                                              **size)
                write_static_fss(folders.static_root / folder, classes, progress=progress.update)
            else:
                images = make_videos(plan.static_images_per_source, seed=seed, num_frames=1,
                                     difficulty=static_difficulty, **size)
                write_static_flat(folders.static_root / folder, images, progress=progress.update)
        train_videos = make_videos(plan.train_videos, seed=TRAIN_SEED, num_frames=plan.train_video_frames,
                                   difficulty=train_difficulty, **size)
        write_davis(folders.train_root, train_videos, {}, progress=progress.update)
        held_out_videos = make_videos(plan.held_out_videos, seed=HELD_OUT_SEED,
                                      num_frames=plan.held_out_video_frames, difficulty=held_out_difficulty, **size)
        write_davis(folders.held_out_split, {}, held_out_videos, progress=progress.update)
    return folders


# -------------------------------------------------------------------------------------------- initialisation
@torch.no_grad()
def calibrate_batchnorm(network: XMem, clips: Sequence[dict[str, Any]]) -> None:
    """Set every BatchNorm's running mean and variance to its statistics over `clips`, then freeze it again.

    A random-init network has running statistics 0 / 1, under which the deep trunks' activations grow from block
    to block; the paper instead starts from ImageNet statistics and never updates them. Here each BatchNorm averages
    the batch statistics it sees (cumulative average) while the trunks run in train mode over the clips' frames
    and first-frame masks; each layer is normalised by batch statistics meanwhile, so every later layer is
    calibrated on the inputs it will see in eval mode. No weight changes.

    Args:
        network: a single-object (stage-0) XMem; modified in place and left in eval mode.
        clips: StaticImageDataset samples (rgb T×3×S×S normalised, first_frame_gt 1×1×S×S in {0, 1}).
    """
    batch_norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    momenta = [module.momentum for module in batch_norms]
    network.eval()
    for module in batch_norms:
        module.reset_running_stats()
        module.momentum = None  # cumulative moving average: every batch counts the same
        module.train()
    batch = default_collate(list(clips))
    device = network.device
    frames = batch["rgb"].to(device)  # B×T×3×S×S
    encoding = network.encode_key(frames)
    first_frames, first_f16 = frames[:, 0], encoding.f16[:, 0]
    masks = batch["first_frame_gt"][:, 0].to(device)  # B×1×S×S
    hidden = torch.zeros(masks.shape[0], masks.shape[1], network.hidden_dim, *first_f16.shape[-2:], device=device)
    network.encode_value(first_frames, first_f16, hidden, masks)
    for module, momentum in zip(batch_norms, momenta):
        module.momentum = momentum
    network.eval()


def calibrated_initial_network(plan: QuickstartPlan, folders: DataFolders, crop_size: int, path: Path,
                               device: torch.device, *, hidden_dim: int = ModelConfig.hidden_dim,
                               seed: int = CALIBRATION_SEED) -> Path:
    """Write the random-init single-object XMem with calibrated BatchNorm that training starts from (a few seconds;
    always redone, so that it follows the crop size and the plan). hidden_dim: C^h (0: no sensory memory); `seed`
    draws the random weights and the calibration crops."""
    torch.manual_seed(seed)
    network = XMem(single_object=True, hidden_dim=hidden_dim).to(device)
    static = StaticImageDataset(reference_static_sources(folders.static_root), crop_size=crop_size, seed=seed)
    clips = [static[index] for index in range(min(plan.calibration_clips, len(static)))]
    calibrate_batchnorm(network, clips)
    save_network(network, path)
    return path


# ---------------------------------------------------------------------------------------------------- training
def run_cli(script: str, arguments: Sequence[str], threads: int | None) -> float | None:
    """Run one of the project's CLIs (train.py, eval.py, scripts/visualize.py) in a child process, in the current
    working directory; return its peak RSS in MB (None where the OS cannot report a child's own, e.g. Windows).

    The CLIs are run, not imported (nothing imports a CLI), and a child process of its own gives each evaluation
    a peak memory that is not the training's.

    Raises:
        subprocess.CalledProcessError: the CLI failed (its own error message is above in the output).
    """
    environment = dict(os.environ)
    if threads is not None:
        environment.update({variable: str(threads) for variable in THREAD_VARIABLES})
    command = [sys.executable, str(REPOSITORY / script), *arguments]
    process = subprocess.Popen(command, env=environment)
    peak_memory_mb = None
    if hasattr(os, "wait4"):
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        peak_memory_mb = usage.ru_maxrss * RSS_UNIT_BYTES / BYTES_PER_MB
    else:
        process.wait()
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return peak_memory_mb


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
        run_cli("train.py", ["--config", preset, *arguments] + (["--resume"] if run.checkpoints() else []), threads)
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
    peak_memory_mb = run_cli("eval.py", ["--config", preset, f"eval.d17_path={folders.held_out_root.resolve()}",
                                         f"eval.model={checkpoint.resolve()}", f"eval.output={output.resolve()}",
                                         f"eval.device={device}", "eval.overwrite=true"], threads)
    with open(output / TIMINGS_FILE, newline="") as timings:
        rows = list(csv.DictReader(timings))
    fps = sum(int(row["frames"]) for row in rows) / sum(float(row["seconds"]) for row in rows)
    results = evaluate_folders(folders.held_out_annotations, output, read_mask=read_mask_ids,
                               imageset=folders.held_out_list, mode=MODE_DAVIS, num_processes=1)
    return {"scores": results.global_scores(), "fps": fps, "peak_memory_mb": peak_memory_mb}


def copy_first_mask_baseline(folders: DataFolders, output: Path) -> dict[str, float]:
    """Write the first-frame mask as the prediction of every frame and score it with the same metrics."""
    for video in folders.held_out_list.read_text().split():
        masks = sorted((folders.held_out_annotations / video).glob("*.png"))
        first, palette = read_index_mask(masks[0])
        for mask in masks:
            if not (output / video / mask.name).is_file():
                write_index_mask(output / video / mask.name, first, palette)
    results = evaluate_folders(folders.held_out_annotations, output, read_mask=read_mask_ids,
                               imageset=folders.held_out_list, mode=MODE_DAVIS, num_processes=1)
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
    """The overlay video and contact sheet of one held-out video, made by scripts/visualize.py."""
    video_path, sheet_path = out / f"overlay_{video}.mp4", out / f"contact_sheet_{video}.png"
    run_cli("scripts/visualize.py", ["--frames", str(folders.held_out_frames / video), "--masks",
                                     str(predictions / video), "--video", str(video_path), "--sheet",
                                     str(sheet_path)], threads=None)
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
    init_path = calibrated_initial_network(plan, folders, config.train.data.crop_size, out / INIT_CHECKPOINT, device)
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
    videos = folders.held_out_list.read_text().split()
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
    sys.exit(common.run_cli(_cli))
