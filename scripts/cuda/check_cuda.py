"""Whether this codebase works on this machine's CUDA GPUs, and how fast: one command, about 10 minutes on one H100.

    python scripts/cuda/check_cuda.py                          # every check, report in ./check_cuda_out
    python scripts/cuda/check_cuda.py --quick                  # the correctness checks only, about 5 minutes
    python scripts/cuda/check_cuda.py --model saves/quickstart_s03_300.pth --checks network eval

--quick fits a short GPU loan: the network and streaming goldens in float32 and AMP, eval.py at 480p in float32
and AMP (FPS, peak memory), one AMP training step, and NCCL torchrun when there are two GPUs or more, at small
sizes (sizes given on the command line win) with a shorter per-check timeout.

Each check runs in its own process (a crash or a timeout fails that check and the next one still runs); a table
row is printed as each finishes, and check_cuda.json + check_cuda.md (GPU, driver, CUDA, cuDNN, torch versions and
every figure) are written into --out. Exit status: 0 all passed, 1 a check failed, 2 no CUDA device here (this is
never a silently passing test).
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from configs.common import run_cli
from scripts.cuda.check_cuda_checks import CHECKS, EVAL_VARIANTS, ddp_worker, run_check
from scripts.cuda.check_cuda_core import (QUICK_BUDGET_MINUTES, QUICK_SIZES, build_report, environment_facts,
                                          quick_plan, run_isolated, table_header, table_row, write_child_result,
                                          write_report)

DEFAULT_OUT = Path("check_cuda_out")
DEFAULT_TIMEOUT_S = 900
SCRIPT = Path(__file__).resolve()
def build_parser() -> argparse.ArgumentParser:
    epilog = "checks (expected minutes on one H100 at the default sizes):\n" + "\n".join(
        f"  {name} (~{minutes:.1f} min): {' '.join(function.__doc__.split())}"
        for name, (function, minutes) in CHECKS.items())
    parser = argparse.ArgumentParser(description=__doc__, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the report and work files")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--checks", nargs="+", choices=list(CHECKS), default=list(CHECKS), metavar="CHECK",
                       help="checks to run, from the list below (default: all)")
    which.add_argument("--quick", action="store_true",
                       help=f"only the correctness checks, at small sizes, within about {QUICK_BUDGET_MINUTES:g} "
                            f"minutes on one H100")
    parser.add_argument("--model", type=Path, default=None,
                        help="checkpoint for eval and long_video (default: the recipe checkpoint of "
                             "tests/fixtures/README.md; random-like weights, so J&F is not meaningful)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds allowed per check")
    sizes = parser.add_argument_group("sizes")
    sizes.add_argument("--eval-videos", type=int, default=2, help="synthetic 480p videos for eval")
    sizes.add_argument("--eval-frames", type=int, default=30, help="frames per eval video")
    sizes.add_argument("--eval-variants", nargs="+", choices=list(EVAL_VARIANTS), default=list(EVAL_VARIANTS),
                       metavar="VARIANT", help=f"eval.py variants ({', '.join(EVAL_VARIANTS)})")
    sizes.add_argument("--long-frames", type=int, default=2000, help="frames of the long video (e.g. 5000)")
    sizes.add_argument("--train-iterations", type=int, default=300, help="stage-3 iterations of the quickstart run")
    sizes.add_argument("--step-batch", type=int, default=4, help="first batch size tried by train_step")
    sizes.add_argument("--step-iterations", type=int, default=3, help="timed iterations of train_step")
    sizes.add_argument("--step-warmup", type=int, default=2, help="untimed iterations of train_step first")
    sizes.add_argument("--resume-iterations", type=int, default=20,
                       help="N: the straight run trains 2N iterations, the resumed one stops after N")
    sizes.add_argument("--ddp-iterations", type=int, default=5, help="training steps under torchrun")
    parser.add_argument("--worker", choices=list(CHECKS), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-worker", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def _cuda_available() -> bool:
    import torch

    with warnings.catch_warnings():  # an absent driver warns; the one error line below says it all
        warnings.simplefilter("ignore")
        return torch.cuda.is_available()


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def apply_quick(arguments: argparse.Namespace, gpu_count: int) -> None:
    """With --quick: the quick plan's checks, and its sizes wherever the command line left the default."""
    if not arguments.quick:
        return
    arguments.checks = [check.name for check in quick_plan(gpu_count)]
    defaults = build_parser()
    for name, value in QUICK_SIZES.items():
        if getattr(arguments, name) == defaults.get_default(name):
            setattr(arguments, name, value)


def _validate(arguments: argparse.Namespace) -> None:
    for name in ("eval_videos", "eval_frames", "long_frames", "train_iterations", "step_batch", "step_iterations",
                 "resume_iterations", "ddp_iterations"):
        if getattr(arguments, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(arguments, name)} is invalid; expected >= 1")
    if arguments.step_warmup < 0:
        raise ValueError(f"--step-warmup {arguments.step_warmup} is invalid; expected >= 0")
    if arguments.model is not None and not arguments.model.is_file():
        raise FileNotFoundError(f"--model {arguments.model}: no such file; give a checkpoint or leave it out")


def _worker(arguments: argparse.Namespace) -> int:
    """Child process: run one check and write its result file (a crash leaves none: the parent reports it)."""
    figures, failures = run_check(arguments.worker, arguments, arguments.out / "work" / arguments.worker)
    write_child_result(arguments.result, figures, failures)
    return 0


def main(argv: Sequence[str]) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.ddp_worker is not None:
        ddp_worker(arguments.ddp_worker, arguments.ddp_iterations)
        return 0
    if not _cuda_available():
        print("error: no CUDA device is available (torch.cuda.is_available() is False): run scripts/cuda/check_cuda.py "
              "on a machine with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    _validate(arguments)
    apply_quick(arguments, _gpu_count())
    arguments.out = arguments.out.resolve()
    if arguments.model is not None:
        arguments.model = arguments.model.resolve()
    if arguments.worker is not None:
        return _worker(arguments)
    started = time.perf_counter()
    environment = environment_facts()
    print(f"GPU: {environment.get('gpu')} x{environment.get('gpus')}; driver {environment['driver']}, CUDA "
          f"{environment['cuda_runtime']}, cuDNN {environment['cudnn']}, torch {environment['torch']}")
    if arguments.quick:
        plan = ", ".join(f"{check.name} (~{check.minutes:g} min)" for check in quick_plan(_gpu_count()))
        print(f"quick plan: {plan}", flush=True)
    print(table_header(), flush=True)
    forwarded = [*argv, "--out", str(arguments.out)] + ([] if arguments.model is None else
                                                        ["--model", str(arguments.model)])
    results = []
    for name in tqdm(arguments.checks, desc="checks", unit="check", leave=False):
        result_path = arguments.out / "work" / f"{name}.result.json"
        result_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(SCRIPT), *forwarded, "--worker", name, "--result", str(result_path)]
        result = run_isolated(name, command, result_path, arguments.timeout)
        results.append(result)
        tqdm.write(table_row(result))
    report = build_report(environment, results, time.perf_counter() - started)
    json_path, markdown_path = write_report(report, arguments.out)
    print(f"{report['passed']} passed, {report['failed']} failed in {report['wall_seconds']:.0f} s; report: "
          f"{json_path}, {markdown_path}")
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
