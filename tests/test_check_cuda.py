"""scripts/cuda/check_cuda.py without a GPU: comparison maths, report assembly, the exit-2 path, subprocess isolation,
the --quick plan and its eval sizes."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.evaluation.run_summary import SUMMARY_FILE
from scripts.cuda.check_cuda_core import (FAIL, PASS, CheckResult, argmax_agreement, build_report, format_markdown,
                                          loss_is_falling, max_abs_difference, memory_flatness, relative_error,
                                          run_isolated, settled_frame, table_row, write_child_result, write_report)
from tests.test_run_summary import _summary as run_summary

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- maths
def test_relative_error_is_max_difference_over_max_reference():
    reference = np.array([[1.0, -4.0], [2.0, 0.0]])
    ours = reference + np.array([[0.0, 0.002], [-0.001, 0.0]])
    assert relative_error(ours, reference) == pytest.approx(0.002 / 4.0)
    assert relative_error(reference, reference) == 0.0
    assert relative_error(np.ones(2), np.zeros(2)) == math.inf
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros(3), np.zeros(4))


def test_max_abs_difference_and_non_finite_values():
    reference = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert max_abs_difference(reference + np.array([[0.0, 0.03], [-0.05, 0.0]]), reference) == pytest.approx(0.05)
    assert max_abs_difference(np.array([[np.nan, 0.1], [0.2, 0.8]]), reference) == math.inf


def test_argmax_agreement_counts_pixels_with_the_same_winner():
    reference = np.zeros((3, 2, 2))
    reference[1] = 1.0  # object 1 wins everywhere
    ours = reference.copy()
    ours[2, 0, 0] = 2.0  # object 2 wins one pixel of four
    assert argmax_agreement(ours, reference) == 0.75
    assert argmax_agreement(reference, reference) == 1.0


def test_memory_flatness_finds_the_first_growth_after_memory_is_bound():
    curve = [100, 150, 200, 200, 201, 200, 200, 260, 200]
    flat_until_7 = memory_flatness(curve, settled_frame=2, tolerance_mb=5)
    assert flat_until_7 == {"flat": False, "first_growth_frame": 7, "reference_mb": 200.0, "max_mb": 260.0,
                            "settled_frame": 2}
    assert memory_flatness(curve[:7], settled_frame=2, tolerance_mb=5)["flat"]
    assert memory_flatness(curve, settled_frame=2, tolerance_mb=100)["first_growth_frame"] is None
    with pytest.raises(ValueError, match="outside"):
        memory_flatness(curve, settled_frame=9, tolerance_mb=1)


def test_settled_frame_is_where_the_element_count_reaches_its_bound():
    assert settled_frame([60, 120, 180, 240, 240, 180, 240]) == 3
    assert settled_frame(list(range(100))) == 10  # still growing at the end: fall back to a tenth of the video


def test_loss_is_falling_compares_the_first_and_last_quarters():
    assert loss_is_falling([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]) == {
        "finite": True, "falling": True, "first_mean": 0.95, "last_mean": 0.35}
    assert not loss_is_falling([0.5, 0.5, 0.6, 0.7])["falling"]
    assert loss_is_falling([1.0, float("nan"), 0.1, 0.1]) == {"finite": False, "falling": False, "first_mean": 1.0,
                                                              "last_mean": 0.1}


# ----------------------------------------------------------------------------------------------- report
def _fake_results() -> list[CheckResult]:
    return [CheckResult("network", PASS, 3.25, {"float32_worst_relative_error": 6.61e-6, "worst": "f16"}),
            CheckResult("eval", FAIL, 40.0, {"amp": {"fps": 31.5, "peak_cuda_mb": 2048.0}},
                        error="J&F of AMP differs from float32 by 0.0300 > 0.02"),
            CheckResult("ddp", FAIL, 1.0, error="exited with status 1; output tail:\nNCCL error")]


def test_report_json_and_markdown_hold_environment_and_every_figure(tmp_path):
    environment = {"gpu": "FAKE GPU", "driver": "550.1", "cuda_runtime": "12.4", "cudnn": 90100, "torch": "2.4.0"}
    report = build_report(environment, _fake_results(), wall_seconds=612.34)
    assert (report["passed"], report["failed"], report["wall_seconds"]) == (1, 2, 612.3)
    json_path, markdown_path = write_report(report, tmp_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["environment"]["gpu"] == "FAKE GPU"
    assert loaded["checks"][1]["figures"]["amp"]["fps"] == 31.5
    assert loaded["checks"][2]["error"].startswith("exited with status 1")
    markdown = markdown_path.read_text()
    assert markdown == format_markdown(report)
    assert "| gpu | FAKE GPU |" in markdown and "| cudnn | 90100 |" in markdown
    assert "| network | PASS | 3.2 | float32_worst_relative_error=6.61e-06, worst=f16 |" in markdown
    assert "| ddp | FAIL | 1.0 | exited with status 1; output tail: |" in markdown
    assert "- amp.peak_cuda_mb=2048" in markdown and "NCCL error" in markdown
    assert "1 passed, 2 failed; whole run 612.3 s" in markdown


def test_table_row_shows_figures_or_the_first_error_line():
    passed, _, crashed = _fake_results()
    assert table_row(passed).split() == ["network", "PASS", "3.2", "float32_worst_relative_error=6.61e-06,",
                                         "worst=f16"]
    assert table_row(crashed).endswith("exited with status 1; output tail:")


# ----------------------------------------------------------------------------------------------- isolation
def _fake_check(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_crashing_or_hanging_check_fails_and_the_next_one_still_runs(tmp_path):
    result_path = tmp_path / "result.json"
    good = ("import sys; from pathlib import Path; from scripts.cuda.check_cuda_core import write_child_result; "
            "write_child_result(Path(sys.argv[1]), {'value': 1.5}, [])")
    checks = [("crash", _fake_check("import os; print('about to crash', flush=True); os.abort()")),
              ("raises", _fake_check("raise RuntimeError('boom')")),
              ("hangs", _fake_check("import time; time.sleep(60)")),
              ("silent", _fake_check("pass")),
              ("good", _fake_check(good) + [str(result_path)])]
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    # The hanging check gets 5 s; the others have time to import torch on a loaded machine.
    results = [run_isolated(name, command, result_path, timeout_s=5 if name == "hangs" else 300, env=environment)
               for name, command in checks]
    assert [result.status for result in results] == [FAIL, FAIL, FAIL, FAIL, PASS]
    assert results[0].error.startswith("killed by signal") and "about to crash" in results[0].error
    assert results[1].error.startswith("exited with status 1") and "RuntimeError: boom" in results[1].error
    assert results[2].error.startswith("timed out after 5 s")
    assert results[3].error.startswith("wrote no readable result")
    assert results[4].figures == {"value": 1.5} and results[4].error is None


def test_a_child_that_reports_failures_is_a_failed_check(tmp_path):
    result_path = tmp_path / "result.json"
    write_child_result(result_path, {"max_abs_dprob": np.float32(0.5)}, ["too far", "sizes differ"])
    result = run_isolated("fake", _fake_check("pass"), tmp_path / "other.json", timeout_s=30)
    assert result.status == FAIL  # no result file for this one
    payload = json.loads(result_path.read_text())
    assert payload == {"status": FAIL, "figures": {"max_abs_dprob": 0.5}, "error": "too far; sizes differ"}


# ----------------------------------------------------------------------------------------------- --quick
def test_the_quick_plan_runs_the_correctness_checks_within_the_budget():
    """Mutations checked: dropping a required check from QUICK_CHECKS, raising an estimate past the budget, or
    planning ddp on one GPU each fail here."""
    from scripts.cuda.check_cuda_checks import CHECKS, EVAL_SIZE
    from scripts.cuda.check_cuda_core import QUICK_BUDGET_MINUTES, quick_plan

    one_gpu, two_gpus = quick_plan(1), quick_plan(2)
    assert [check.name for check in one_gpu] == ["network", "streaming", "eval", "train_step"]
    assert [check.name for check in two_gpus] == ["network", "streaming", "eval", "train_step", "ddp"]
    for plan in (one_gpu, two_gpus):
        assert all(check.name in CHECKS and check.minutes > 0 for check in plan)
        assert sum(check.minutes for check in plan) <= QUICK_BUDGET_MINUTES
    assert EVAL_SIZE == (480, 854)  # eval.py at DAVIS 480p


def test_quick_sets_small_sizes_float32_and_amp_but_keeps_what_the_command_line_gives():
    from scripts.cuda.check_cuda import apply_quick, build_parser
    from scripts.cuda.check_cuda_core import QUICK_SIZES

    arguments = build_parser().parse_args(["--quick", "--eval-frames", "12"])
    apply_quick(arguments, gpu_count=1)
    assert arguments.checks == ["network", "streaming", "eval", "train_step"]
    assert arguments.eval_variants == ["float32", "amp"]  # eval.py in float32 and AMP
    assert (arguments.step_iterations, arguments.step_warmup) == (1, 0)  # one AMP training step
    assert arguments.eval_videos == QUICK_SIZES["eval_videos"] and arguments.timeout == QUICK_SIZES["timeout"]
    assert arguments.eval_frames == 12  # given on the command line: kept
    full = build_parser().parse_args([])
    apply_quick(full, gpu_count=1)
    assert full.checks == list(build_parser().get_default("checks")) and full.eval_variants == [
        "float32", "amp", "channels_last", "compile"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--quick", "--checks", "eval"])


# ----------------------------------------------------------------------------------------------- exit 2
@pytest.mark.parametrize("extra", [[], ["--quick"]], ids=["full", "quick"])
def test_without_cuda_it_exits_2_with_one_line(tmp_path, extra):
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(ROOT))
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "cuda" / "check_cuda.py"), "--out",
                                str(tmp_path), *extra], capture_output=True, text=True, env=environment, timeout=300)
    assert completed.returncode == 2
    assert completed.stdout == ""
    lines = completed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CUDA device is available")
    assert "Traceback" not in completed.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written: no report that could pass for a run


def test_help_states_minutes_for_every_check():
    from scripts.cuda.check_cuda import build_parser
    from scripts.cuda.check_cuda_checks import CHECKS

    text = build_parser().format_help()
    for name in CHECKS:
        assert f"  {name} (~" in text


def test_quick_eval_runs_eval_py_at_480p_in_float32_and_amp_and_reports_fps_and_memory(tmp_path, monkeypatch):
    """check_eval with the quick sizes, eval.py replaced by a recorder: one float32 and one AMP run on a 480p DAVIS
    set, each reporting FPS and peak memory. Mutation checked: check_eval ignoring --eval-variants (all four
    variants) fails."""
    from scripts.cuda import check_cuda_checks

    commands = []

    def fake_eval(command, env_extra=None, cwd=None):
        commands.append(command)
        output = Path(next(item.split("=", 1)[1] for item in command if item.startswith("eval.output=")))
        output.mkdir(parents=True)
        amp = "inference.use_amp=on" in command
        run_summary(output, fps=20.0 if amp else 10.0, peak_memory_mb=900.0,
                    scores={"J&F-Mean": 0.5}).write(output / SUMMARY_FILE)
        return ""

    monkeypatch.setattr(check_cuda_checks, "_run", fake_eval)
    model = tmp_path / "model.pth"
    model.write_bytes(b"not read by the fake")
    options = argparse.Namespace(eval_videos=1, eval_frames=2, eval_variants=["float32", "amp"], model=model)
    figures, failures = check_cuda_checks.check_eval(options, tmp_path / "work")
    assert failures == []
    assert [[item for item in command if item.startswith("inference.")] for command in commands] == [
        ["inference.use_amp=off"], ["inference.use_amp=on"]]
    assert figures["float32"] == {"fps": 10.0, "peak_cuda_mb": 900.0, "J&F": 0.5} and figures["amp"]["fps"] == 20.0
    first_frame = next((tmp_path / "work" / "davis" / "trainval" / "JPEGImages" / "480p").rglob("00000.jpg"))
    assert Image.open(first_frame).size == (854, 480)
