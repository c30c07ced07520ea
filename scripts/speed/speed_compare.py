"""Per-frame time of the reference and optimised compute paths at 480p, stage by stage, and how far they differ.

For each object count, one frame (default 480×864, the padded size of a 480p DAVIS frame) runs through:
encode_key; a memory read against a prefilled memory (working memory of T_max = 10 frames plus LT_max = 10,000
long-term elements, random keys of the right sizes; similarity + top-k read with the `model.memory_util`
functions, as the inference core calls them); segment; encode_value. The reference path is the original's
computation: `model/reference.py` for the network (per-object concatenation in the value stem and the fusers, same
weights) and `model/reference_memory.py` for the memory (term-by-term similarity, dense top-k affinity times
values). The optimised path is what inference runs.

Agreement is checked stage by stage on identical inputs (each optimised stage gets the reference path's inputs),
so that the network's differences are not mixed with those of the memory read. The top-k read is discontinuous:
where a query pixel's k-th and (k+1)-th similarities are closer than float rounding, the two paths may pick a
different k-th element (as the original does across devices or thread counts), so the readout's max |Δ| is also
given over the query pixels whose top-k sets agree, with the number of those that do not.

Times are CPU seconds of this process (`time.process_time`), so that other processes on a shared machine do not
inflate them; wall seconds are printed too. Each stage reports the median over `--repeats` runs; the two paths
alternate within every repeat. Pin the thread count (`--threads`, default 1) for comparable numbers.

    python scripts/speed/speed_compare.py                      # recipe weights, 1 and 3 objects, 480×864
    python scripts/speed/speed_compare.py --objects 3 --repeats 5 --channels-last
"""
from __future__ import annotations

import sys
import argparse
import statistics
import time
from functools import partial
from typing import Callable, Sequence


import torch

from configs.common import REPOSITORY, run_cli
from model.acceleration import optimize_network
from model.checkpoint import build_network_from_state_dict
from model.memory_util import get_similarity, top_k_readout
from model.network import XMem
from model.reference import reference_encode_value, reference_segment
from model.reference_memory import dense_top_k_read, term_by_term_similarity
from model.recipe_checkpoint import build_recipe_state_dict

FEATURE_STRIDE = 16  # h×w = H/16×W/16
DEFAULT_HEIGHT, DEFAULT_WIDTH = 480, 864  # a 480p frame padded to a multiple of 16
DEFAULT_WORKING_FRAMES = 10  # T_max
DEFAULT_LONG_TERM_ELEMENTS = 10_000  # LT_max
DEFAULT_TOP_K = 30  # k
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
    parser.add_argument("--working-frames", type=int, default=DEFAULT_WORKING_FRAMES,
                        help="frames in working memory (T_max)")
    parser.add_argument("--long-term-elements", type=int, default=DEFAULT_LONG_TERM_ELEMENTS,
                        help="elements in long-term memory (LT_max)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="memory elements read per query pixel (k)")
    parser.add_argument("--weights", choices=("recipe", "random"), default="recipe",
                        help="recipe checkpoint of tests/fixtures/README.md, or random initialisation")
    parser.add_argument("--channels-last", action="store_true", help="optimize_network(channels_last=True) first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.height % FEATURE_STRIDE or args.width % FEATURE_STRIDE or args.height <= 0 or args.width <= 0:
        parser.error(
            f"--height/--width must be positive multiples of {FEATURE_STRIDE}, got {args.height}×{args.width}"
        )
    if min(args.objects) < 1 or args.repeats < 1 or args.threads < 1 or args.top_k < 1:
        parser.error("--objects, --repeats, --threads and --top-k must be ≥ 1")
    if args.working_frames < 1 or args.long_term_elements < 0:
        parser.error("--working-frames must be ≥ 1 and --long-term-elements ≥ 0")
    return args


def _timed(function: Callable[[], object]) -> tuple[float, float, object]:
    """(CPU seconds of this process, wall seconds, result) of one call."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = function()
    return time.process_time() - cpu_start, time.perf_counter() - wall_start, result


class _Frame:
    """Inputs of one frame with `num_objects` objects and a prefilled memory of random keys and values."""

    def __init__(self, network: XMem, args: argparse.Namespace, num_objects: int):
        generator = torch.Generator().manual_seed(args.seed + num_objects)
        height, width = args.height // FEATURE_STRIDE, args.width // FEATURE_STRIDE
        num_elements = args.working_frames * height * width + args.long_term_elements
        self.image = torch.randn(1, 3, args.height, args.width, generator=generator)
        self.masks = torch.rand(1, num_objects, args.height, args.width, generator=generator)
        self.hidden = torch.tanh(torch.randn(1, num_objects, network.hidden_dim, height, width, generator=generator))
        self.memory_key = torch.randn(1, network.key_dim, num_elements, generator=generator)
        self.memory_shrinkage = 1 + torch.rand(1, 1, num_elements, generator=generator) ** 2
        # Element-major values (one row per element, all objects side by side), as the memory store keeps them.
        self.memory_values = torch.randn(num_elements, num_objects * network.value_dim, generator=generator)
        self.num_objects, self.num_elements, self.top_k = num_objects, num_elements, args.top_k


def _memory_read(network: XMem, frame: _Frame, encoding, *, reference: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(readout B×N×C^v×h×w, similarity B×n×M) of the frame's query against its prefilled memory: the original's
    way (term-by-term similarity, dense top-k affinity times the values) or the optimised one."""
    similarity = (term_by_term_similarity if reference else get_similarity)(
        frame.memory_key, frame.memory_shrinkage, encoding.key, encoding.selection
    )
    if reference:
        values, _ = dense_top_k_read(similarity, frame.memory_values.t().unsqueeze(0), frame.top_k)
    else:
        values, _ = top_k_readout(similarity[0], [frame.memory_values], frame.top_k)
    return values.view(1, frame.num_objects, network.value_dim, *encoding.key.shape[-2:]), similarity


def _run_frame(network: XMem, frame: _Frame, *, reference: bool) -> tuple[dict[str, float], dict[str, float]]:
    """One frame through the four stages: (CPU seconds per stage, wall seconds per stage)."""
    cpu, wall = {}, {}
    cpu["encode_key"], wall["encode_key"], encoding = _timed(lambda: network.encode_key(frame.image))
    cpu["memory_read"], wall["memory_read"], (memory_readout, _) = _timed(
        lambda: _memory_read(network, frame, encoding, reference=reference)
    )
    features = (encoding.f16, encoding.f8, encoding.f4)
    segment, encode_value = _network_path(network, reference=reference)
    cpu["segment"], wall["segment"], segmentation = _timed(lambda: segment(features, memory_readout, frame.hidden))
    cpu["encode_value"], wall["encode_value"], _ = _timed(
        lambda: encode_value(frame.image, encoding.f16, segmentation.hidden, segmentation.prob)
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
    reads = {path: _memory_read(network, frame, encoding, reference=path == "reference") for path in PATHS}
    (reference_readout, reference_similarity), (optimised_readout, optimised_similarity) = (
        reads["reference"], reads["optimised"]
    )
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
        segmentation = segment(features, reference_readout, frame.hidden)
        outputs[path] = dict(prob=segmentation.prob, hidden_after_segment=segmentation.hidden)
        if reference:
            value_inputs = (segmentation.hidden, segmentation.prob)
        value, hidden = encode_value(frame.image, encoding.f16, *value_inputs)
        outputs[path].update(value=value, hidden_after_value=hidden)
    for name, reference in outputs["reference"].items():
        difference = float((outputs["optimised"][name] - reference).abs().max())
        lines.append(f"  max |Δ| {name:<22}{difference:.2e}  (max |reference| {float(reference.abs().max()):.3g})")
    return lines


def _compare(network: XMem, args: argparse.Namespace, num_objects: int) -> None:
    frame = _Frame(network, args, num_objects)
    cpu = {path: {stage: [] for stage in STAGES} for path in PATHS}
    wall = {path: {stage: [] for stage in STAGES} for path in PATHS}
    with torch.inference_mode():
        agreement = _agreement(network, frame)  # also the warm-up: oneDNN builds its kernels on a shape's first call
        for _ in range(args.repeats):
            for path in PATHS:
                stage_cpu, stage_wall = _run_frame(network, frame, reference=path == "reference")
                for stage in STAGES:
                    cpu[path][stage].append(stage_cpu[stage])
                    wall[path][stage].append(stage_wall[stage])

    print(f"\n{num_objects} object(s), {args.height}×{args.width}, memory {frame.num_elements} elements, "
          f"top-k {args.top_k}, {args.threads} thread(s), median of {args.repeats}")
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


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.weights == "recipe":
        network = build_network_from_state_dict(build_recipe_state_dict(RECIPE_KEY_LIST))
    else:
        torch.manual_seed(args.seed)
        network = XMem().eval()
    optimize_network(network, channels_last=args.channels_last)
    for num_objects in args.objects:
        _compare(network, args, num_objects)


if __name__ == "__main__":
    sys.exit(run_cli(main))
