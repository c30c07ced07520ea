r"""Score a folder of predicted index masks against a folder of ground truth: J, F, J&F, recall and decay.

Both folders hold `<video>/<frame>.png` index masks (DAVIS layout, e.g. `DAVIS/2017/trainval/Annotations/480p`
and the output of eval.py). Writes `global_results.csv` and `per_object_results.csv` (values in 0..1, as the
DAVIS toolkit) into the prediction folder, or `--output`. The metrics and the two modes are described in
`inference/evaluation/metrics.py`; with the defaults the numbers are the DAVIS 2017 toolkit's.

    python scripts/evaluation/evaluate.py DAVIS/2017/trainval/Annotations/480p output/d17 \
        --imageset DAVIS/2017/trainval/ImageSets/2017/val.txt
    python scripts/evaluation/evaluate.py LVOS/valid/Annotations output/lvos --mode appearance --sparse

A rerun on unchanged inputs reads the stored results instead of scoring again: a SHA-256 of every mask file read
and of the options is stored next to the tables, and any change makes it score again. A report page
(`report.html`, inference/evaluation/report_page.py) goes beside the tables: videos and objects worst first,
per-frame J and F, and the worst and best frames (over the frames of `--images`, e.g.
DAVIS/2017/trainval/JPEGImages/480p, if given); `--no_report` leaves it out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


from dataset.image_io import read_mask_ids
from inference.evaluation.folder_evaluation import evaluate_folders
from inference.evaluation.metrics import MODE_DAVIS, MODES, EvaluationResults
from inference.evaluation.report_page import RunHeader, VideoSources, utc_now, write_page_or_warn, write_run_page
from configs.common import run_cli


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ground_truth_dir", help="folder of <video>/<frame>.png ground-truth index masks")
    parser.add_argument("prediction_dir", help="folder of <video>/<frame>.png predicted index masks")
    parser.add_argument("--imageset", help="text file with one video name per line (default: all videos)")
    parser.add_argument("--mode", choices=MODES, default=MODE_DAVIS,
                        help="davis: DAVIS 2017 toolkit (objects of the first frame); appearance: vos-benchmark "
                             "(objects scored from their first appearance)")
    parser.add_argument("--sparse", action="store_true",
                        help="ground truth covers only some frames: score those, ignore other predictions")
    parser.add_argument("--output", help="folder for the result tables (default: the prediction folder)")
    parser.add_argument("--davis_compat_decay", action="store_true",
                        help="decay as the DAVIS toolkit computes it (wraps, or NaN, beyond 256 scored frames)")
    parser.add_argument("--num_processes", type=int, default=None, help="worker processes (default: CPU cores)")
    parser.add_argument("--recompute", action="store_true", help="score again even if the inputs are unchanged")
    parser.add_argument("--images", help="folder of <video>/<frame>.jpg frames for the report page's contact sheets")
    parser.add_argument("--no_report", action="store_true", help="write no report page")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> EvaluationResults:
    """Command-line entry point; prints the global table and where the tables went."""
    args = _parse_args(argv)
    results = evaluate_folders(
        args.ground_truth_dir, args.prediction_dir, read_mask=read_mask_ids, imageset=args.imageset, mode=args.mode, sparse=args.sparse,
        output_dir=args.output, davis_compat_decay=args.davis_compat_decay, num_processes=args.num_processes,
        reuse_results=not args.recompute,
    )
    output_dir = Path(args.output or args.prediction_dir)
    print(f"{len(results.objects)} objects scored; tables in {output_dir}")
    print(results.format_table())
    if not args.no_report:
        page = write_page_or_warn(lambda: _write_page(args, output_dir, results))
        if page is not None:
            print(f"report page: {page}")
    return results


def _write_page(args: argparse.Namespace, output_dir: Path, results: EvaluationResults) -> Path:
    """The report page of the scored folders (no memory traces or timings: no run made them here)."""
    facts = [("ground truth", str(args.ground_truth_dir), False), ("predictions", str(args.prediction_dir), False),
             ("mode", args.mode + (", sparse" if args.sparse else ""), False), ("date", utc_now(), True)]
    videos = list(dict.fromkeys(scores.sequence for scores in results.objects))

    def sources(video: str) -> VideoSources:
        predictions = Path(args.prediction_dir) / video
        frames = tuple(sorted(path.stem for path in predictions.glob("*.png")))
        images = {} if args.images is None else {
            path.stem: path for path in sorted((Path(args.images) / video).glob("*")) if path.stem in frames}
        return VideoSources(frames, predictions, Path(args.ground_truth_dir) / video, images)

    header = RunHeader(f"scores of {args.prediction_dir}", facts, results.global_scores())
    return write_run_page(output_dir, header, videos, {}, sources, results)


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
