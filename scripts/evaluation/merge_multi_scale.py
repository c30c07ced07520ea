r"""Merge several evaluation runs made with `--save_scores` (other sizes, `--flip`) into one set of masks.

For every video and frame in the runs' `Scores/` folders, the probabilities of all runs that have the frame are
averaged per object id (an object a run does not know counts as 0 there), and the argmax is written as a palette
PNG. The layout follows the first run: a run with `Annotations/` (YouTube-VOS) is merged into
`<output>/Annotations/<video>/` and zipped for the server; otherwise masks go to `<output>/<video>/`.

Usage:
    python eval.py --dataset D17 --size 720 --mem_every 3 --save_scores --output ../output/d17_720
    python eval.py --dataset D17 --size 720 --mem_every 3 --save_scores --flip --output ../output/d17_720_flip
    python scripts/evaluation/merge_multi_scale.py --list ../output/d17_720 ../output/d17_720_flip \
        --output ../output/d17_ms
"""
from __future__ import annotations

import sys
import argparse
import glob
from pathlib import Path
from typing import Optional, Sequence


import numpy as np
from tqdm import tqdm

from configs.common import DAVIS_PALETTE, run_cli
from dataset.image_io import read_index_mask
from dataset.writers import ANNOTATIONS_DIR, SCORE_SUFFIX, SCORES_DIR, ResultWriter, read_scores


def _videos(run: Path) -> list[str]:
    scores = run / SCORES_DIR
    return sorted(p.name for p in scores.iterdir() if p.is_dir()) if scores.is_dir() else []


def _palette(run: Path, layout: str, video: str, frame: str) -> Optional[bytes]:
    """The palette of the run's own mask for this frame (None = grayscale); DAVIS when the mask is absent."""
    root = run / ANNOTATIONS_DIR if layout == "youtube" else run
    path = root / video / f"{frame}.png"
    return read_index_mask(path)[1] if path.is_file() else DAVIS_PALETTE


def merge_frame(score_files: Sequence[Path]) -> np.ndarray:
    """Average the probabilities of several score files of one frame per object id and take the argmax.

    Returns:
        uint8 H×W mask of object ids.
    Raises:
        ValueError: the files disagree on the frame size (named).
    """
    loaded = [read_scores(path) for path in score_files]
    shape = loaded[0][0].shape[1:]
    for path, (prob, _) in zip(score_files, loaded):
        if prob.shape[1:] != shape:
            raise ValueError(f"{path} is {prob.shape[2]}x{prob.shape[1]} but {score_files[0]} is "
                             f"{shape[1]}x{shape[0]}; runs must write outputs at the same size")
    labels = sorted({int(label) for _, run_labels in loaded for label in run_labels})
    row_of = {label: row for row, label in enumerate(labels, start=1)}
    total = np.zeros((len(labels) + 1, *shape), np.float32)
    for prob, run_labels in loaded:
        total[[0] + [row_of[int(label)] for label in run_labels]] += prob
    lookup = np.array([0] + labels, dtype=np.uint8)
    return lookup[total.argmax(axis=0)]


def merge_runs(runs: Sequence[Path], output: Path) -> Optional[Path]:
    """Merge the runs' scores into masks under `output`; return the submission zip (YouTube-VOS layout) or None.

    Raises:
        FileNotFoundError: no run has a Scores folder (they were not made with --save_scores).
    """
    runs = [Path(run) for run in runs]
    videos = sorted({video for run in runs for video in _videos(run)})
    if not videos:
        raise FileNotFoundError(f"no {SCORES_DIR}/ folder with videos in {', '.join(map(str, runs))}; run eval.py "
                                f"with --save_scores first")
    layout = "youtube" if (runs[0] / ANNOTATIONS_DIR).is_dir() else "davis"
    writer = ResultWriter(output, layout)
    for video in tqdm(videos, desc="videos", unit="video"):
        holders = [run for run in runs if (run / SCORES_DIR / video).is_dir()]
        frames = sorted(p.stem for p in (holders[0] / SCORES_DIR / video).glob(f"*{SCORE_SUFFIX}"))
        for frame in frames:
            files = [run / SCORES_DIR / video / f"{frame}{SCORE_SUFFIX}" for run in holders]
            mask = merge_frame([path for path in files if path.is_file()])
            writer.write_mask(video, frame, mask, _palette(holders[0], layout, video, frame))
    return writer.write_submission_zip("youtube", videos) if layout == "youtube" else None


def main(argv: Optional[Sequence[str]] = None) -> Optional[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--list", nargs="+", type=Path, help="output folders of the runs to merge")
    source.add_argument("--pattern", help="glob matching the runs' output folders")
    parser.add_argument("--output", required=True, type=Path, help="where to write the merged masks")
    arguments = parser.parse_args(argv)
    runs = arguments.list or [Path(p) for p in sorted(glob.glob(arguments.pattern))]
    if not runs:
        parser.error(f"--pattern {arguments.pattern!r} matches no folder")
    return merge_runs(runs, arguments.output)


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
