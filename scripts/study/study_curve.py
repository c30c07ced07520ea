r"""The study network's training curve: its TensorBoard losses, and the held-out J&F of its snapshots.

    python scripts/study/study_curve.py --run /work/study_runs/saves/study --held_out /work/study_runs/data/held_out \
        --out /work/study_runs/curve

Reads the run's TensorBoard scalars (`loss/total_loss` per stage; stage 3 is drawn after stage 0, so the x axis
counts all iterations), evaluates every network snapshot (`<exp_id>_s<stages>_<iteration>.pth`) with eval.py on
the first `--videos` held-out videos (default 8: the quickstart's held-out videos, which the study's 30 start with;
copied to `<out>/held_out_first<N>/`) in one process per snapshot (a rerun reuses finished evaluations), and writes
`<out>/training_curve.csv` and `<out>/training_curve.png`. `--no_eval` draws the losses only.
"""
from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from configs.common import atomic_write_text, project_command, run_child, run_cli
from dataset.eval_datasets import read_video_list
from dataset.synthetic_plan import QUICKSTART_HELD_OUT_VIDEOS, STUDY_PRESET, DavisValRoot
from inference.evaluation.run_summary import SUMMARY_FILE, RunSummary

SNAPSHOT_PATTERN = re.compile(r"_s(?P<stages>\d+)_(?P<iteration>\d+)\.pth$")
LOSS_TAG = "loss/total_loss"
CURVE_FILE = "training_curve"
PERCENT = 100


def read_losses(run: Path) -> list[tuple[str, int, float]]:
    """[(stage, iteration within the stage, total loss)] from `<run>/tensorboard/stage<name>/`, stages in name order.

    Raises:
        FileNotFoundError: the run has no TensorBoard folder.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # slow import

    folders = sorted((run / "tensorboard").glob("stage*"))
    if not folders:
        raise FileNotFoundError(f"no TensorBoard logs in {run / 'tensorboard'}; expected stage<name>/ folders")
    losses = []
    for folder in folders:
        events = EventAccumulator(str(folder))
        events.Reload()
        if LOSS_TAG in events.Tags()["scalars"]:
            losses += [(folder.name[len("stage"):], event.step, event.value) for event in events.Scalars(LOSS_TAG)]
    return losses


def snapshots(run: Path) -> list[tuple[str, int, Path]]:
    """[(stages so far, iteration, path)] of the run's network snapshots, in training order."""
    found = []
    for path in run.glob("*.pth"):
        match = SNAPSHOT_PATTERN.search(path.name)
        if match:
            found.append((match["stages"], int(match["iteration"]), path))
    return sorted(found, key=lambda item: (len(item[0]), item[1]))


def first_videos(held_out: Path, count: int, out: Path) -> Path:
    """A DAVIS 2017 root at `out` holding copies of the first `count` videos of `held_out`'s val list.

    Each video folder is copied to a temporary sibling and renamed into place, so a copy cut short is redone by the
    next run, never read as a finished video.

    Raises:
        ValueError: the list holds fewer than `count` videos (names the list).
    """
    source, destination = DavisValRoot(held_out), DavisValRoot(out)
    names = read_video_list(source.video_list)
    if len(names) < count:
        raise ValueError(f"{source.video_list} lists {len(names)} videos; --videos asks for the first {count}")
    for name in names[:count]:
        for source_folder, destination_folder in ((source.frames, destination.frames),
                                                  (source.annotations, destination.annotations)):
            finished = destination_folder / name
            if not finished.is_dir():
                partial = finished.with_name(f"{name}.partial")
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source_folder / name, partial)
                partial.rename(finished)
    destination.video_list.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(destination.video_list, "".join(f"{name}\n" for name in names[:count]))
    return out


def evaluate_snapshot(snapshot: Path, held_out: Path, output: Path) -> RunSummary:
    """eval.py on the held-out videos (D17 layout, native size) in its own process; returns its summary."""
    summary = output / SUMMARY_FILE
    if not summary.is_file():
        run_child(project_command("eval.py", "--config", STUDY_PRESET, "--dataset", "D17", "--d17_path", str(held_out),
                                  "--size", "-1", f"eval.model={snapshot}", f"eval.output={output}"), check=True)
    return RunSummary.read(summary)


def curve_rows(losses: Sequence[tuple[str, int, float]], scores: dict[tuple[str, int], float]
               ) -> list[dict[str, Any]]:
    """Rows (stage, iteration, global iteration, loss or '', held-out J&F x 100 or '') in training order; a stage's
    global iteration continues from the last logged iteration of the stages before it."""
    stages = list(dict.fromkeys([stage for stage, _, _ in losses] + [name[-1] for name, _ in scores]))
    offsets, offset = {}, 0
    for stage in stages:
        offsets[stage] = offset
        ends = [step for name, step, _ in losses if name == stage] + [it for s, it in scores if s[-1] == stage]
        offset += max(ends, default=0)
    rows = {(stage, step): {"stage": stage, "iteration": step, "global_iteration": offsets[stage] + step,
                            "loss": loss, "held_out_jf": ""} for stage, step, loss in losses}
    for (stages_so_far, iteration), jf in scores.items():
        stage = stages_so_far[-1]
        row = rows.setdefault((stage, iteration), {"stage": stage, "iteration": iteration, "loss": "",
                                                   "global_iteration": offsets[stage] + iteration})
        row["held_out_jf"] = jf
    return sorted(rows.values(), key=lambda row: row["global_iteration"])


def write_curve(rows: Sequence[dict[str, Any]], out: Path) -> tuple[Path, Optional[Path]]:
    """`<out>/training_curve.csv`, and `.png` when matplotlib is installed (else None)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("stage", "iteration", "global_iteration", "loss", "held_out_jf"),
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = out / f"{CURVE_FILE}.csv"
    atomic_write_text(csv_path, buffer.getvalue())
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return csv_path, None
    figure, loss_axis = plt.subplots(figsize=(8, 4))
    for stage in dict.fromkeys(row["stage"] for row in rows):
        points = [(row["global_iteration"], row["loss"]) for row in rows if row["stage"] == stage and row["loss"] != ""]
        if points:
            loss_axis.plot(*zip(*points), label=f"stage {stage} training loss", linewidth=1)
    loss_axis.set_xlabel("iteration (all stages)")
    loss_axis.set_ylabel("total loss (CE + dice)")
    loss_axis.set_yscale("log")
    scored = [(row["global_iteration"], row["held_out_jf"]) for row in rows if row["held_out_jf"] != ""]
    if scored:
        jf_axis = loss_axis.twinx()
        jf_axis.plot(*zip(*scored), "o-", color="tab:red", label="held-out J&F x 100")
        jf_axis.set_ylabel("held-out J&F x 100")
        jf_axis.legend(loc="center right")
    loss_axis.legend(loc="upper right")
    figure.tight_layout()
    png_path = out / f"{CURVE_FILE}.png"
    figure.savefig(png_path, dpi=120)
    plt.close(figure)
    return csv_path, png_path


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the run folder (<train.save_dir>/<exp_id>)")
    parser.add_argument("--held_out", type=Path, default=None,
                        help="held-out DAVIS 2017 root (scripts/study/study_prepare.py: <out>/data/held_out)")
    parser.add_argument("--videos", type=int, default=QUICKSTART_HELD_OUT_VIDEOS,
                        help="score the first N held-out videos (default: the quickstart's %(default)s)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no_eval", action="store_true", help="draw the losses only")
    args = parser.parse_args(argv)
    if not args.no_eval and args.held_out is None:
        parser.error("--held_out is required unless --no_eval")
    losses = read_losses(args.run)
    scores = {}
    if not args.no_eval:
        held_out = first_videos(args.held_out, args.videos, args.out / f"held_out_first{args.videos}")
        for stages_so_far, iteration, path in snapshots(args.run):
            summary = evaluate_snapshot(path.resolve(), held_out.resolve(),
                                        (args.out / f"s{stages_so_far}_{iteration}").resolve())
            scores[(stages_so_far, iteration)] = PERCENT * summary.scores["J&F-Mean"]
    rows = curve_rows(losses, scores)
    csv_path, png_path = write_curve(rows, args.out)
    for row in rows:
        if row["held_out_jf"] != "":
            print(f"stage {row['stage']} iteration {row['iteration']}: held-out J&F {row['held_out_jf']:.1f}")
    print(f"curve: {csv_path}" + (f", {png_path}" if png_path else ""))
    return rows


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
