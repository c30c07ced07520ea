"""Prepare the ablation study's training run: synthetic data, the calibrated initial network, the train command.

    python scripts/study/study_prepare.py --out /work/study_runs     # then run the printed train.py command
    python scripts/study/study_prepare.py --out /work/study_runs_no_sensory --config study_no_sensory   # hidden_dim 0

The study network (configs/study.yaml) is trained like the quickstart's (scripts/quickstart.py: a random-init
XMem with calibrated BatchNorm, stage 0 on static pseudo-videos, stage 3 on videos) with more and harder data and
more iterations. This script writes, under --out:
- data/static: the six stage-0 source folders (STUDY_PLAN.static_images_per_source image + mask pairs each);
- data/train: DAVIS-layout training videos, every frame annotated: `easy` videos (as the quickstart trains on)
  followed by videos of the `held_out` difficulty (faster motion, distractors, colour drift), other seeds than
  any evaluation video;
- data/held_out: the quickstart's held-out videos (same seed, preset and size: its first 8 videos are exactly the
  quickstart's), laid out as a DAVIS 2017 val split, with more videos for the ablation table;
- calibrated_init.pth: the starting network (model/batchnorm_calibration.py), its random weights drawn
  from train.seed (so `train.seed=N` among the overrides changes the initial network as well as the data order);
- watch_checkpoints.sh: a loop that keeps only the KEEP_CHECKPOINTS newest resume checkpoints (~750 MB each; one
  every train.save_checkpoint_interval iterations) and exits when the final snapshot exists;
- README.txt: the train, watcher and resume commands and what the folders hold.
A rerun reuses finished data (the writers skip complete videos) and rewrites the initial network.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

from configs import load_config
from configs.common import REPOSITORY, atomic_write_text, run_cli
from dataset.synthetic_plan import (DAVIS_SPLIT_FOLDER, QUICKSTART_HELD_OUT_VIDEOS, STUDY_PLAN, STUDY_PRESET,
                                    DataFolders, calibration_clips, make_study_data)
from model.batchnorm_calibration import INIT_CHECKPOINT, calibrated_initial_network
from model.training.run_folder import RunDirectory

NO_SENSORY_PRESET = "study_no_sensory"  # configs/study_no_sensory.yaml: the same recipe with hidden_dim 0
README_FILE = "README.txt"
TRAIN_LOG = "train.log"
WATCHER_FILE = "watch_checkpoints.sh"
WATCHER_LOG = "watch.log"
KEEP_CHECKPOINTS = 2
WATCH_PERIOD_S = 60


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
    # train.seed (an override such as train.seed=2) draws the initial weights too, not only the data order
    seed = arguments_check.train.seed
    clips = calibration_clips(folders.static_root, arguments_check.train.data.crop_size, STUDY_PLAN.calibration_clips,
                              seed)
    init_path = calibrated_initial_network(clips, out / INIT_CHECKPOINT, "cpu", seed=seed,
                                           hidden_dim=arguments_check.model.hidden_dim)
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
        f"XMem ablation study run (configs/study.yaml), prepared by scripts/study/study_prepare.py.\n"
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
