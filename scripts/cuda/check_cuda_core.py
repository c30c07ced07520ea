"""The parts of `scripts/cuda/check_cuda.py` that need no GPU: comparison maths, the isolated check runner, the report,
and the --quick plan.

Each check runs as a child process (`run_isolated`) that writes its result as JSON; a crash, a non-zero exit or a
timeout of the child is recorded as that check's failure and the next check still runs. The report is one JSON
file (environment + every check's figures) and a markdown rendering of it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from configs.common import atomic_write_text

PASS, FAIL = "pass", "fail"
OUTPUT_TAIL_LINES = 15  # lines of a failed child's output kept in the report
REPORT_JSON, REPORT_MARKDOWN = "check_cuda.json", "check_cuda.md"
TABLE_COLUMNS = (("check", 22), ("status", 7), ("seconds", 9))


# ----------------------------------------------------------------------------------------------- comparison maths
def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours − reference| / max |reference| (the project's numerics contract; see tests/fixtures/README.md).

    Raises:
        ValueError: the shapes differ.
    """
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {ours.shape} compared with reference shape {reference.shape}")
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    difference = float(np.abs(ours - reference).max()) if reference.size else 0.0
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


def max_abs_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours − reference| (e.g. of two (N+1)×H×W probability maps); inf when either holds NaN/inf."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {ours.shape} compared with reference shape {reference.shape}")
    if not (np.isfinite(ours).all() and np.isfinite(reference).all()):
        return math.inf
    return float(np.abs(ours - reference).max()) if ours.size else 0.0


def argmax_agreement(ours: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of pixels whose argmax over the channel axis (axis 0 of (N+1)×H×W) is the same in both maps."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {ours.shape} compared with reference shape {reference.shape}")
    return float((ours.argmax(axis=0) == reference.argmax(axis=0)).mean())


def memory_flatness(values_mb: Sequence[float], settled_frame: int, tolerance_mb: float) -> dict[str, Any]:
    """Whether a per-frame memory curve stays flat once memory has reached its bound.

    Args:
        values_mb: memory (MB) after each frame.
        settled_frame: the first frame at which the memory stores are at their bound; the curve's maximum up to
            and including it is the reference.
        tolerance_mb: growth above the reference that still counts as flat (allocator rounding).
    Returns:
        {"flat", "first_growth_frame" (first frame after `settled_frame` above reference + tolerance, or None),
        "reference_mb", "max_mb", "settled_frame"}.
    Raises:
        ValueError: an empty curve or `settled_frame` outside it.
    """
    if not len(values_mb):
        raise ValueError("memory curve is empty")
    if not 0 <= settled_frame < len(values_mb):
        raise ValueError(f"settled_frame {settled_frame} outside the curve's {len(values_mb)} frames")
    values = np.asarray(values_mb, dtype=np.float64)
    reference = float(values[:settled_frame + 1].max())
    above = np.nonzero(values[settled_frame + 1:] > reference + tolerance_mb)[0]
    first = int(above[0]) + settled_frame + 1 if above.size else None
    return {"flat": first is None, "first_growth_frame": first, "reference_mb": round(reference, 2),
            "max_mb": round(float(values.max()), 2), "settled_frame": settled_frame}


def settled_frame(element_counts: Sequence[int], fallback_fraction: float = 0.1) -> int:
    """The first frame at which the memory element count (working + long-term) reaches its maximum over the video,
    i.e. memory is at its bound; `fallback_fraction` of the video when that is the last frame (never settled)."""
    counts = np.asarray(element_counts)
    first_at_max = int(np.argmax(counts >= counts.max()))
    if first_at_max >= len(counts) - 1:
        return min(len(counts) - 1, int(fallback_fraction * len(counts)))
    return first_at_max


def loss_is_falling(losses: Sequence[float], fraction: float = 0.25) -> dict[str, Any]:
    """Whether a loss curve is finite and its mean over the last `fraction` is below that over the first."""
    values = np.asarray(losses, dtype=np.float64)
    if values.size < 2:
        return {"finite": bool(np.isfinite(values).all()), "falling": False, "first_mean": None, "last_mean": None}
    edge = max(1, int(round(fraction * values.size)))
    first, last = float(values[:edge].mean()), float(values[-edge:].mean())
    finite = bool(np.isfinite(values).all())
    return {"finite": finite, "falling": finite and last < first, "first_mean": round(first, 5),
            "last_mean": round(last, 5)}


# ----------------------------------------------------------------------------------------------- isolated runner
@dataclasses.dataclass
class CheckResult:
    """One check's outcome: `figures` are its measured numbers, `error` says why it failed (one paragraph)."""

    name: str
    status: str
    seconds: float
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == PASS


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_isolated(name: str, command: Sequence[str], result_path: Path, timeout_s: float,
                 env: Mapping[str, str] | None = None) -> CheckResult:
    """Run one check as a child process that writes {"status", "figures", "error"?} as JSON to `result_path`.

    A child that crashes (signal, non-zero exit), writes no result or runs past `timeout_s` gives a failed result
    with the tail of its output; nothing it does can stop the caller.
    """
    result_path.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        completed = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout_s,
                                   env=None if env is None else dict(env))
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or "") + (expired.stderr or "")
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        return CheckResult(name, FAIL, round(time.perf_counter() - started, 1),
                           error=f"timed out after {timeout_s:g} s; output tail:\n{_tail(output)}")
    seconds = round(time.perf_counter() - started, 1)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        how = (f"killed by signal {-completed.returncode}" if completed.returncode < 0
               else f"exited with status {completed.returncode}")
        return CheckResult(name, FAIL, seconds, error=f"{how}; output tail:\n{_tail(output)}")
    try:
        payload = json.loads(result_path.read_text())
    except (OSError, ValueError) as error:
        return CheckResult(name, FAIL, seconds, error=f"wrote no readable result ({error}); output tail:\n"
                                                      f"{_tail(output)}")
    status = payload.get("status")
    return CheckResult(name, status if status in (PASS, FAIL) else FAIL, seconds, dict(payload.get("figures", {})),
                       payload.get("error") if status in (PASS, FAIL) else f"unknown status {status!r}")


def write_child_result(path: Path, figures: Mapping[str, Any], failures: Sequence[str]) -> None:
    """What a check's child process writes: pass unless `failures` (each one line) is non-empty."""
    payload = {"status": FAIL if failures else PASS, "figures": dict(figures)}
    if failures:
        payload["error"] = "; ".join(failures)
    atomic_write_text(path, json.dumps(payload, indent=1, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


# ----------------------------------------------------------------------------------------------- report
def table_header() -> str:
    return "".join(title.ljust(width) for title, width in TABLE_COLUMNS) + "figures"


def format_figures(figures: Mapping[str, Any], limit: int | None = None) -> str:
    """`key=value` pairs, floats to 4 significant digits (nested dicts flattened with '.')."""
    items = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, float):
            items.append(f"{prefix}={value:.4g}")
        elif isinstance(value, (list, tuple)) and len(value) > 8:
            items.append(f"{prefix}=[{len(value)} values]")
        else:
            items.append(f"{prefix}={value}")

    walk("", figures)
    return ", ".join(items[:limit] + (["…"] if limit is not None and len(items) > limit else []))


def table_row(result: CheckResult, figure_limit: int = 6) -> str:
    """One line of the table printed as the checks finish."""
    cells = (result.name, result.status.upper(), f"{result.seconds:.1f}")
    row = "".join(cell.ljust(width) for cell, (_, width) in zip(cells, TABLE_COLUMNS))
    return row + (format_figures(result.figures, figure_limit) if result.passed or result.figures else
                  (result.error or "").splitlines()[0])


def build_report(environment: Mapping[str, Any], results: Iterable[CheckResult], wall_seconds: float) -> dict:
    """The JSON report: environment, each check's result, totals."""
    results = list(results)
    return {"environment": dict(environment), "wall_seconds": round(wall_seconds, 1),
            "passed": sum(result.passed for result in results), "failed": sum(not r.passed for r in results),
            "checks": [dataclasses.asdict(result) for result in results]}


def format_markdown(report: Mapping[str, Any]) -> str:
    """The report as markdown: environment table, one summary row per check, then each check's figures."""
    lines = ["# CUDA check", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in report["environment"].items()]
    lines += ["", f"{report['passed']} passed, {report['failed']} failed; whole run {report['wall_seconds']:.1f} s",
              "", "| check | status | seconds | key figures |", "|---|---|---|---|"]
    for check in report["checks"]:
        summary = format_figures(check["figures"], 6) if check["figures"] else (check["error"] or "").splitlines()[0]
        lines.append(f"| {check['name']} | {check['status'].upper()} | {check['seconds']:.1f} | "
                     f"{summary.replace('|', '/')} |")
    for check in report["checks"]:
        lines += ["", f"## {check['name']}: {check['status'].upper()}", ""]
        lines += [f"- {item}" for item in format_figures(check["figures"]).split(", ") if item]
        if check["error"]:
            lines += ["", "```", check["error"], "```"]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write check_cuda.json and check_cuda.md into `out_dir` (atomically); returns both paths."""
    json_path, markdown_path = out_dir / REPORT_JSON, out_dir / REPORT_MARKDOWN
    atomic_write_text(json_path, json.dumps(report, indent=1, default=_json_default) + "\n")
    atomic_write_text(markdown_path, format_markdown(report))
    return json_path, markdown_path


def environment_facts() -> dict[str, Any]:
    """GPU name(s), driver / CUDA / cuDNN / torch / torchvision versions, host and Python of this machine."""
    import torch
    import torchvision

    facts: dict[str, Any] = {"host": platform.node(), "python": platform.python_version(),
                             "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
                             "cuda_runtime": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        facts["gpus"] = count
        facts["gpu"] = ", ".join(dict.fromkeys(torch.cuda.get_device_name(index) for index in range(count)))
        facts["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        facts["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    facts["driver"] = _driver_version()
    facts["visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    facts["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    return facts


def _driver_version() -> str | None:
    try:
        completed = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                   capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    versions = [line.strip() for line in completed.stdout.splitlines() if line.strip()]
    return versions[0] if versions else None


# --quick: the checks that decide correctness, sized to fit a short GPU loan (about 15 minutes in all, at most 10
# per command, start-up included). Minutes are estimates for one H100-class GPU, each with the child process's
# start (torch import, CUDA context) included.
QUICK_BUDGET_MINUTES = 5.0
QUICK_CHECKS = {  # name -> expected minutes at QUICK_SIZES
    "network": 0.4,  # float32 (TF32 off) and TF32 against the network golden
    "streaming": 0.7,  # both streaming goldens in float32 and AMP
    "eval": 1.5,  # eval.py at 480p, one 30-frame video, float32 and AMP: FPS, peak memory, J&F
    "train_step": 0.8,  # one AMP training step at 384×384, 8 frames, batch 4 (peak memory)
    "ddp": 0.8,  # NCCL torchrun, only with two GPUs or more
}
QUICK_SIZES = {"eval_videos": 1, "eval_frames": 30, "eval_variants": ["float32", "amp"], "step_iterations": 1,
               "step_warmup": 0, "ddp_iterations": 2, "timeout": 150.0}
"""Option values --quick sets (timeout: seconds per check, so that one hanging check cannot use up the loan)."""
MIN_GPUS_FOR_DDP = 2


@dataclasses.dataclass(frozen=True)
class PlannedCheck:
    """One check of the quick plan and its expected minutes on one H100-class GPU."""

    name: str
    minutes: float


def quick_plan(gpu_count: int) -> list[PlannedCheck]:
    """The checks --quick runs on a machine with `gpu_count` GPUs, in order, with their expected minutes."""
    return [PlannedCheck(name, minutes) for name, minutes in QUICK_CHECKS.items()
            if name != "ddp" or gpu_count >= MIN_GPUS_FOR_DDP]
