"""Per-frame time of the streaming core at full memory, stage by stage: the reference against the optimised compute
paths and how far they differ, or (`--profile`) the optimised path alone on any device.

For each object count, one frame (default 480×864, the padded size of a 480p DAVIS frame) runs through:
encode_key; a memory read; segment; encode_value. The memory is a `MemoryManager` filled to its bound by its own
write path (`MemoryManager.fill_to_bound`: random frames written, consolidated and pruned as in a long video, so
working memory holds T_max − 1 = 9 frames and long-term memory LT_max = 10,000 elements), and the optimised read is
the manager's own `read`, so the tool times what inference runs. The reference path is the original's computation:
`model/reference.py` for the network (per-object concatenation in the value stem and the fusers, same weights) and
`model/reference_memory.py` for the memory (term-by-term similarity, dense top-k affinity times values, over the
manager's live elements).

Agreement is checked stage by stage on identical inputs (each optimised stage gets the reference path's inputs),
so that the network's differences are not mixed with those of the memory read. The top-k read is discontinuous:
where a query pixel's k-th and (k+1)-th similarities are closer than float rounding, the two paths may pick a
different k-th element (as the original does across devices or thread counts), so the readout's max |Δ| is also
given over the query pixels whose top-k sets agree, with the number of those that do not.

Times are CPU seconds of this process (`time.process_time`), so that other processes on a shared machine do not
inflate them; wall seconds are printed too. Each stage reports the median over `--repeats` runs; the two paths
alternate within every repeat. Pin the thread count (`--threads`, default 1) for comparable numbers.

`--profile` times only the optimised path, in wall seconds on `--device` (CUDA synchronised around each stage),
median over `--repeats` frames after one warm-up frame; no reference path, no agreement check.

    python scripts/speed/speed_compare.py                      # recipe weights, 1 and 3 objects, 480×864
    python scripts/speed/speed_compare.py --objects 3 --repeats 5 --channels-last
    python scripts/speed/speed_compare.py --profile --device cuda --objects 1 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from typing import Callable, Sequence

import torch

from configs.common import REPOSITORY, resolve_device, run_cli
from configs.schema import InferenceConfig, ModelConfig
from inference.memory_manager import MemoryManager
from model.acceleration import optimize_network
from model.checkpoint import build_network_from_state_dict
from model.memory_util import get_similarity
from model.network import XMem
from model.reference import reference_encode_value, reference_segment
from model.reference_memory import dense_top_k_read, term_by_term_similarity
from model.recipe_checkpoint import build_recipe_state_dict

FEATURE_STRIDE = 16  # h×w = H/16×W/16
DEFAULT_HEIGHT, DEFAULT_WIDTH = 480, 864  # a 480p frame padded to a multiple of 16
MEMORY_DEFAULTS = InferenceConfig()  # T_max, T_min, LT_max, P and k are the paper's unless the flags change them
RECIPE_KEY_LIST = REPOSITORY / "tests" / "fixtures" / "xmem_state_dict.tsv"  # data only
STAGES = ("encode_key", "memory_read", "segment", "encode_value")
PATHS = ("reference", "optimised")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="padded frame height H (multiple of 16)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="padded frame width W (multiple of 16)")
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 3], help="object counts N to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--working-frames", type=int, default=MEMORY_DEFAULTS.max_working_frames,
                        help="T_max; a full working memory holds T_max − 1 frames")
    parser.add_argument("--min-working-frames", type=int, default=MEMORY_DEFAULTS.min_working_frames,
                        help="T_min, the working frames kept after a consolidation")
    parser.add_argument("--long-term-elements", type=int, default=MEMORY_DEFAULTS.max_long_term_elements,
                        help="LT_max, the long-term memory's bound")
    parser.add_argument("--prototypes", type=int, default=MEMORY_DEFAULTS.num_prototypes,
                        help="P, the prototypes of one consolidation")
    parser.add_argument("--top-k", type=int, default=MEMORY_DEFAULTS.top_k,
                        help="memory elements read per query pixel (k)")
    parser.add_argument("--weights", choices=("recipe", "random"), default="recipe",
                        help="recipe checkpoint of tests/fixtures/README.md, or random initialisation")
    parser.add_argument("--channels-last", action="store_true", help="optimize_network(channels_last=True) first")
    parser.add_argument("--profile", action="store_true",
                        help="time the optimised path alone, wall seconds on --device (no reference, no agreement)")
    parser.add_argument("--device", default="cpu", help="with --profile: auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.height % FEATURE_STRIDE or args.width % FEATURE_STRIDE or args.height <= 0 or args.width <= 0:
        parser.error(
            f"--height/--width must be positive multiples of {FEATURE_STRIDE}, got {args.height}×{args.width}"
        )
    if min(args.objects) < 1 or args.repeats < 1 or args.threads < 1 or args.top_k < 1:
        parser.error("--objects, --repeats, --threads and --top-k must be ≥ 1")
    try:
        args.memory = _memory_config(args)
    except ValueError as error:  # the schema's range checks, in its own words
        parser.error(f"memory flags: {error}")
    if not args.profile and args.device != "cpu":
        parser.error(f"--device {args.device}: the reference comparison times CPU seconds; add --profile to time "
                     "the optimised path on another device")
    return args


def _memory_config(args: argparse.Namespace) -> InferenceConfig:
    """The inference settings with the flags' memory sizes and k (range-checked by the schema)."""
    return InferenceConfig(max_working_frames=args.working_frames, min_working_frames=args.min_working_frames,
                           max_long_term_elements=args.long_term_elements, num_prototypes=args.prototypes,
                           top_k=args.top_k)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(CPU seconds of this process, wall seconds, result) of one call (CUDA work finished on both ends)."""
    _synchronize(device)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = function()
    _synchronize(device)
    return time.process_time() - cpu_start, time.perf_counter() - wall_start, result


class _Frame:
    """Inputs of one frame with `num_objects` objects, and a memory manager filled to its bound.

    The sensory memory is random (tanh of N(0, 1)), given to the manager through `update_sensory`, so that the
    decoder and the deep update see values of the usual range.
    """

    def __init__(self, network: XMem, args: argparse.Namespace, num_objects: int, device: torch.device):
        generator = torch.Generator().manual_seed(args.seed + num_objects)
        feature_size = (args.height // FEATURE_STRIDE, args.width // FEATURE_STRIDE)
        self.image = torch.randn(1, 3, args.height, args.width, generator=generator).to(device)
        self.masks = torch.rand(1, num_objects, args.height, args.width, generator=generator).to(device)
        self.memory = MemoryManager(args.memory, model_config=ModelConfig(), hidden_dim=network.hidden_dim,
                                    count_long_term_usage=True)
        self.memory.add_objects(num_objects)
        self.memory.initialize(feature_size, key_dim=network.key_dim, value_dim=network.value_dim, device=device,
                               dtype=torch.float32)
        self.memory.fill_to_bound(generator)
        self.memory.update_sensory(torch.tanh(torch.randn(1, num_objects, network.hidden_dim, *feature_size,
                                                          generator=generator)).to(device))
        self.num_objects = num_objects
        self.num_elements = self.memory.working_elements + self.memory.long_term_elements
        self.top_k = args.top_k


def _reference_read(network: XMem, frame: _Frame, encoding) -> tuple[torch.Tensor, torch.Tensor]:
    """(readout 1×N×C^v×h×w, similarity 1×n×M) the original's way over the manager's live elements: term-by-term
    similarity, dense top-k affinity times the values."""
    keys, shrinkage, values = frame.memory.live_elements()
    similarity = term_by_term_similarity(keys.t().unsqueeze(0), shrinkage.view(1, 1, -1), encoding.key,
                                         encoding.selection, reading=frame.memory.reading)
    readout, _ = dense_top_k_read(similarity, values.flatten(start_dim=1).t().unsqueeze(0), frame.top_k)
    return readout.view(1, frame.num_objects, network.value_dim, *encoding.key.shape[-2:]), similarity


def _memory_read(network: XMem, frame: _Frame, encoding, *, reference: bool) -> torch.Tensor:
    """Readout 1×N×C^v×h×w of the frame's query: the reference read, or the memory manager's own (`read`)."""
    if reference:
        return _reference_read(network, frame, encoding)[0]
    return frame.memory.read(encoding.key, encoding.selection)


def _run_frame(network: XMem, frame: _Frame, device: torch.device, *,
               reference: bool) -> tuple[dict[str, float], dict[str, float]]:
    """One frame through the four stages: (CPU seconds per stage, wall seconds per stage)."""
    cpu, wall = {}, {}
    cpu["encode_key"], wall["encode_key"], encoding = _timed(lambda: network.encode_key(frame.image), device)
    cpu["memory_read"], wall["memory_read"], memory_readout = _timed(
        lambda: _memory_read(network, frame, encoding, reference=reference), device
    )
    features = (encoding.f16, encoding.f8, encoding.f4)
    segment, encode_value = _network_path(network, reference=reference)
    cpu["segment"], wall["segment"], segmentation = _timed(
        lambda: segment(features, memory_readout, frame.memory.sensory), device
    )
    cpu["encode_value"], wall["encode_value"], _ = _timed(
        lambda: encode_value(frame.image, encoding.f16, segmentation.hidden, segmentation.prob), device
    )
    return cpu, wall


def _network_path(network: XMem, *, reference: bool) -> tuple[Callable, Callable]:
    """(segment, encode_value) of the reference (model/reference.py) or the optimised (the network's own) path."""
    if reference:
        return partial(reference_segment, network), partial(reference_encode_value, network)
    return network.segment, network.encode_value


def _agreement(network: XMem, frame: _Frame) -> list[str]:
    """Max |optimised − reference| of every stage's outputs, each stage run on the reference path's inputs."""
    encoding = network.encode_key(frame.image)
    reference_readout, reference_similarity = _reference_read(network, frame, encoding)
    optimised_readout = frame.memory.read(encoding.key, encoding.selection)
    keys, shrinkage, _ = frame.memory.live_elements()
    optimised_similarity = get_similarity(keys.t().unsqueeze(0), shrinkage.view(1, 1, -1), encoding.key,
                                          encoding.selection, reading=frame.memory.reading)
    top_k = min(frame.top_k, frame.num_elements)
    chosen = [similarity.topk(top_k, dim=1).indices.sort(dim=1).values for similarity in (reference_similarity,
                                                                                        optimised_similarity)]
    same_choice = (chosen[0] == chosen[1]).all(dim=1).view(encoding.key.shape[-2:])  # h×w
    readout_difference = (optimised_readout - reference_readout).abs().amax(dim=(0, 1, 2))  # h×w
    agreeing = float(readout_difference[same_choice].max()) if same_choice.any() else float("nan")
    lines = [
        f"  max |Δ| readout {agreeing:.2e} over pixels with the same top-k set; "
        f"{int((~same_choice).sum())} of {same_choice.numel()} query pixels chose a different k-th element "
        f"(max |Δ| over all pixels {float(readout_difference.max()):.2e})"
    ]
    features = (encoding.f16, encoding.f8, encoding.f4)
    outputs = {}
    for path in PATHS:
        reference = path == "reference"
        segment, encode_value = _network_path(network, reference=reference)
        segmentation = segment(features, reference_readout, frame.memory.sensory)
        outputs[path] = dict(prob=segmentation.prob, hidden_after_segment=segmentation.hidden)
        if reference:
            value_inputs = (segmentation.hidden, segmentation.prob)
        value, hidden = encode_value(frame.image, encoding.f16, *value_inputs)
        outputs[path].update(value=value, hidden_after_value=hidden)
    for name, reference in outputs["reference"].items():
        difference = float((outputs["optimised"][name] - reference).abs().max())
        lines.append(f"  max |Δ| {name:<22}{difference:.2e}  (max |reference| {float(reference.abs().max()):.3g})")
    return lines


def _describe(frame: _Frame, args: argparse.Namespace, device: torch.device) -> str:
    return (f"{frame.num_objects} object(s), {args.height}×{args.width}, memory {frame.memory.working_elements} "
            f"working + {frame.memory.long_term_elements} long-term elements, top-k {args.top_k}, device {device}, "
            f"{torch.get_num_threads()} thread(s), median of {args.repeats}")


def _compare(network: XMem, args: argparse.Namespace, num_objects: int) -> None:
    device = torch.device("cpu")
    frame = _Frame(network, args, num_objects, device)
    cpu = {path: {stage: [] for stage in STAGES} for path in PATHS}
    wall = {path: {stage: [] for stage in STAGES} for path in PATHS}
    with torch.inference_mode():
        agreement = _agreement(network, frame)  # also the warm-up: oneDNN builds its kernels on a shape's first call
        for _ in range(args.repeats):
            for path in PATHS:
                stage_cpu, stage_wall = _run_frame(network, frame, device, reference=path == "reference")
                for stage in STAGES:
                    cpu[path][stage].append(stage_cpu[stage])
                    wall[path][stage].append(stage_wall[stage])

    print(f"\n{_describe(frame, args, device)}")
    print(f"{'stage':<14}{'reference s':>13}{'optimised s':>13}{'ratio':>8}{'ref wall s':>12}{'opt wall s':>12}")
    totals = {path: [0.0, 0.0] for path in PATHS}
    for stage in STAGES:
        medians = {path: (statistics.median(cpu[path][stage]), statistics.median(wall[path][stage])) for path in PATHS}
        for path in PATHS:
            totals[path][0] += medians[path][0]
            totals[path][1] += medians[path][1]
        ratio = medians["optimised"][0] / medians["reference"][0]
        print(f"{stage:<14}{medians['reference'][0]:>13.3f}{medians['optimised'][0]:>13.3f}{ratio:>8.3f}"
              f"{medians['reference'][1]:>12.3f}{medians['optimised'][1]:>12.3f}")
    ratio = totals["optimised"][0] / totals["reference"][0]
    print(f"{'total':<14}{totals['reference'][0]:>13.3f}{totals['optimised'][0]:>13.3f}{ratio:>8.3f}"
          f"{totals['reference'][1]:>12.3f}{totals['optimised'][1]:>12.3f}")
    print("\n".join(agreement))


def _profile(network: XMem, args: argparse.Namespace, num_objects: int, device: torch.device) -> dict[str, float]:
    """Median wall seconds of each optimised stage over `--repeats` frames after one warm-up frame; printed."""
    frame = _Frame(network, args, num_objects, device)
    wall = {stage: [] for stage in STAGES}
    with torch.inference_mode():
        for repeat in range(args.repeats + 1):
            _, stage_wall = _run_frame(network, frame, device, reference=False)
            if repeat > 0:
                for stage in STAGES:
                    wall[stage].append(stage_wall[stage])
    medians = {stage: statistics.median(seconds) for stage, seconds in wall.items()}
    print(f"\n{_describe(frame, args, device)}")
    print(f"{'stage':<14}{'optimised wall s':>18}")
    for stage in STAGES:
        print(f"{stage:<14}{medians[stage]:>18.4f}")
    print(f"{'total':<14}{sum(medians.values()):>18.4f}")
    return medians


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.weights == "recipe":
        network = build_network_from_state_dict(build_recipe_state_dict(RECIPE_KEY_LIST), device)
    else:
        torch.manual_seed(args.seed)
        network = XMem().eval().to(device)
    optimize_network(network, channels_last=args.channels_last)
    for num_objects in args.objects:
        if args.profile:
            _profile(network, args, num_objects, device)
        else:
            _compare(network, args, num_objects)


if __name__ == "__main__":
    sys.exit(run_cli(main))
