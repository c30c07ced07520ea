"""Per-frame time of the streaming core at full memory, split into its four stages.

Working memory is prefilled with T_max frames and long-term memory with LT_max elements (the largest memory a
frame ever reads), then one frame is timed stage by stage: key encoding (`encode_key`), memory reading
(similarity, top-k, gathered readout, usage), decoding (`segment`) and value encoding (`encode_value`, done on
memory frames). Random weights: the timing does not depend on them. The reference (original) computation is timed
against this one by scripts/speed_compare.py.

    python scripts/profile_frame.py --height 480 --width 864 --objects 1 3 --device cpu
"""
from __future__ import annotations

import sys
import argparse
import statistics
import time

import torch

from configs.schema import InferenceConfig, ModelConfig
from configs.common import resolve_device, run_cli
from inference.inference_core import PAD_MULTIPLE
from inference.memory_manager import MemoryManager
from model.network import XMem

STAGES = ("key encoding", "memory reading", "decoding", "value encoding")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _full_memory(network: XMem, config: InferenceConfig, num_objects: int, feature_size, device) -> MemoryManager:
    """A memory manager whose working memory holds T_max frames and long-term memory LT_max elements."""
    manager = MemoryManager(config, model_config=ModelConfig(), hidden_dim=network.hidden_dim,
                            count_long_term_usage=True)
    manager.add_objects(num_objects)
    manager.initialize(feature_size, key_dim=network.key_dim, value_dim=network.value_dim, device=device,
                       dtype=torch.float32)
    generator = torch.Generator(device=device).manual_seed(0)
    for store, count in ((manager.working, manager.working.capacity), (manager.long_term, manager.long_term.capacity)):
        keys = torch.randn(count, network.key_dim, device=device, generator=generator)
        shrinkage = 1 + torch.rand(count, device=device, generator=generator)
        selection = torch.rand(count, network.key_dim, device=device, generator=generator)
        values = torch.randn(count, num_objects, network.value_dim, device=device, generator=generator)
        frames = torch.arange(count, device=device) // manager.elements_per_frame  # ordinary frames 0, 1, ...
        store.append(keys, shrinkage, selection, values, frames)
    return manager


def profile(network: XMem, config: InferenceConfig, height: int, width: int, num_objects: int, repeats: int,
            device: torch.device) -> dict[str, float]:
    """Median seconds of each stage over `repeats` frames (after one warm-up frame)."""
    image = torch.randn(1, 3, height, width, device=device)
    feature_size = (height // PAD_MULTIPLE, width // PAD_MULTIPLE)
    manager = _full_memory(network, config, num_objects, feature_size, device)
    timings = {stage: [] for stage in STAGES}
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            marks = [time.perf_counter()]
            encoding = network.encode_key(image, need_shrinkage=True, need_selection=True)
            _synchronize(device)
            marks.append(time.perf_counter())
            readout = manager.read(encoding.key, encoding.selection)
            _synchronize(device)
            marks.append(time.perf_counter())
            segmentation = network.segment((encoding.f16, encoding.f8, encoding.f4), readout, manager.sensory,
                                           update_hidden=False)
            _synchronize(device)
            marks.append(time.perf_counter())
            network.encode_value(image, encoding.f16, manager.sensory, segmentation.prob, is_deep_update=True)
            _synchronize(device)
            marks.append(time.perf_counter())
            if repeat > 0:
                for stage, start, end in zip(STAGES, marks, marks[1:]):
                    timings[stage].append(end - start)
    return {stage: statistics.median(values) for stage, values in timings.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=480, help="frame height (multiple of 16), default 480")
    parser.add_argument("--width", type=int, default=864, help="frame width (multiple of 16), default 864")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3], help="object counts to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed frames per setting (median reported)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    args = parser.parse_args(argv)
    if args.height % PAD_MULTIPLE or args.width % PAD_MULTIPLE:
        parser.error(f"--height and --width must be multiples of {PAD_MULTIPLE}, got {args.height}×{args.width}")

    device = resolve_device(args.device)
    network = XMem().eval().to(device)
    config = InferenceConfig()
    elements = (args.height // PAD_MULTIPLE) * (args.width // PAD_MULTIPLE)
    print(f"device {device}, torch threads {torch.get_num_threads()}, frame {args.height}×{args.width}, "
          f"memory {config.max_working_frames}×{elements} working + {config.max_long_term_elements} long-term "
          f"elements, top_k {config.top_k}")
    print(f"{'objects':>7} " + " ".join(f"{stage:>15}" for stage in STAGES) + f" {'total':>9}")
    for num_objects in args.objects:
        result = profile(network, config, args.height, args.width, num_objects, args.repeats, device)
        cells = " ".join(f"{result[stage] * 1000:13.1f}ms" for stage in STAGES)
        print(f"{num_objects:>7} {cells} {sum(result.values()) * 1000:7.1f}ms")


if __name__ == "__main__":
    sys.exit(run_cli(main))
