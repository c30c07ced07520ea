r"""Generate synthetic videos (or image + mask pairs) with exact masks in a benchmark's folder layout.

Examples:
    python scripts/data/make_synthetic.py --layout davis --out data/synthetic_davis --num_videos 10 --num_frames 60
    python scripts/data/make_synthetic.py --layout youtube --out data/synthetic_youtube --num_videos 20 \
        --height 96 --width 160 --split both
    python scripts/data/make_synthetic.py --layout long --out data/synthetic_long --num_videos 1 --num_frames 5000
    python scripts/data/make_synthetic.py --layout static_fss --out data/static/fss --num_videos 20 --per_class 10

Videos are named synth0000, synth0001, ...; video i is drawn from seed (--seed, i), so the same arguments give
the same bytes. A rerun skips complete videos and redoes any a killed run left incomplete. DAVIS and Long-time
Video annotate only frame 0, so for them objects never enter late (whatever the preset says). See
dataset/synthetic_layouts.py for each layout's folders.
"""
from __future__ import annotations

import sys
import argparse
import dataclasses
import time
from pathlib import Path


import numpy as np
from tqdm import tqdm

from dataset.synthetic import (
    DEFAULT_PRESET, PRESETS, copy_first_mask_iou, get_preset, make_videos, without_late_entries,
)
from dataset.synthetic_layouts import (
    WriteReport, make_static_classes, split_names, write_davis, write_generic, write_long_video,
    write_static_flat, write_static_fss, write_youtube_train, write_youtube_valid,
)
from configs.common import run_cli

LAYOUTS = ("davis", "youtube", "long", "generic", "static_fss", "static_flat")
DEFAULT_NUM_FRAMES = {"davis": 60, "youtube": 60, "long": 2500, "generic": 60}
LONG_VIDEO_ANNOTATED_FRAMES = 20
"""Default number of evenly spaced ground-truth frames of a long video (as in the Long-time Video set)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; reruns resume)")
    parser.add_argument("--num_videos", type=int, default=4,
                        help="videos; images for static_flat; classes for static_fss (default 4)")
    parser.add_argument("--num_frames", type=int, default=None,
                        help=f"frames per video (default {DEFAULT_NUM_FRAMES}; ignored by static layouts)")
    parser.add_argument("--height", type=int, default=480, help="frame height in pixels (default 480)")
    parser.add_argument("--width", type=int, default=854, help="frame width in pixels (default 854)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="difficulty preset")
    parser.add_argument("--val_fraction", type=float, default=0.3,
                        help="davis: fraction of videos listed in val.txt (the last ones)")
    parser.add_argument("--d16", action="store_true",
                        help="davis: DAVIS 2016 style, one object per video labelled 255, ImageSets/2016")
    parser.add_argument("--split", choices=("train", "valid", "both"), default="both",
                        help="youtube: train_480p, valid (+ all_frames), or both; valid videos are "
                             "synth<num_videos>.. so they never repeat a train video")
    parser.add_argument("--annotation_every", type=int, default=None,
                        help=f"long: ground-truth frame step (default num_frames // {LONG_VIDEO_ANNOTATED_FRAMES})")
    parser.add_argument("--all_masks", action="store_true", help="generic: write every frame's mask")
    parser.add_argument("--ground_truth", action="store_true",
                        help="generic: also write every frame's ground truth to GroundTruth/<v>/")
    parser.add_argument("--per_class", type=int, default=10, help="static_fss: images per class")
    parser.add_argument("--report_baseline", action="store_true",
                        help="print the copy-first-frame-mask mean IoU of the generated videos (a difficulty check)")
    args = parser.parse_args(argv)
    if args.num_videos < 0:
        parser.error(f"--num_videos {args.num_videos} is invalid; expected >= 0")
    if args.num_frames is not None and args.num_frames < 1:
        parser.error(f"--num_frames {args.num_frames} is invalid; expected >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    difficulty = get_preset(args.preset)
    num_frames = args.num_frames or DEFAULT_NUM_FRAMES.get(args.layout, 1)
    if args.layout in ("davis", "long"):
        difficulty = without_late_entries(difficulty)
    if args.layout == "davis" and args.d16:
        difficulty = dataclasses.replace(difficulty, min_objects=1, max_objects=1)

    def videos(count: int, first_index: int = 0):
        return make_videos(count, seed=args.seed, num_frames=num_frames, height=args.height, width=args.width,
                           difficulty=difficulty, first_index=first_index)

    generated = {}
    if args.layout == "static_fss":
        classes = make_static_classes(args.num_videos, args.per_class, seed=args.seed, height=args.height,
                                      width=args.width, difficulty=difficulty)
        total = args.num_videos * args.per_class
    elif args.layout == "static_flat":
        generated = make_videos(args.num_videos, seed=args.seed, num_frames=1, height=args.height,
                                width=args.width, difficulty=difficulty)
        total = len(generated)
    elif args.layout == "youtube":
        # Valid videos always take the indices after the train ones, so the two splits never share a video.
        train = videos(args.num_videos) if args.split in ("train", "both") else {}
        valid = videos(args.num_videos, first_index=args.num_videos) if args.split in ("valid", "both") else {}
        generated = {**train, **valid}
        total = len(generated) * num_frames
    else:
        generated = videos(args.num_videos)
        total = args.num_videos * num_frames

    started = time.perf_counter()
    with tqdm(total=total, unit="frame", desc=f"synthetic {args.layout}") as bar:
        progress = bar.update
        if args.layout == "davis":
            train_names, val_names = split_names(generated, args.val_fraction)
            report = write_davis(args.out, {n: generated[n] for n in train_names},
                                 {n: generated[n] for n in val_names}, single_object_255=args.d16,
                                 progress=progress)
        elif args.layout == "youtube":
            report = WriteReport()
            if train:
                report = write_youtube_train(args.out, train, progress=progress)
            if valid:
                valid_report = write_youtube_valid(args.out, valid, progress=progress)
                report.written += valid_report.written
                report.skipped += valid_report.skipped
        elif args.layout == "long":
            annotation_every = args.annotation_every or max(1, num_frames // LONG_VIDEO_ANNOTATED_FRAMES)
            report = write_long_video(args.out, generated, annotation_every=annotation_every, progress=progress)
        elif args.layout == "generic":
            report = write_generic(args.out, generated, all_masks=args.all_masks, ground_truth=args.ground_truth,
                                   progress=progress)
        elif args.layout == "static_fss":
            report = write_static_fss(args.out, classes, progress=progress)
        else:
            report = write_static_flat(args.out, generated, progress=progress)
    elapsed = time.perf_counter() - started
    print(f"{args.out}: {len(report.written)} written, {len(report.skipped)} already complete; "
          f"{total} frames/images in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f} per second, skipped included)")
    if args.report_baseline and args.layout in DEFAULT_NUM_FRAMES and num_frames > 1:
        scores = [iou for video in generated.values() for iou in copy_first_mask_iou(video).values()]
        print(f"copy-first-frame-mask baseline ({args.preset}): mean IoU {np.mean(scores):.3f} over "
              f"{len(scores)} objects present on frame 0")


if __name__ == "__main__":
    sys.exit(run_cli(main))
