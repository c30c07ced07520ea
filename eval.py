"""Evaluate an XMem checkpoint on a benchmark: read videos, segment them frame by frame, write and score the results.

Usage (the original eval.py flags keep working; `--config` takes a preset, `key=value` overrides anything):
    python eval.py --model saves/XMem.pth --dataset D17 --d17_path ../DAVIS/2017 --output ../output/d17
    python eval.py --config eval/y19 --y19_path ../YouTube inference.mem_every=3 --size 600
    python eval.py --dataset G --generic_path my_videos --size -1 --save_scores --flip

Outputs are described in `dataset/writers.py`. A rerun skips finished videos unless `--overwrite`. At the end a
report gives J&F / J / F when the split has ground truth (DAVIS 2016/2017 val, Long-time Video, generic folders
with annotations beyond the first frame), the FPS without data loading and the peak memory. YouTube-VOS, DAVIS
test-dev and LVOS are scored by their servers / toolkits, from the zip or folder written here.

A training snapshot's sidecar `<checkpoint>.yaml` (the `model:` switches it was trained with) is applied: memory
reading switches left at their defaults take the sidecar's values; switches set in the config must agree with it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from configs.loader import add_flag_aliases, dump_config, load_config, overrides_from_flags
from configs.schema import Config, ModelConfig
from dataset.eval_datasets import (Benchmark, EmptyMaskError, EvalVideo, match_mask_to_frame, open_benchmark,
                                   resize_image, resize_mask, resize_probabilities, resized_shape)
from configs.common import atomic_output, resolve_device
from dataset.image_io import read_index_mask
from dataset.writers import ResultWriter
from inference.inference_core import InferenceCore, normalize_image
from inference.metrics import MODE_APPEARANCE, MODE_DAVIS, EvaluationResults, SequenceScorer
from model.acceleration import optimize_network
from model.checkpoint import load_network

logger = logging.getLogger("eval")

DEFAULT_OUTPUT_PATTERN = "../output/{dataset}_{split}"
CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"  # the returned summary, for scripts that run eval.py as a process
BYTES_PER_MB = 2**20
RSS_UNIT_BYTES = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, kilobytes on Linux
MIN_SCORED_SEQUENCE_FRAMES = 3  # the first and last ground-truth frames are never scored
# Video errors that stop one video and let the others run (bad files, missing masks, mismatched sizes).
VIDEO_ERRORS = (FileNotFoundError, ValueError, KeyError)
SIDECAR_SUFFIX = ".yaml"  # a training snapshot's model switches: <checkpoint>.yaml
SIDECAR_SWITCHES = ("similarity", "use_shrinkage", "use_selection")  # what a state_dict cannot tell
MEMORY_RECORD_KEYS = ("working_elements", "long_term_elements", "sensory_peak_abs")
SERVER_SCORED = {
    "Y18": "YouTube-VOS 2018 is scored by its CodaLab server: upload {zip}",
    "Y19": "YouTube-VOS 2019 is scored by its CodaLab server: upload {zip}",
    "D17": "DAVIS 2017 test-dev is scored by its CodaLab server: upload {zip}",
    "LVOS1": "LVOS is scored by its toolkit (lvos-evaluation) on {output}",
    "LVOS2": "LVOS is scored by its toolkit (lvos-evaluation) on {output}",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line: `--config PRESET`, the original eval.py flags (alias table) and `key=value` overrides."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML preset (path, or name under configs/, e.g. eval/d17)")
    add_flag_aliases(parser)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="schema overrides applied last, e.g. inference.top_k=20 eval.size=600")
    return parser


def resolve_config(argv: Optional[Sequence[str]] = None) -> Config:
    """Schema defaults <- preset <- original flags <- `key=value` overrides.

    Raises:
        FileNotFoundError, UnknownConfigKeyError, TypeError, ValueError: see `configs.loader.load_config`.
    """
    arguments = build_parser().parse_args(argv)
    return load_config(arguments.config, overrides_from_flags(arguments) + list(arguments.overrides))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    """(megabytes, what was measured): CUDA max allocated on a CUDA device, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / BYTES_PER_MB, "CUDA max allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT_BYTES
    return peak / BYTES_PER_MB, "process peak RSS"


def _output_mask(prob: torch.Tensor, object_ids: Sequence[int]) -> tuple[torch.Tensor, list[int], np.ndarray]:
    """Reorder (N+1)×H×W probabilities (slot order) to ascending object ids; return them, the ids and the
    uint8 H×W mask of ids (argmax, 0 = background)."""
    order = sorted(range(len(object_ids)), key=lambda slot: object_ids[slot])
    labels = [int(object_ids[slot]) for slot in order]
    prob = prob[[0] + [slot + 1 for slot in order]]
    lookup = torch.tensor([0] + labels, dtype=torch.uint8, device=prob.device)
    return prob, labels, lookup[prob.argmax(dim=0)].cpu().numpy()


def _describe_switches(model: ModelConfig) -> str:
    return ", ".join(f"{name}={getattr(model, name)!r}" for name in SIDECAR_SWITCHES)


def apply_checkpoint_switches(config: Config, checkpoint: str | Path, hidden_dim: int) -> Config:
    """The config with the model switches a checkpoint was trained with (a new Config; `config` is unchanged).

    A plain state_dict cannot say whether it was trained with selection, shrinkage or the dot product; training
    snapshots carry a sidecar `<checkpoint>.yaml` with their `model:` switches. When the config leaves every
    memory-reading switch (SIDECAR_SWITCHES) at its default, the sidecar's switches are used (with a warning if
    they differ); when it sets any of them, all must agree with the sidecar. Released checkpoints have no
    sidecar: the config is used as given.

    Args:
        config: the resolved run config.
        checkpoint: the checkpoint path (its sidecar is the same path with suffix .yaml).
        hidden_dim: C^h of the loaded weights (0: no sensory memory).
    Returns:
        the config to run with.
    Raises:
        ValueError: the config's reading switches contradict the sidecar, `model.hidden_dim` is set to a value the
            weights do not have, or the sidecar is not a valid `model:` preset (each message names the file).
    """
    model, defaults = config.model, ModelConfig()
    if model.hidden_dim != defaults.hidden_dim and model.hidden_dim != hidden_dim:
        raise ValueError(
            f"config model.hidden_dim={model.hidden_dim} but checkpoint {str(checkpoint)!r} has C^h={hidden_dim}; "
            "pass a checkpoint trained with that sensory size (no sensory memory: hidden_dim=0, e.g. "
            "XMem-no-sensory.pth), or keep this one and set inference.use_sensory_memory=false to hold its sensory "
            "memory at zero"
        )
    sidecar = Path(checkpoint).with_suffix(SIDECAR_SUFFIX)
    if not sidecar.is_file():
        return config
    try:
        trained = load_config(sidecar).model
    except (KeyError, TypeError, ValueError) as error:
        message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
        raise ValueError(f"checkpoint sidecar {str(sidecar)!r}: not a valid model preset ({message})") from error
    wanted = {name: getattr(model, name) for name in SIDECAR_SWITCHES}
    used = {name: getattr(trained, name) for name in SIDECAR_SWITCHES}
    if wanted == used:
        return config
    if any(value != getattr(defaults, name) for name, value in wanted.items()):
        raise ValueError(
            f"checkpoint sidecar {str(sidecar)!r}: the checkpoint was trained with {_describe_switches(trained)} "
            f"but the config sets {_describe_switches(model)}; drop those settings or evaluate a checkpoint "
            "trained with them"
        )
    warnings.warn(f"memory reading as the checkpoint was trained ({_describe_switches(trained)}, from {sidecar})",
                  stacklevel=2)
    return dataclasses.replace(config, model=dataclasses.replace(model, **used))


def _run_video(network, video: EvalVideo, config: Config, benchmark: Benchmark, writer: ResultWriter,
               device: torch.device) -> dict[str, Any]:
    """Segment one video frame by frame and write its saved frames; return its record.

    Timing covers normalisation, resizing, the network and the output resize/argmax (not reading or writing files).
    The record also holds the memory at the end of the video (working / long-term elements) and the largest
    absolute value the sensory memory took (None for a network without sensory memory).
    """
    options = config.eval
    core = InferenceCore(network, config.inference, device=device, num_frames=len(video), model_config=config.model)
    seconds = 0.0
    saved = 0
    sensory_peak = None
    for frame in tqdm(video.frames(), total=len(video), desc=video.name, unit="frame", leave=False):
        image, mask = frame.image, frame.mask
        if options.flip:
            image = image[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        output_shape = video.output_shape or image.shape[:2]
        _synchronize(device)
        start = time.perf_counter()
        with torch.inference_mode():
            shape = resized_shape(*image.shape[:2], benchmark.size)
            pixels = resize_image(normalize_image(np.ascontiguousarray(image), device=device), shape)
            mask_tensor = None
            if mask is not None:
                mask_tensor = resize_mask(torch.from_numpy(np.ascontiguousarray(mask)).to(device), shape)
            prob = core.step(pixels, mask_tensor, list(frame.objects) if mask is not None else None,
                             end=frame.is_last)
            if frame.save:
                prob = resize_probabilities(prob, tuple(output_shape))
                if options.flip:
                    prob = prob.flip(-1)
                prob, labels, output = _output_mask(prob, core.object_ids)
        _synchronize(device)
        seconds += time.perf_counter() - start
        if core.memory.sensory is not None:  # no sync: the maximum stays on the device until the video ends
            frame_peak = core.memory.sensory.detach().abs().amax().float()
            sensory_peak = frame_peak if sensory_peak is None else torch.maximum(sensory_peak, frame_peak)
        if frame.save:
            writer.write_mask(video.name, frame.name, output, video.palette)
            if options.save_scores:
                writer.write_scores(video.name, frame.name, prob.float().cpu().numpy(), labels)
            saved += 1
    frames = len(video)
    return {"video": video.name, "frames": frames, "saved_frames": saved, "objects": len(core.object_ids),
            "seconds": round(seconds, 6), "fps": round(frames / seconds, 3) if seconds > 0 else float("nan"),
            "working_elements": core.working_memory_elements, "long_term_elements": core.long_term_memory_elements,
            "sensory_peak_abs": None if sensory_peak is None else round(float(sensory_peak), 6)}


def _memory_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Largest final working / long-term element counts and sensory peak over the videos' records (None where no
    record has the entry, e.g. records written by an older version, or no sensory memory)."""
    summary = {}
    for key in MEMORY_RECORD_KEYS:
        values = [record[key] for record in records if record.get(key) is not None]
        summary[key] = max(values) if values else None
    return summary


def _score(benchmark: Benchmark, writer: ResultWriter, videos: Sequence[str],
           davis_compat_decay: bool) -> Optional[EvaluationResults]:
    """J / F of the written masks against the benchmark's ground truth (frames having both), in the benchmark's
    scoring mode, or None if no video has enough ground-truth frames. DAVIS 2016 is scored as one binary object."""
    if benchmark.ground_truth_dir is None:
        return None
    mode = {"davis": MODE_DAVIS, "appearance": MODE_APPEARANCE}[benchmark.scoring_mode]
    objects = []
    for video in videos:
        pairs = [(truth, writer.mask_path(video, truth.stem))
                 for truth in sorted((benchmark.ground_truth_dir / video).glob("*.png"))]
        pairs = [(truth, predicted) for truth, predicted in pairs if predicted.is_file()]
        if len(pairs) < MIN_SCORED_SEQUENCE_FRAMES:
            continue

        def load(truth: Path, predicted: Path) -> tuple[np.ndarray, np.ndarray]:
            prediction, _ = read_index_mask(predicted)
            ground_truth, _ = read_index_mask(truth)
            with warnings.catch_warnings():  # a small size mismatch was already reported during inference
                warnings.simplefilter("ignore")
                ground_truth = match_mask_to_frame(ground_truth, prediction.shape, truth)
            if benchmark.dataset == "D16":
                return (ground_truth > 0).astype(np.uint8), (prediction > 0).astype(np.uint8)
            return ground_truth, prediction

        first_truth, _ = load(*pairs[0])
        scorer = SequenceScorer(first_truth, mode=mode, sequence=video, first_source=str(pairs[0][0]))
        for truth, predicted in pairs[1:-1]:
            scorer.add_frame(*load(truth, predicted))
        objects += scorer.finish(load(*pairs[-1])[0], davis_compat_decay=davis_compat_decay)
    return EvaluationResults(tuple(objects)) if objects else None


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Run an evaluation. Returns the summary that the report prints.

    Returns:
        dict with `output` (folder), `processed` / `skipped_finished` / `skipped_empty` (video names), `failed`
        (video -> error message), `frames`, `seconds`, `fps` (this run, data loading excluded), `peak_memory_mb` and
        `peak_memory_kind`, `memory` (over finished videos: largest final `working_elements` and
        `long_term_elements`, largest `sensory_peak_abs`), `scores` (global J&F table or None), `zip` (path or
        None), `report` (the printed text), `timings`, `config` and `summary` paths (the summary is also written
        as JSON to <output>/summary.json).
    Raises:
        FileNotFoundError: the checkpoint or the dataset root / its required folders are missing (named).
        UnknownConfigKeyError, TypeError, ValueError: a bad setting, checkpoint, checkpoint sidecar or meta file.
    """
    config = resolve_config(argv)
    options = config.eval
    output_dir = Path(options.output or DEFAULT_OUTPUT_PATTERN.format(dataset=options.dataset, split=options.split))
    benchmark = open_benchmark(options)
    device = resolve_device(options.device)
    network = load_network(options.model, device)
    config = apply_checkpoint_switches(config, options.model, network.hidden_dim)
    network = optimize_network(network, channels_last=config.inference.channels_last,
                               compile=config.inference.compile_network)
    writer = ResultWriter(output_dir, benchmark.layout)
    dump_config(config, output_dir / CONFIG_FILE)

    summary: dict[str, Any] = {"output": output_dir, "processed": [], "skipped_finished": [], "skipped_empty": [],
                               "failed": {}}
    records: dict[str, dict[str, Any]] = {}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for name in tqdm(benchmark.video_names, desc=f"{options.dataset} {options.split}", unit="video"):
        if writer.is_finished(name) and not options.overwrite:
            summary["skipped_finished"].append(name)
            records[name] = writer.finished_record(name)
            continue
        writer.start_video(name)
        try:
            video = benchmark.video(name)
            record = _run_video(network, video, config, benchmark, writer, device)
        except EmptyMaskError as error:
            warnings.warn(str(error), stacklevel=1)
            summary["skipped_empty"].append(name)
            continue
        except VIDEO_ERRORS as error:
            message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
            logger.error("video %s failed: %s", name, message)
            summary["failed"][name] = message
            writer.start_video(name)  # leave nothing of it behind
            continue
        writer.finish_video(name, record)
        records[name] = record
        summary["processed"].append(name)

    finished = [name for name in benchmark.video_names if name in records]
    summary["frames"] = sum(records[name]["frames"] for name in summary["processed"])
    summary["seconds"] = sum(records[name]["seconds"] for name in summary["processed"])
    summary["fps"] = summary["frames"] / summary["seconds"] if summary["seconds"] > 0 else float("nan")
    summary["peak_memory_mb"], summary["peak_memory_kind"] = _peak_memory(device)
    summary["memory"] = _memory_summary([records[name] for name in finished])
    summary["timings"] = writer.write_timings([records[name] for name in finished])
    summary["config"] = output_dir / CONFIG_FILE
    summary["zip"] = writer.write_submission_zip(benchmark.zip_kind, finished) if benchmark.zip_kind else None
    results = _score(benchmark, writer, finished, options.davis_compat_decay)
    summary["scores"] = None if results is None else results.global_scores()
    summary["report"] = _format_report(summary, benchmark, results)
    summary["summary"] = output_dir / SUMMARY_FILE
    with atomic_output(summary["summary"]) as temporary:
        temporary.write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _format_report(summary: dict[str, Any], benchmark: Benchmark, results: Optional[EvaluationResults]) -> str:
    lines = [f"{benchmark.dataset} {benchmark.split}: {len(summary['processed'])} videos processed, "
             f"{len(summary['skipped_finished'])} already finished, {len(summary['skipped_empty'])} empty, "
             f"{len(summary['failed'])} failed -> {summary['output']}"]
    if results is not None:
        lines.append(results.format_table())
    elif benchmark.dataset in SERVER_SCORED and (benchmark.zip_kind or benchmark.dataset.startswith("LVOS")):
        lines.append(SERVER_SCORED[benchmark.dataset].format(zip=summary["zip"], output=summary["output"]))
    else:
        lines.append("no ground truth beyond the input masks: not scored")
    lines.append(f"frames {summary['frames']}  time {summary['seconds']:.2f} s  FPS {summary['fps']:.2f} "
                 f"(data loading excluded)  peak memory {summary['peak_memory_mb']:.0f} MB "
                 f"({summary['peak_memory_kind']})")
    memory = summary["memory"]
    if memory["working_elements"] is not None:
        lines.append(f"memory at the end of a video (largest): {memory['working_elements']} working, "
                     f"{memory['long_term_elements']} long-term elements")
    lines.append(f"per-video timings: {summary['timings']}  config: {summary['config']}")
    for name, message in summary["failed"].items():
        lines.append(f"FAILED {name}: {message}")
    return "\n".join(lines)


def _cli() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = main()
    print(summary["report"])
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(_cli())
