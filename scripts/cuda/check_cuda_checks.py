"""The checks of `scripts/cuda/check_cuda.py`, each run in its own child process on a CUDA machine.

Every check takes the parsed options and a fresh work folder and returns (figures, failures): the measured numbers
and one line per broken expectation (empty = pass). The project's CLIs (train.py, eval.py, scripts/speed/benchmark.py,
scripts/speed/time_train_step.py) are run as processes with their stable flags and config keys; the few library
functions a check needs from code that is being reorganised are imported once, in `_training_api`.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from configs.common import OUTPUT_CAPTURED, REPOSITORY, project_command, run_child
from dataset.synthetic_plan import CALIBRATION_SEED, DEFAULT_PLAN, calibration_clips, make_data
from inference.evaluation.run_summary import SUMMARY_FILE, RunSummary
from model.batchnorm_calibration import INIT_CHECKPOINT, calibrated_initial_network
from scripts.cuda.check_cuda_core import (argmax_agreement, loss_is_falling, max_abs_difference, memory_flatness,
                                          relative_error, settled_frame)

FIXTURES = REPOSITORY / "tests" / "fixtures"  # data files of a checkout (read, never imported)
NETWORK_GOLDEN = FIXTURES / "network_golden.npz"
GOLDEN_VIDEO = FIXTURES / "inference_video"
KEY_LIST = FIXTURES / "xmem_state_dict.tsv"  # the recipe checkpoint is built from it
NETWORK_TOLERANCE = 1e-4  # max |Δ| / max |reference|, the numerics contract of tests/fixtures/README.md
FLOAT32_PROB_TOLERANCE = 2e-3  # as tests/test_inference_golden.py (the goldens are float16)
AMP_MIN_ARGMAX_AGREEMENT = 0.99  # AMP may flip pixels on object borders, not whole regions
AMP_MAX_JF_DIFFERENCE = 0.02  # J&F (as a fraction) of AMP vs float32 on the synthetic set
EVAL_SIZE = (480, 854)  # DAVIS 480p
EVAL_OBJECTS = 3
EVAL_VARIANTS = {  # name -> config overrides of eval.py
    "float32": ["inference.use_amp=off"],
    "amp": ["inference.use_amp=on"],
    "channels_last": ["inference.use_amp=on", "inference.channels_last=true"],
    "compile": ["inference.use_amp=on", "inference.compile_network=true"],
}
MEMORY_TOLERANCE_MB, MEMORY_TOLERANCE_FRACTION = 32.0, 0.05
TRAIN_STEP_BATCHES = (4, 2, 1)  # tried in this order until one fits
TRAIN_STEP_LINE = re.compile(r"batch (\d+): ([\d.]+) s/it mean, ([\d.]+) s/it min .*peak memory (\d+) MiB")
NONDETERMINISTIC_WARNING = re.compile(r"(\w+) does not have a deterministic implementation")
# train.py under deterministic algorithms: train.py turns the cuDNN autotuner on, whose choice (among deterministic
# kernels) may differ between two processes and so change the float results; it is pinned off here.
DETERMINISTIC_PRELUDE = (
    "import runpy, sys, torch\n"
    "torch.use_deterministic_algorithms(True, warn_only=True)\n"
    "type(torch.backends.cudnn).benchmark = property(lambda self: False, lambda self, value: None)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)
CUBLAS_DETERMINISTIC = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def _training_api():
    """Trainer, a stage-3 Config builder and RunDirectory: the one place that names where training code lives."""
    from model.random_batch import stage3_config
    from model.training.run_folder import RunDirectory
    from model.training.trainer import Trainer

    return Trainer, stage3_config, RunDirectory


def _recipe_network(device: torch.device):
    from model.checkpoint import build_network_from_state_dict
    from model.recipe_checkpoint import build_recipe_state_dict

    return build_network_from_state_dict(build_recipe_state_dict(KEY_LIST), device)


def _set_tf32(enabled: bool) -> None:
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _run(command: list[str], env_extra: dict[str, str] | None = None, cwd: Path = REPOSITORY) -> str:
    """Run a project CLI; return its output. Raises RuntimeError with the output's tail when it fails."""
    child = run_child(command, output=OUTPUT_CAPTURED, env_extra=env_extra, cwd=cwd)
    if child.returncode != 0:
        tail = "\n".join(child.output.strip().splitlines()[-12:])
        raise RuntimeError(f"{' '.join(command[:3])} … exited with {child.returncode}:\n{tail}")
    return child.output


# ----------------------------------------------------------------------------------------------- network
def check_network(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """The network's golden tensors on CUDA float32 (TF32 off; TF32 on reported for information)."""
    device = torch.device("cuda")
    network = _recipe_network(device)
    with np.load(NETWORK_GOLDEN) as data:
        golden = {name: data[name] for name in data.files}
    figures, failures = {}, []
    for tf32 in (False, True):
        _set_tf32(tf32)
        outputs = _network_outputs(network, golden, device)
        errors = {name: relative_error(value, golden[name]) for name, value in outputs.items()}
        worst = max(errors, key=errors.get)
        key = "tf32" if tf32 else "float32"
        figures[f"{key}_worst_relative_error"] = errors[worst]
        figures[f"{key}_worst_tensor"] = worst
        if not tf32:
            figures["float32_relative_errors"] = errors
            if errors[worst] > NETWORK_TOLERANCE:
                failures.append(f"{worst}: relative error {errors[worst]:.2e} > {NETWORK_TOLERANCE:g}")
    _set_tf32(False)
    return figures, failures


@torch.no_grad()
def _network_outputs(network, golden: dict[str, np.ndarray], device: torch.device) -> dict[str, np.ndarray]:
    """The golden recipe of tests/test_network.py on `device`."""
    image, masks, query_image = (torch.from_numpy(golden[name]).to(device) for name in ("image", "masks",
                                                                                       "query_image"))
    memory = network.encode_key(image)
    hidden = torch.zeros(*masks.shape[:2], network.hidden_dim, *memory.key.shape[-2:], device=device)
    value, hidden_after_value = network.encode_value(image, memory.f16, hidden, masks, is_deep_update=True)
    query = network.encode_key(query_image)
    readout = network.read_memory(query.key, query.selection, memory.key.unsqueeze(2),
                                  memory.shrinkage.unsqueeze(2), value.unsqueeze(3))
    hidden_after_segment, logits_with_bg, prob_with_bg = network.segment(
        (query.f16, query.f8, query.f4), readout, hidden_after_value, update_hidden=True, strip_background=False)
    outputs = {"key": memory.key, "shrinkage": memory.shrinkage, "selection": memory.selection, "f16": memory.f16,
               "f8": memory.f8, "f4": memory.f4, "value": value, "hidden_after_value": hidden_after_value,
               "readout": readout, "hidden_after_segment": hidden_after_segment, "logits_with_bg": logits_with_bg,
               "prob_with_bg": prob_with_bg}
    return {name: tensor.float().cpu().numpy() for name, tensor in outputs.items()}


# ----------------------------------------------------------------------------------------------- streaming
def check_streaming(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """The streaming core on the golden video, CUDA float32 and AMP, against the CPU float32 goldens."""
    from inference.golden_fixtures import GOLDEN_CONFIGS, read_golden_video
    from inference.inference_core import InferenceCore, normalize_image

    _set_tf32(False)
    device = torch.device("cuda")
    network = _recipe_network(device)
    frames, first_mask_array = read_golden_video(GOLDEN_VIDEO)
    first_mask = torch.from_numpy(first_mask_array).to(device)
    figures, failures = {}, []
    for golden_name, config in sorted(GOLDEN_CONFIGS.items()):
        golden = np.load(FIXTURES / f"inference_golden_{golden_name}.npz")
        for precision, use_amp in (("float32", "off"), ("amp", "on")):
            core = InferenceCore(network, dataclasses.replace(config, use_amp=use_amp), device=device,
                                 num_frames=len(frames))
            differences, agreements, size_mismatches, finite = [], [], [], True
            with torch.inference_mode():
                for index, rgb in enumerate(frames):
                    prob = core.step(normalize_image(rgb, device=device), first_mask if index == 0 else None,
                                     end=index == len(frames) - 1).float().cpu().numpy()
                    finite &= bool(np.isfinite(prob).all())
                    sizes = (core.working_memory_elements, core.long_term_memory_elements)
                    if sizes != (golden["wm_size"][index], golden["lt_size"][index]):
                        size_mismatches.append(index)
                    key = f"prob_{index:05d}"
                    if key in golden:
                        reference = golden[key].astype(np.float32)
                        differences.append(max_abs_difference(prob, reference))
                        agreements.append(argmax_agreement(prob, reference))
            name = f"{golden_name}.{precision}"
            figures[name] = {"max_abs_dprob": max(differences), "argmax_agreement": min(agreements),
                             "sizes_identical": not size_mismatches, "finite": finite}
            if not finite:
                failures.append(f"{name}: NaN/inf in the probabilities")
            if size_mismatches:
                failures.append(f"{name}: memory sizes differ from the golden from frame {size_mismatches[0]}")
            if precision == "float32" and max(differences) >= FLOAT32_PROB_TOLERANCE:
                failures.append(f"{name}: max |Δprob| {max(differences):.2e} >= {FLOAT32_PROB_TOLERANCE:g}")
            if precision == "amp" and min(agreements) < AMP_MIN_ARGMAX_AGREEMENT:
                failures.append(f"{name}: argmax agreement {min(agreements):.4f} < {AMP_MIN_ARGMAX_AGREEMENT}")
    return figures, failures


# ----------------------------------------------------------------------------------------------- eval.py
def check_eval(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """eval.py on a synthetic DAVIS-layout set at 480p (3 objects) in each variant (float32, AMP, channels-last,
    torch.compile; --eval-variants): FPS, peak CUDA memory, J&F."""
    from dataset.synthetic import get_preset, make_videos, without_late_entries
    from dataset.synthetic_layouts import write_davis
    from model.checkpoint import save_network

    difficulty = dataclasses.replace(without_late_entries(get_preset("held_out")), min_objects=EVAL_OBJECTS,
                                     max_objects=EVAL_OBJECTS)
    videos = make_videos(options.eval_videos, seed=0, num_frames=options.eval_frames, height=EVAL_SIZE[0],
                         width=EVAL_SIZE[1], difficulty=difficulty)
    root = work / "davis"
    write_davis(root / "trainval", {}, videos)
    model = options.model
    if model is None:
        model = work / "recipe.pth"
        save_network(_recipe_network(torch.device("cpu")), model)
    figures, failures = {"model": str(options.model or "recipe checkpoint"), "videos": len(videos),
                         "frames": options.eval_frames}, []
    for variant in options.eval_variants:
        overrides = EVAL_VARIANTS[variant]
        output = work / f"eval_{variant}"
        try:
            _run([*project_command("eval.py"), "eval.dataset=D17", f"eval.d17_path={root}",
                  f"eval.model={Path(model).resolve()}", f"eval.output={output}", "eval.device=cuda",
                  "eval.overwrite=true", *overrides])
        except RuntimeError as error:
            failures.append(f"{variant}: {error}")
            continue
        summary = RunSummary.read(output / SUMMARY_FILE)
        figures[variant] = {"fps": summary.fps, "peak_cuda_mb": summary.peak_memory_mb,
                            "J&F": (summary.scores or {}).get("J&F-Mean")}
    if "float32" in figures and "amp" in figures:
        difference = abs(figures["amp"]["J&F"] - figures["float32"]["J&F"])
        figures["amp_vs_float32_abs_dJF"] = difference
        if difference > AMP_MAX_JF_DIFFERENCE:
            failures.append(f"J&F of AMP differs from float32 by {difference:.4f} > {AMP_MAX_JF_DIFFERENCE}")
    return figures, failures


# ----------------------------------------------------------------------------------------------- long video
def check_long_video(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """scripts/speed/benchmark.py on a long synthetic 480p video, long-term memory on: FPS and CUDA memory over time."""
    csv_path = work / "long_video.csv"
    command = [*project_command("scripts/speed/benchmark.py"), "--device", "cuda", "--frames",
               str(options.long_frames), "--height", str(EVAL_SIZE[0]), "--width", str(EVAL_SIZE[1]),
               "--late_object_frame", "1", "--output", str(csv_path)]
    if options.model is not None:
        command += ["--model", str(options.model)]
    _run(command)
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    seconds = [float(row["seconds"]) for row in rows]
    elements = [int(row["working_elements"]) + int(row["long_term_elements"]) for row in rows]
    settled = settled_frame(elements)
    figures, failures = {"frames": len(rows), "fps_median": 1 / float(np.median(seconds)),
                         "fps_last_tenth": 1 / float(np.median(seconds[-max(1, len(rows) // 10):]))}, []
    for column in ("cuda_peak_mb", "cuda_allocated_mb"):
        curve = [float(row[column]) for row in rows]
        tolerance = max(MEMORY_TOLERANCE_MB, MEMORY_TOLERANCE_FRACTION * max(curve))
        figures[column] = memory_flatness(curve, settled, tolerance)
        if not figures[column]["flat"]:
            failures.append(f"{column} grows after memory reached its bound (frame {settled}): first at frame "
                            f"{figures[column]['first_growth_frame']}")
    return figures, failures


# ----------------------------------------------------------------------------------------------- training
def _quickstart_setup(work: Path) -> tuple[list[str], Path]:
    """Quickstart data and calibrated initial network under `work`; the train.py overrides that point at them."""
    from configs import load_config

    folders = make_data(DEFAULT_PLAN, work)
    crop_size = load_config(DEFAULT_PLAN.preset, []).train.data.crop_size
    clips = calibration_clips(folders.static_root, crop_size, DEFAULT_PLAN.calibration_clips)
    init = calibrated_initial_network(clips, work / INIT_CHECKPOINT, torch.device("cuda"), seed=CALIBRATION_SEED)
    overrides = [f"train.load_network={init}", f"train.data.static_root={folders.static_root.resolve()}",
                 f"train.data.generic_root={folders.train_root.resolve()}", "train.device=cuda", "train.use_amp=true"]
    return overrides, init


def _train_command(preset: str, overrides: list[str], deterministic: bool = False) -> list[str]:
    script = str(REPOSITORY / "train.py")
    prefix = [sys.executable, "-c", DETERMINISTIC_PRELUDE] if deterministic else [sys.executable]
    return [*prefix, script, "--config", preset, *overrides]


def check_training(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """The quickstart recipe trained by train.py on CUDA with AMP + GradScaler: loss finite and falling."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, RunDirectory = _training_api()
    plan = DEFAULT_PLAN
    overrides, _ = _quickstart_setup(work)
    save_dir = work / "saves"
    overrides += [f"train.save_dir={save_dir}", f"train.stage3.iterations={options.train_iterations}"]
    _run(_train_command(plan.preset, overrides))
    from configs import load_config

    train = load_config(plan.preset, overrides).train
    accumulator = EventAccumulator(str(RunDirectory(train.save_dir, train.exp_id).tensorboard("3")))
    accumulator.Reload()
    tag = next(name for name in accumulator.Tags()["scalars"] if name.endswith("total_loss"))
    losses = [event.value for event in accumulator.Scalars(tag)]
    seconds = [event.value for event in accumulator.Scalars("train/s_per_it")]
    curve = loss_is_falling(losses)
    figures = {"iterations": options.train_iterations, "logged_losses": len(losses), **curve,
               "s_per_it_median": float(np.median(seconds)) if seconds else None}
    failures = [] if curve["finite"] and curve["falling"] else [
        f"stage-3 loss not finite and falling: first quarter {curve['first_mean']}, last {curve['last_mean']}"]
    return figures, failures


def check_train_step(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """scripts/speed/time_train_step.py with AMP at 384×384, 8 frames: batch 4, or the largest of 2, 1 that fits."""
    tried = []
    for batch in [options.step_batch, *[b for b in TRAIN_STEP_BATCHES if b < options.step_batch]]:
        try:
            output = _run([*project_command("scripts/speed/time_train_step.py"), "--device", "cuda",
                           "--batch-sizes", str(batch), "--num-frames", "8", "--crop", "384", "--iterations",
                           str(options.step_iterations), "--warmup", str(options.step_warmup)])
        except RuntimeError as error:
            if "out of memory" not in str(error).lower():
                raise
            tried.append(batch)
            continue
        match = TRAIN_STEP_LINE.search(output)
        if match is None:
            raise RuntimeError(f"time_train_step.py printed no timing line:\n{output[-2000:]}")
        return {"batch": int(match[1]), "s_per_it_mean": float(match[2]), "s_per_it_min": float(match[3]),
                "peak_cuda_mib": int(match[4]), "out_of_memory_at": tried}, []
    return {"out_of_memory_at": tried}, ["every batch size ran out of memory"]


def check_resume(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """Resume bit-exactness on CUDA with deterministic algorithms: 2N iterations straight vs N, stop, resume."""
    _, _, RunDirectory = _training_api()
    plan = DEFAULT_PLAN
    overrides, _ = _quickstart_setup(work)
    half = options.resume_iterations
    overrides += [f"train.save_dir={work / 'saves'}", "train.exp_id=resume_check", "train.stages=3",
                  f"train.stage3.iterations={2 * half}", "train.stage3.lr_steps=[]",
                  f"train.save_checkpoint_interval={half}", "train.save_network_interval=0"]
    run = RunDirectory(work / "saves", "resume_check")
    straight_output = _run(_train_command(plan.preset, overrides, deterministic=True), CUBLAS_DETERMINISTIC)
    final = run.snapshot("3", 2 * half)
    straight = torch.load(final, map_location="cpu", weights_only=True)
    # "Stop" at N: keep only what a run killed after iteration N would have left, then resume it.
    for path in run.checkpoints():
        if int(path.stem.rsplit("_", 1)[1]) > half:
            path.unlink()
    final.unlink()
    resumed_output = _run(_train_command(plan.preset, overrides + ["--resume"], deterministic=True),
                          CUBLAS_DETERMINISTIC)
    resumed = torch.load(final, map_location="cpu", weights_only=True)
    differing = [key for key in straight if not torch.equal(straight[key], resumed[key])]
    largest = max((float((straight[key].double() - resumed[key].double()).abs().max()) for key in differing),
                  default=0.0)
    nondeterministic = sorted(set(NONDETERMINISTIC_WARNING.findall(straight_output + resumed_output)))
    figures = {"iterations": 2 * half, "resumed_at": half, "tensors": len(straight), "differing_tensors":
               len(differing), "max_abs_difference": largest, "nondeterministic_ops": nondeterministic}
    failures = [] if not differing else [f"{len(differing)} of {len(straight)} tensors differ after resume (max "
                                         f"|Δ| {largest:.3g}; first {differing[0]})"]
    return figures, failures


# ----------------------------------------------------------------------------------------------- torchrun / NCCL
def check_ddp(options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """torchrun with NCCL over every visible GPU: a few training steps, then identical weights on every rank."""
    result = work / "ddp_ranks.json"
    gpus = torch.cuda.device_count()
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
          str(REPOSITORY / "scripts" / "cuda" / "check_cuda.py"), "--ddp-worker", str(result), "--ddp-iterations",
          str(options.ddp_iterations)])
    digests = json.loads(result.read_text())["digests"]
    figures = {"world_size": len(digests), "iterations": options.ddp_iterations, "identical": len(set(digests)) == 1,
               "digest": digests[0][:16]}
    return figures, [] if figures["identical"] else [f"weights differ across ranks: {digests}"]


def ddp_worker(result_path: Path, iterations: int) -> None:
    """One torchrun rank: Trainer steps under DDP on rank-specific random clips, then every rank's weight digest
    gathered to rank 0, which writes them to `result_path`."""
    import os

    import torch.distributed as dist

    from model.network import XMem
    from model.random_batch import random_batch

    Trainer, stage3_config, _ = _training_api()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl")
    try:
        torch.manual_seed(0)  # every rank starts from the same weights, as DDP requires
        network = XMem().to(device)
        config = stage3_config(2 * world_size, 3, 2, use_amp=True)
        trainer = Trainer(network, config, "3", device=device, rank=rank, world_size=world_size)
        generator = torch.Generator().manual_seed(rank)  # different data on every rank
        for _ in range(iterations):
            trainer.train_step(random_batch(2, 3, 128, 2, generator))
        digest = hashlib.sha256()
        for tensor in network.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digests: list[Any] = [None] * world_size
        dist.all_gather_object(digests, digest.hexdigest())
        if rank == 0:
            result_path.write_text(json.dumps({"digests": digests}))
    finally:
        dist.destroy_process_group()


CHECKS: dict[str, tuple[Callable[[argparse.Namespace, Path], tuple[dict, list[str]]], float]] = {
    "network": (check_network, 0.3),
    "streaming": (check_streaming, 0.5),
    "eval": (check_eval, 2.5),
    "long_video": (check_long_video, 2.0),
    "training": (check_training, 1.5),
    "train_step": (check_train_step, 1.0),
    "resume": (check_resume, 1.0),
    "ddp": (check_ddp, 0.5),
}
"""name -> (function, expected minutes on one H100 at the default sizes)."""


def run_check(name: str, options: argparse.Namespace, work: Path) -> tuple[dict, list[str]]:
    """Run check `name` in a fresh work folder."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    function, _ = CHECKS[name]
    return function(options, work)
