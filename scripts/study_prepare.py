"""Prepare the ablation study's training run: synthetic data, the calibrated initial network, the train command.

    python scripts/study_prepare.py --out /work/study_runs     # then run the printed train.py command
    python scripts/study_prepare.py --out /work/study_runs_no_sensory --config study_no_sensory   # hidden_dim 0

The study network (configs/study.yaml) is trained like the quickstart's (scripts/quickstart.py: a random-init
XMem with calibrated BatchNorm, stage 0 on static pseudo-videos, stage 3 on videos) with more and harder data and
more iterations. This script writes, under --out:
- data/static: the six stage-0 source folders (STUDY_PLAN.static_images_per_source image + mask pairs each);
- data/train: DAVIS-layout training videos, every frame annotated: `easy` videos (as the quickstart trains on)
  followed by videos of the `held_out` difficulty (faster motion, distractors, colour drift), other seeds than
  any evaluation video;
- data/held_out: the quickstart's held-out videos (same seed, preset and size: its first 8 videos are exactly the
  quickstart's), laid out as a DAVIS 2017 val split, with more videos for the ablation table;
- calibrated_init.pth: the starting network (scripts/quickstart.py calibrate_batchnorm), its random weights drawn
  from train.seed (so `train.seed=N` among the overrides changes the initial network as well as the data order);
- watch_checkpoints.sh: a loop that keeps only the KEEP_CHECKPOINTS newest resume checkpoints (~750 MB each; one
  every train.save_checkpoint_interval iterations) and exits when the final snapshot exists;
- README.txt: the train, watcher and resume commands and what the folders hold.
A rerun reuses finished data (the writers skip complete videos) and rewrites the initial network.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from configs import load_config
from configs.common import atomic_write_text, run_cli
from dataset.static_dataset import REFERENCE_STATIC_SOURCES
from dataset.synthetic import SyntheticVideo, get_preset, make_videos, without_late_entries
from dataset.synthetic_layouts import make_static_classes, write_davis, write_static_flat, write_static_fss
from model.training.run_folder import RunDirectory
from scripts.quickstart import (
    DAVIS_SPLIT_FOLDER, HELD_OUT_PRESET, HELD_OUT_SEED, STATIC_IMAGES_PER_CLASS, STATIC_SEED, TRAIN_PRESET,
    TRAIN_SEED, DataFolders, QuickstartPlan, calibrated_initial_network,
)

REPOSITORY = Path(__file__).resolve().parents[1]
STUDY_PRESET = "study"
NO_SENSORY_PRESET = "study_no_sensory"  # configs/study_no_sensory.yaml: the same recipe with hidden_dim 0
INIT_CHECKPOINT = "calibrated_init.pth"
README_FILE = "README.txt"
TRAIN_LOG = "train.log"
WATCHER_FILE = "watch_checkpoints.sh"
WATCHER_LOG = "watch.log"
KEEP_CHECKPOINTS = 2
WATCH_PERIOD_S = 60
HARD_TRAIN_SEED = TRAIN_SEED + 1  # the held_out-difficulty training videos: a stream of their own


@dataclasses.dataclass(frozen=True)
class StudyPlan:
    """How much data the study network trains on and is evaluated on (frames are 96x160 like the quickstart's).

    Attributes:
        easy_train_videos, hard_train_videos: training videos of the `easy` and `held_out` difficulties.
        train_video_frames: frames per training video.
        held_out_videos: held-out videos (seed, preset and length of the quickstart's; the first
            QUICKSTART_HELD_OUT_VIDEOS are the quickstart's own).
    """

    height: int = 96
    width: int = 160
    static_images_per_source: int = 100
    easy_train_videos: int = 100
    hard_train_videos: int = 200
    train_video_frames: int = 40
    held_out_videos: int = 30
    held_out_video_frames: int = 30  # the quickstart's
    calibration_clips: int = 32


STUDY_PLAN = StudyPlan()
QUICKSTART_HELD_OUT_VIDEOS = 8  # scripts/quickstart.py DEFAULT_PLAN.held_out_videos


def held_out_videos(num_videos: int, num_frames: int, height: int, width: int) -> dict[str, SyntheticVideo]:
    """The held-out videos: the quickstart's seed and preset, so that at the quickstart's size and length the first
    QUICKSTART_HELD_OUT_VIDEOS are its own."""
    return make_videos(num_videos, seed=HELD_OUT_SEED, num_frames=num_frames, height=height, width=width,
                       difficulty=without_late_entries(get_preset(HELD_OUT_PRESET)))


def make_study_data(plan: StudyPlan, out: Path) -> DataFolders:
    """Write (or reuse) the static images, training videos and held-out videos of `plan` under `out/data`."""
    folders = DataFolders(out / "data" / "static", out / "data" / "train", out / "data" / "held_out")
    size = dict(height=plan.height, width=plan.width)
    easy = without_late_entries(get_preset(TRAIN_PRESET))
    hard = without_late_entries(get_preset(HELD_OUT_PRESET))
    total = (plan.static_images_per_source * len(REFERENCE_STATIC_SOURCES)
             + (plan.easy_train_videos + plan.hard_train_videos) * plan.train_video_frames
             + plan.held_out_videos * plan.held_out_video_frames)
    with tqdm(total=total, desc="study data", unit="frame") as progress:
        for source_index, (folder, layout, _) in enumerate(REFERENCE_STATIC_SOURCES):
            seed = STATIC_SEED + source_index
            if layout == "class_folders":
                classes = make_static_classes(max(plan.static_images_per_source // STATIC_IMAGES_PER_CLASS, 1),
                                              STATIC_IMAGES_PER_CLASS, seed=seed, difficulty=easy, **size)
                write_static_fss(folders.static_root / folder, classes, progress=progress.update)
            else:
                images = make_videos(plan.static_images_per_source, seed=seed, num_frames=1, difficulty=easy, **size)
                write_static_flat(folders.static_root / folder, images, progress=progress.update)
        train_videos = {
            **make_videos(plan.easy_train_videos, seed=TRAIN_SEED, num_frames=plan.train_video_frames,
                          difficulty=easy, **size),
            # first_index: names continue after the easy videos; seeds come from their own stream
            **make_videos(plan.hard_train_videos, seed=HARD_TRAIN_SEED, num_frames=plan.train_video_frames,
                          difficulty=hard, first_index=plan.easy_train_videos, **size),
        }
        write_davis(folders.train_root, train_videos, {}, progress=progress.update)
        held_out = held_out_videos(plan.held_out_videos, plan.held_out_video_frames, **size)
        write_davis(folders.held_out_split, {}, held_out, progress=progress.update)
    return folders


def train_arguments(folders: DataFolders, init_path: Path, save_dir: Path, overrides: Sequence[str],
                    preset: str = STUDY_PRESET) -> list[str]:
    """train.py's arguments for the study run (without --resume)."""
    return ["--config", preset, f"train.save_dir={save_dir.resolve()}",
            f"train.load_network={init_path.resolve()}", f"train.data.static_root={folders.static_root.resolve()}",
            f"train.data.generic_root={folders.train_root.resolve()}", *overrides]


def train_command(arguments: Sequence[str], log: Path, resume: bool, threads: int) -> str:
    """The shell command that runs the study training in the background at low priority on `threads` threads (two
    threads on two idle cores measured 2.5 s per stage-0 iteration, one thread 4.9 s)."""
    python = shlex.quote(sys.executable)
    train = shlex.quote(str(REPOSITORY / "train.py"))
    words = " ".join(shlex.quote(argument) for argument in arguments) + (" --resume" if resume else "")
    return (f"nohup nice -n 10 env OMP_NUM_THREADS={threads} PYTHONPATH={shlex.quote(str(REPOSITORY))} {python} "
            f"{train} {words} >> {shlex.quote(str(log))} 2>&1 &")


def watcher_script(run_root: Path, final_snapshot: Path) -> str:
    """A bash loop deleting all but the KEEP_CHECKPOINTS newest resume checkpoints (by modification time: the
    trainer writes them in order, through hidden `.*.tmp` files renamed when complete, so an unfinished one is never
    listed) until `final_snapshot` exists."""
    return (
        "#!/bin/bash\n"
        f"# Keep only the {KEEP_CHECKPOINTS} newest resume checkpoints of the study run; exit when the final snapshot "
        "exists.\n"
        f"RUN={shlex.quote(str(run_root))}\nFINAL={shlex.quote(str(final_snapshot))}\n"
        "while true; do\n"
        "  if [ -d \"$RUN\" ]; then\n"
        f"    ls -1t \"$RUN\"/*_checkpoint_*.pth 2>/dev/null | tail -n +{KEEP_CHECKPOINTS + 1} |"
        " while read -r old; do\n"
        "      echo \"$(date -Is) removing $old\"; rm -f -- \"$old\"\n"
        "    done\n"
        "  fi\n"
        "  [ -f \"$FINAL\" ] && { echo \"$(date -Is) final snapshot present; watcher done\"; exit 0; }\n"
        f"  sleep {WATCH_PERIOD_S}\n"
        "done\n"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for data, the run and its log")
    parser.add_argument("--config", default=STUDY_PRESET,
                        help=f"the training preset: {STUDY_PRESET} (default) or {NO_SENSORY_PRESET} (the same recipe "
                             "without sensory memory, for run_study.py --no_sensory_model)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="intra-op threads for training (default: every core)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for training")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads} is invalid; expected a positive number of threads")
    arguments_check = load_config(args.config, list(args.overrides))  # fails before any work on a bad override
    out = args.out.resolve()
    folders = make_study_data(STUDY_PLAN, out)
    plan = QuickstartPlan(preset=args.config, calibration_clips=STUDY_PLAN.calibration_clips)
    # train.seed (an override such as train.seed=2) draws the initial weights too, not only the data order
    init_path = calibrated_initial_network(plan, folders, arguments_check.train.data.crop_size,
                                           out / INIT_CHECKPOINT, device="cpu",
                                           hidden_dim=arguments_check.model.hidden_dim, seed=arguments_check.train.seed)
    arguments = train_arguments(folders, init_path, out / "saves", args.overrides, args.config)
    train = arguments_check.train
    last_stage = train.stage(train.stages[-1])
    run = RunDirectory(out / "saves", train.exp_id)
    final_snapshot = run.snapshot(train.stages, last_stage.total_iterations)
    atomic_write_text(out / WATCHER_FILE, watcher_script(run.root, final_snapshot))
    commands = {"start": train_command(arguments, out / TRAIN_LOG, resume=False, threads=args.threads),
                "watcher": f"nohup bash {shlex.quote(str(out / WATCHER_FILE))} >> "
                           f"{shlex.quote(str(out / WATCHER_LOG))} 2>&1 &",
                "resume": train_command(arguments, out / TRAIN_LOG, resume=True, threads=args.threads)}
    atomic_write_text(out / README_FILE, (
        f"XMem ablation study run (configs/study.yaml), prepared by scripts/study_prepare.py.\n"
        f"data/static, data/train: training data; data/held_out/{DAVIS_SPLIT_FOLDER}: held-out videos (DAVIS 2017 "
        f"val layout; synth0000-synth{QUICKSTART_HELD_OUT_VIDEOS - 1:04d} are the quickstart's)\n"
        f"saves/{train.exp_id}/: snapshots, resume checkpoints, TensorBoard logs; {TRAIN_LOG}: the trainer's output\n\n"
        f"final network: {final_snapshot} (with its sidecar .yaml)\n\n"
        f"start:\n{commands['start']}\n\ncheckpoint watcher (start it again after a stop, with the resume):\n"
        f"{commands['watcher']}\n\nresume after a stop (continues from the latest resume checkpoint):\n"
        f"{commands['resume']}\n"))
    print("\n".join(f"{name}: {command}" for name, command in commands.items()))
    return commands


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
