"""Seconds per training iteration (`Trainer.train_step`) on random tensors, at the reference crop size.

Example:
    python scripts/speed/time_train_step.py --batch-sizes 1 4 --num-frames 8 --crop 384 --iterations 2

Prints one line per batch size: mean and min seconds per iteration after `--warmup` untimed iterations, and peak
memory (CUDA: max allocated; CPU: the process's peak resident set, which only grows across batch sizes). The
network is randomly initialised (the full architecture); the data are random normalised frames and random masks
of `--objects` objects, so data loading is not included.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from configs.common import BYTES_PER_MB, peak_rss_mb, run_cli
from model.network import XMem
from model.random_batch import random_batch, stage3_config
from model.training.trainer import Trainer


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MB
    return peak_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--num-ref-frames", type=int, default=3)
    parser.add_argument("--crop", type=int, default=384, help="square crop side in pixels (multiple of 16)")
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per batch size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (allocator, cudnn)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too (AMP is CUDA-only anyway)")
    arguments = parser.parse_args(argv)
    if arguments.crop % 16:
        raise ValueError(f"--crop {arguments.crop} must be a multiple of 16 (the network's stride)")
    device = torch.device("cuda" if arguments.device == "auto" and torch.cuda.is_available() else
                          "cpu" if arguments.device == "auto" else arguments.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    description = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(f"device: {description}; crop {arguments.crop}x{arguments.crop}, {arguments.num_frames} frames, "
          f"{arguments.objects} objects, AMP {'on' if device.type == 'cuda' and not arguments.no_amp else 'off'}")
    generator = torch.Generator().manual_seed(0)
    for batch_size in arguments.batch_sizes:
        torch.manual_seed(0)
        network = XMem().to(device)
        trainer = Trainer(network, stage3_config(batch_size, arguments.num_frames, arguments.num_ref_frames,
                                           use_amp=not arguments.no_amp), "3", device=device)
        batch = random_batch(batch_size, arguments.num_frames, arguments.crop, arguments.objects, generator)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = []
        for step in range(arguments.warmup + arguments.iterations):
            started = time.perf_counter()
            trainer.train_step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= arguments.warmup:
                seconds.append(time.perf_counter() - started)
        print(f"batch {batch_size}: {sum(seconds) / len(seconds):.3f} s/it mean, {min(seconds):.3f} s/it min over "
              f"{len(seconds)} iterations; peak memory {_peak_memory_mib(device):.0f} MiB")
        del trainer, network


if __name__ == "__main__":
    sys.exit(run_cli(main))
