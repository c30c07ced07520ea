r"""How far a network's BatchNorm running statistics lie from its trunks' activations on training clips.

    python scripts/study/batchnorm_drift.py --model study_runs/saves/study/study_s03_1320.pth \
        --train_root study_runs/data/train

Draws --clips stage-3 training clips from a DAVIS-layout training folder, as the preset's training would (its crop
size, clip length and objects per clip; a stage-0 network is measured as the stage-3 network it becomes, its value
encoder widened by a zero channel), runs both trunks in eval mode and prints, for each trunk, the mean over its
BatchNorms of |batch mean − running mean| / running standard deviation, the geometric-mean factor between batch and
running variance, and the layer that drifted most. Right after BatchNorm calibration that is about 0 σ and ×1.0;
training with `train.batchnorm: frozen` from a random init moves the activations away from the statistics as the
weights learn. Writes nothing.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import default_collate

from configs import load_config
from configs.common import run_cli
from dataset.synthetic_plan import STUDY_PRESET
from dataset.training_data import stage_dataset
from model.batchnorm_calibration import BatchNormDrift, batchnorm_drift
from model.checkpoint import load_network

TRUNKS = ("key_encoder", "value_encoder")


def trunk_summaries(drifts: Sequence[BatchNormDrift]) -> list[str]:
    """One line per trunk: its BatchNorms' mean shift, geometric-mean variance factor and the worst layer."""
    lines = []
    for trunk in TRUNKS:
        layers = [drift for drift in drifts if drift.layer.startswith(f"{trunk}.")]
        mean_shift = sum(drift.mean_shift for drift in layers) / len(layers)
        variance_factor = math.exp(sum(drift.variance_log_ratio for drift in layers) / len(layers))
        worst = max(layers, key=lambda drift: drift.variance_log_ratio)
        lines.append(f"{trunk}: {len(layers)} BatchNorms, mean shift {mean_shift:.2f} σ, variance factor "
                     f"×{variance_factor:.2f} (most drifted: {worst.layer}, {worst.mean_shift:.2f} σ, "
                     f"×{math.exp(worst.variance_log_ratio):.2f})")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> list[BatchNormDrift]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the network (.pth)")
    parser.add_argument("--train_root", type=Path, required=True,
                        help="DAVIS-layout training videos (scripts/study/study_prepare.py: <out>/data/train)")
    parser.add_argument("--clips", type=int, default=48, help="training clips to measure on (default 48)")
    parser.add_argument("--config", default=STUDY_PRESET, help="the training preset whose clips to draw")
    parser.add_argument("--seed", type=int, default=0, help="draws the clips and their augmentation")
    args = parser.parse_args(argv)
    if args.clips < 2:
        parser.error(f"--clips {args.clips}: need at least 2 (a variance over one clip's frames is too noisy)")
    config = load_config(args.config, [f"train.data.generic_root={args.train_root}", f"train.seed={args.seed}"])
    dataset = stage_dataset(config, "3")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
    batch = default_collate([dataset[int(index)] for index in order[:args.clips]])
    network = load_network(args.model, "cpu")
    drifts = batchnorm_drift(network, batch["rgb"], batch["first_frame_gt"][:, 0])  # frame 0's masks: B×O×S×S
    print(f"{args.model}: {min(args.clips, len(dataset))} training clips of {args.train_root}")
    for line in trunk_summaries(drifts):
        print(line)
    return drifts


def _cli(arguments: list[str]) -> int:
    main(arguments)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(_cli))
