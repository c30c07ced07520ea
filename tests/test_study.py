"""The ablation study's pieces: its training preset, the long synthetic benchmark and (below) the study command."""
from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import ablation_rows
from configs.common import ChildRun
from configs.loader import load_config
from dataset import synthetic_plan
from model import batchnorm_calibration
from inference.frame_schedule import FrameSchedule, plan_frame
from inference.evaluation.ablation_entries import ENTRIES_FILE, AblationEntry, write_entries
from inference.evaluation.metrics import ObjectScores
from inference.miniature import miniature_memory_settings
from model.checkpoint import build_network_from_state_dict
from dataset.image_io import read_mask_ids
from inference.evaluation import study_statistics
from scripts.study import (batchnorm_drift, run_ablations, run_study, study_benchmarks, study_curve, study_prepare,
                           study_report, study_rows)
from tests.test_report_page import _check_links
from dataset.synthetic import PRESETS, SyntheticVideo, Timing, without_late_entries
from dataset.writers import ResultWriter
from inference.video_runner import MEMORY_TRACE_KEY
from dataset.synthetic_long import (
    LONG_BENCHMARK, LONG_BENCHMARK_REDUCED, LONG_TIMING, LongBenchmark, LongSyntheticVideo, absences, long_benchmark,
    longest_absences, write_long_benchmark,
)

PAPER_STAGE3 = load_config("train/recipe_03").train.stage3  # the paper's schedule (schema defaults)


def test_study_preset_resolves_with_the_papers_schedule_scaled_to_its_length():
    train = load_config("study").train
    assert train.stages == "03" and not train.imagenet_init
    for stage, paper in ((train.stage3, PAPER_STAGE3),):
        scale = stage.iterations / paper.iterations
        assert stage.start_warm == pytest.approx(paper.start_warm * scale)
        assert stage.end_warm == pytest.approx(paper.end_warm * scale)
        assert stage.finetune_iterations == pytest.approx(paper.finetune_iterations * scale)
        # the recipe's one departure in the schedule: a warm-up and a cosine to 0, not the paper's step at 80 %
        assert (stage.lr_schedule, stage.lr_steps, stage.lr_warmup) == ("cosine", (), 100)
        assert (stage.num_frames, stage.num_ref_frames) == (paper.num_frames, paper.num_ref_frames)
        assert (stage.skip_fractions, stage.skip_values) == (paper.skip_fractions, paper.skip_values)
    # a resume checkpoint at least every 50 iterations (the study's bound on lost work), never only at stage ends
    assert 0 < train.save_checkpoint_interval <= 50


def test_study_held_out_set_starts_with_the_quickstarts_held_out_videos(tmp_path):
    plan = synthetic_plan.DEFAULT_PLAN
    ours = synthetic_plan.held_out_videos(synthetic_plan.STUDY_PLAN.held_out_videos,
                                          synthetic_plan.STUDY_PLAN.held_out_video_frames, plan.height, plan.width)
    theirs = synthetic_plan.make_data(dataclasses.replace(plan, static_images_per_source=0, train_videos=0),
                                      tmp_path)  # the quickstart's own data step, reduced to its held-out videos
    listed = theirs.held_out.video_list.read_text().split()
    assert listed == list(ours)[:plan.held_out_videos] == [f"synth{i:04d}" for i in range(plan.held_out_videos)]
    for name in listed:
        written = sorted((theirs.held_out.annotations / name).glob("*.png"))
        assert len(written) == ours[name].num_frames == plan.held_out_video_frames
        assert np.array_equal(read_mask_ids(written[-1]), ours[name].frame(ours[name].num_frames - 1)[1])


def test_out_of_distribution_videos_are_hard_and_none_is_a_held_out_video():
    size = (4, 3, 48, 80)
    hard = synthetic_plan.out_of_distribution_videos(*size)
    held_out = synthetic_plan.held_out_videos(*size)
    assert list(hard) == list(held_out)  # the same names in their own folder, other videos
    hard_preset = without_late_entries(PRESETS["hard"])  # the study's held-out videos have no late entries either
    for name, video in hard.items():
        assert video.difficulty == hard_preset and held_out[name].difficulty != hard_preset
        assert not np.array_equal(video.frame(0)[0], held_out[name].frame(0)[0])
    again = synthetic_plan.out_of_distribution_videos(*size)
    assert np.array_equal(again["synth0002"].frame(2)[1], hard["synth0002"].frame(2)[1])


def test_long_benchmark_is_deterministic_by_seed():
    first, second = long_benchmark(), long_benchmark()
    assert list(first) == [f"synth{index:04d}" for index in range(LONG_BENCHMARK.num_videos)]
    for name in ("synth0000", f"synth{LONG_BENCHMARK.num_videos - 1:04d}"):
        for frame in (0, 1234, LONG_BENCHMARK.num_frames - 1):
            rgb_a, mask_a = first[name].frame(frame)
            rgb_b, mask_b = second[name].frame(frame)
            assert np.array_equal(rgb_a, rgb_b) and np.array_equal(mask_a, mask_b)
            assert rgb_a.shape == (LONG_BENCHMARK.height, LONG_BENCHMARK.width, 3)
    other_seed = long_benchmark(dataclasses.replace(LONG_BENCHMARK, seed=LONG_BENCHMARK.seed + 1))
    assert not np.array_equal(first["synth0000"].frame(0)[0], other_seed["synth0000"].frame(0)[0])


WORKING_MEMORY_SPAN_FRAMES = 50  # T_max x r: the frames a full working memory covers


@pytest.mark.parametrize("size, min_absence", [(LONG_BENCHMARK, 300), (LONG_BENCHMARK_REDUCED, 150)])
def test_every_long_video_has_an_object_that_leaves_for_longer_than_working_memory_and_comes_back(size, min_absence):
    assert min_absence >= 3 * WORKING_MEMORY_SPAN_FRAMES
    videos = long_benchmark(size)
    assert len(videos) == size.num_videos and all(video.num_frames == size.num_frames for video in videos.values())
    # judged on the ground truth of the annotated frames: last seen on one, next seen min_absence frames later
    longest = longest_absences(videos, size.annotation_every)
    assert min(longest.values()) >= min_absence, longest
    for video in videos.values():
        assert video.frame(0)[1].max() == max(video.object_ids)  # every object is on the annotated frame 0


def test_long_timing_changes_only_exits_and_drift_and_the_base_generator_keeps_its_own():
    spec = dict(seed=9, height=48, width=80, num_frames=900, difficulty=dataclasses.replace(
        PRESETS["held_out"], exit_probability=1.0, late_entry_probability=0.0))
    base, long = SyntheticVideo(**spec), LongSyntheticVideo(**spec)
    assert base.timing == Timing() and long.timing == LONG_TIMING
    assert np.array_equal(base.frame(0)[1], long.frame(0)[1])  # same scene, objects, start positions
    gap = lambda video: max(back - gone for spans in absences(video, range(0, 900, 5)).values()  # noqa: E731
                            for gone, back in spans)
    assert gap(base) < 100 <= 250 <= gap(long)


def test_write_long_benchmark_writes_sparse_ground_truth(tmp_path):
    size = LongBenchmark(num_videos=1, num_frames=25, height=32, width=48, annotation_every=10)
    write_long_benchmark(tmp_path, size)
    frames = sorted((tmp_path / "long_video" / "JPEGImages" / "synth0000").glob("*.jpg"))
    masks = sorted((tmp_path / "long_video" / "Annotations" / "synth0000").glob("*.png"))
    assert len(frames) == 25
    assert [mask.stem for mask in masks] == ["00000", "00010", "00020"]


@pytest.mark.parametrize("bad", [dict(exit_period_frames=2), dict(exit_ramp_fraction=0.5, exit_hold_fraction=0.2),
                                 dict(appearance_period_frames=(10.0, 5.0))])
def test_bad_timing_is_refused(bad):
    with pytest.raises(ValueError, match="Timing"):
        Timing(**bad)


# ------------------------------------------------------------------------------------------- the study command
def _object(sequence: str, jf: float, object_id: int = 1) -> ObjectScores:
    return ObjectScores(sequence, object_id, 10, jf, 1.0, 0.0, jf, 1.0, 0.0)


def test_bootstrap_gives_object_weighted_means_and_paired_differences():
    full = [_object("a", 0.8), _object("a", 0.6, 2), _object("b", 0.2)]
    better = [_object("a", 0.9), _object("a", 0.7, 2), _object("b", 0.3)]  # +0.1 on every object
    statistics = study_statistics.bootstrap({"full": full, "better": better}, "full", num_resamples=500)
    assert statistics["full"]["jf"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert statistics["full"]["jf_low"] < statistics["full"]["jf"] < statistics["full"]["jf_high"]
    # every resample moves both rows together, so the paired difference has no spread at all
    assert statistics["better"]["delta"] == pytest.approx(0.1)
    assert statistics["better"]["delta_low"] == pytest.approx(0.1)
    assert statistics["better"]["delta_high"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'partial' has no score for videos \\['b'\\]"):
        study_statistics.bootstrap({"full": full, "partial": full[:2]}, "full", num_resamples=10)


def test_first_frame_only_row_reads_nothing_but_the_annotated_frame():
    row = load_config(run_study.BASELINE_DIR / "first_frame_only.yaml").inference
    # the sensory memory works as trained: a network never trained with a zero sensory memory is not run with one
    assert (row.enable_long_term, row.use_sensory_memory, row.deep_update) == (False, True, "on_memory_frames")
    # judged on the schedule the inference core follows, not on the flags: only frame 0 becomes a memory frame
    schedule = FrameSchedule.from_config(row)
    counters, memory_frames = schedule.initial_counters(), []
    for index in range(40):
        actions = plan_frame(index, counters, schedule, mask_given=index == 0, has_unannotated_objects=False,
                             is_last_frame=index == 39)
        if actions.is_memory_frame:
            memory_frames.append(index)
            counters = dataclasses.replace(counters, last_memory_frame=index)
    assert memory_frames == [0]


def test_study_command_runs_end_to_end_on_a_tiny_configuration(tmp_path, recipe_checkpoint_path):
    result = run_study.main(["--model", str(recipe_checkpoint_path), "--out", str(tmp_path), "--size", "tiny",
                             "--rows", "stores_all", "stores_sensory_only", "first_frame_only", "--bootstrap", "50",
                             "eval.device=cpu"])
    table = (tmp_path / "study.md").read_text()
    for benchmark in ("held_out", "long"):
        assert f"### {benchmark}" in table
        rows = {entry["row"]: entry for entry in result["entries"] if entry["benchmark"] == benchmark}
        assert set(rows) == {"copy_first_mask", "stores_all", "stores_sensory_only", "first_frame_only"}
        for entry in rows.values():
            assert entry["jf_low"] <= entry["jf"] <= entry["jf_high"], entry
        assert rows["stores_all"]["delta"] == 0
        # first frame only has the sensory-only row's settings: it is run once and reported under both names
        assert rows["stores_sensory_only"]["status"] == "done"
        assert rows["first_frame_only"]["status"] == "done (same settings as stores_sensory_only)"
        assert rows["first_frame_only"]["jf"] == rows["stores_sensory_only"]["jf"]
        assert not (tmp_path / benchmark / "study_baselines" / "first_frame_only").exists()
    # the out-of-distribution held-out set runs the full model alone (unscoped --rows do not reach it)
    assert {entry["row"] for entry in result["entries"] if entry["benchmark"] == "hard"} == {"copy_first_mask",
                                                                                         "stores_all"}
    assert "### hard" in table
    # the long benchmark is scored on its sparse ground truth (every 5th frame; 0 is the input)
    assert all(entry["videos"] == 2 for entry in result["entries"])
    # each table's header gives the memory settings derived for its frame size and length
    assert "memory settings for 15 elements a frame, 6 frames" in table  # held_out: 48x80
    assert "memory settings for 6 elements a frame, 48 frames" in table  # long: 32x48
    resolved = (tmp_path / "long" / "ablations" / "stores_all" / "config.yaml").read_text()
    settings = miniature_memory_settings(6, 48)
    assert f"num_prototypes: {settings.num_prototypes}\n" in resolved
    assert f"max_long_term_elements: {settings.max_long_term_elements}\n" in resolved
    assert (tmp_path / "study.csv").is_file()
    assert result["plot"] == tmp_path / "study.png" and result["plot"].is_file()  # matplotlib: a dev requirement
    page = _check_links(result["page"])  # the comparison page: the plot, and every eval.py row's run page
    assert "study.png" in page.images
    assert {link for link in page.links if not link.startswith("#")} == {
        f"{benchmark}/{row}/report.html" for benchmark in ("held_out", "long")
        for row in ("ablations/stores_all", "ablations/stores_sensory_only")} | {  # first_frame_only runs as the latter
        "hard/ablations/stores_all/report.html"}
    assert sum(1 for _, name, _ in page.rows if name.startswith("synth")) == 6  # 2 videos per benchmark
    # the bootstrap's point estimate is eval.py's J&F (the same masks, the same DAVIS-mode scoring)
    for benchmark in ("held_out", "long"):
        with open(tmp_path / benchmark / "ablations" / "ablations.csv", newline="") as handle:
            evaluated = {row["row"]: float(row["jf"]) for row in csv.DictReader(handle)}
        ours = {entry["row"]: entry["jf"] for entry in result["entries"] if entry["benchmark"] == benchmark}
        assert ours["stores_all"] == pytest.approx(evaluated["stores_all"], abs=0.051)


def test_the_study_runs_run_ablations_as_a_child_and_reads_its_entries_back(tmp_path, monkeypatch):
    """run_ablations.py runs as a process of its own; a failed row comes back as an entry with its status, a run that
    wrote no entries is a one-line error naming the command and its last line, and the entries of an earlier run in
    the same folder never pass for this run's. Mutations checked: reading the entries whatever the child did (no
    unlink of the earlier file) fails the stale case; raising on a non-zero exit status alone fails the failed-row
    case."""
    failed_row = AblationEntry(row="stores_all", group="Memory stores", label="all",
                               status="failed: eval.py exited with status 1: out of memory")
    commands = []

    def child(writes: list[AblationEntry] | None, returncode: int, output: str):
        def run_child(command, **kwargs):
            commands.append(list(command))
            if writes is not None:
                write_entries(writes, tmp_path)
            return ChildRun(tuple(command), returncode, output, None)
        return run_child

    monkeypatch.setattr(run_study, "run_child", child([failed_row], 1, "error: ignored\n"))
    assert run_study.run_ablation_rows(["--rows", "stores_all"], tmp_path) == [failed_row]
    assert commands[0][1:] == [str(run_study.REPOSITORY / run_study.ABLATIONS_COMMAND), "--rows", "stores_all",
                               "--output", str(tmp_path)]
    assert (tmp_path / ENTRIES_FILE).is_file()  # the earlier run's entries, which the next run must not read
    monkeypatch.setattr(run_study, "run_child", child(None, 1, "ablation row stores_all\r50%\nerror: bad value x\n\n"))
    with pytest.raises(ChildProcessError) as raised:
        run_study.run_ablation_rows(["--rows", "stores_all"], tmp_path)
    assert str(raised.value) == (f"scripts/study/run_ablations.py (rows into {tmp_path}) exited with status 1 "
                                 "without its table: bad value x")


def test_study_rows_can_be_scoped_to_one_benchmark():
    patterns = ["stores_all", "long:long_term_*", "held_out:deep_update_never"]
    held_out, long = ({folder: sorted(rows) for folder, rows in run_study.study_rows(patterns, name).items()}
                      for name in ("held_out", "long"))
    ablations = str(ablation_rows.ABLATION_DIR)
    assert held_out == {ablations: ["deep_update_never", "stores_all"]}
    assert long == {ablations: ["long_term_full", "long_term_no_potentiation", "long_term_off",
                                "long_term_random_prototypes", "stores_all"]}
    assert run_study.study_rows(["long:long_term_off"], "held_out") == {}  # only copy-first-mask runs there
    # the out-of-distribution set: the full model, and only the rows scoped to it
    baselines = str(run_study.BASELINE_DIR)
    assert run_study.study_rows(None, "hard") == run_study.study_rows([*patterns, "first_frame_only"], "hard") == {
        ablations: ["stores_all"]}
    assert run_study.study_rows(["hard:first_frame_only"], "hard") == {ablations: ["stores_all"],
                                                                       baselines: ["first_frame_only"]}
    with pytest.raises(ValueError, match="benchmark 'short'"):
        run_study.study_rows(["short:stores_all"], "long")
    with pytest.raises(ValueError, match="matches no study row"):
        run_study.study_rows(["long:no_such_row"], "held_out")


def test_study_train_command_runs_in_the_background_on_the_chosen_threads(tmp_path):
    command = study_prepare.train_command(["--config", "study"], tmp_path / "train.log", resume=True, threads=2)
    assert "OMP_NUM_THREADS=2 " in command and command.endswith("2>&1 &")
    assert " --config study --resume >> " in command


def test_a_seed_override_draws_the_initial_network_and_reaches_the_train_command(tmp_path, monkeypatch):
    """Mutation checked: calibrating with CALIBRATION_SEED instead of train.seed fails the first assertion."""
    seeds = []

    def calibrated_initial_network(clips, path, device, *, seed, hidden_dim=0):
        seeds.append(seed)
        return path

    monkeypatch.setattr(study_prepare, "make_study_data", lambda plan, out: synthetic_plan.DataFolders.under(out))
    monkeypatch.setattr(study_prepare, "calibration_clips", lambda root, crop_size, count, seed: [])
    monkeypatch.setattr(study_prepare, "calibrated_initial_network", calibrated_initial_network)
    commands = study_prepare.main(["--out", str(tmp_path), "--threads", "1", "train.seed=7"])
    assert seeds == [7]
    assert commands["start"].endswith("train.seed=7 >> " + str(tmp_path / study_prepare.TRAIN_LOG) + " 2>&1 &")


def test_checkpoint_watcher_keeps_the_newest_resume_checkpoints_and_stops_at_the_final_snapshot(tmp_path):
    run = tmp_path / "study"
    run.mkdir()
    names = ["study_s0_checkpoint_600.pth", "study_s03_checkpoint_50.pth", "study_s03_checkpoint_100.pth",
             "study_s03_checkpoint_150.pth"]
    for age, name in enumerate(reversed(names)):  # written in list order: the last is the newest
        (run / name).write_bytes(b"")
        os.utime(run / name, (1_000_000 - age, 1_000_000 - age))
    (run / "study_s03_150.pth").write_bytes(b"")  # snapshots are never touched
    final = run / "study_s03_150.pth"
    script = tmp_path / "watch.sh"
    script.write_text(study_prepare.watcher_script(run, final))
    subprocess.run(["bash", str(script)], check=True, timeout=30, capture_output=True)
    kept = sorted(path.name for path in run.iterdir())
    assert kept == sorted(names[-study_prepare.KEEP_CHECKPOINTS:] + ["study_s03_150.pth"])


def test_batchnorm_drift_measures_both_trunks_on_the_presets_training_clips(tmp_path, capsys):
    from dataset.synthetic import make_videos
    from dataset.synthetic_layouts import write_davis
    from model.checkpoint import save_network
    from model.network import XMem

    plan = synthetic_plan.STUDY_PLAN
    videos = make_videos(4, seed=3, num_frames=8, height=plan.height, width=plan.width,
                         difficulty=without_late_entries(PRESETS["easy"]))
    write_davis(tmp_path / "train", videos, {})
    torch.manual_seed(0)
    network = XMem()  # running statistics 0 / 1, nowhere near a random trunk's activations
    save_network(network, tmp_path / "net.pth")

    drifts = batchnorm_drift.main(["--model", str(tmp_path / "net.pth"), "--train_root", str(tmp_path / "train"),
                                   "--clips", "4"])

    output = capsys.readouterr().out
    assert [drift.layer for drift in drifts] == [name for name, module in network.named_modules()
                                                 if isinstance(module, torch.nn.BatchNorm2d)]
    for trunk in batchnorm_drift.TRUNKS:
        layers = [drift for drift in drifts if drift.layer.startswith(trunk)]
        mean_shift = np.mean([drift.mean_shift for drift in layers])
        assert f"{trunk}: {len(layers)} BatchNorms, mean shift {mean_shift:.2f} σ" in output
    assert min(drift.variance_log_ratio for drift in drifts) > 0.1


def test_training_curve_places_stage_3_after_stage_0_and_marks_snapshot_scores(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "study"
    for stage, losses in (("0", [3.0, 2.0]), ("3", [1.5, 1.0, 0.5])):
        with SummaryWriter(str(run / "tensorboard" / f"stage{stage}")) as writer:
            for index, loss in enumerate(losses, start=1):
                writer.add_scalar(study_curve.LOSS_TAG, loss, index * 10)
    losses = study_curve.read_losses(run)
    assert losses == [("0", 10, 3.0), ("0", 20, 2.0), ("3", 10, 1.5), ("3", 20, 1.0), ("3", 30, 0.5)]
    rows = study_curve.curve_rows(losses, {("0", 20): 40.0, ("03", 30): 65.0})
    assert [row["global_iteration"] for row in rows] == [10, 20, 30, 40, 50]
    assert [row["held_out_jf"] for row in rows] == ["", 40.0, "", "", 65.0]
    (run / "study_s0_20.pth").write_bytes(b"")
    (run / "study_s03_30.pth").write_bytes(b"")
    (run / "study_s03_checkpoint_30.pth").write_bytes(b"")
    assert [(stages, iteration) for stages, iteration, _ in study_curve.snapshots(run)] == [("0", 20), ("03", 30)]
    study_curve.main(["--run", str(run), "--out", str(tmp_path / "curve"), "--no_eval"])
    assert (tmp_path / "curve" / "training_curve.png").is_file()
    assert len((tmp_path / "curve" / "training_curve.csv").read_text().splitlines()) == 1 + len(losses)


def test_training_curve_scores_the_first_held_out_videos_by_default_the_quickstarts_eight(tmp_path):
    from dataset.synthetic_layouts import write_davis

    held_out = synthetic_plan.DavisValRoot(tmp_path / "held_out")
    videos = synthetic_plan.held_out_videos(10, 3, 32, 48)
    write_davis(held_out.split, {}, videos)
    subset = synthetic_plan.DavisValRoot(
        study_curve.first_videos(held_out.root, synthetic_plan.QUICKSTART_HELD_OUT_VIDEOS, tmp_path / "first8"))
    assert subset.video_list.read_text().split() == list(videos)[:8]
    assert sorted(path.name for path in subset.frames.iterdir()) == list(videos)[:8]
    frames = sorted((subset.annotations / "synth0007").glob("*.png"))
    assert len(frames) == 3 and np.array_equal(read_mask_ids(frames[-1]), videos["synth0007"].frame(2)[1])
    with pytest.raises(ValueError, match=r"val.txt lists 10 videos; --videos asks for the first 11"):
        study_curve.first_videos(held_out.root, 11, tmp_path / "first11")


def test_training_curve_redoes_a_held_out_copy_that_was_cut_short(tmp_path, monkeypatch):
    from dataset.synthetic_layouts import write_davis

    held_out = synthetic_plan.DavisValRoot(tmp_path / "held_out")
    videos = synthetic_plan.held_out_videos(3, 4, 32, 48)
    write_davis(held_out.split, {}, videos)
    copytree = shutil.copytree

    def copy_one_file_then_stop(source, destination):
        if Path(source) == held_out.annotations / "synth0001":
            Path(destination).mkdir(parents=True)
            shutil.copy(sorted(Path(source).iterdir())[0], destination)
            raise OSError("disk full")
        return copytree(source, destination)

    monkeypatch.setattr(shutil, "copytree", copy_one_file_then_stop)
    with pytest.raises(OSError, match="disk full"):
        study_curve.first_videos(held_out.root, 3, tmp_path / "first3")
    monkeypatch.setattr(shutil, "copytree", copytree)
    subset = synthetic_plan.DavisValRoot(study_curve.first_videos(held_out.root, 3, tmp_path / "first3"))
    assert [len(list((subset.annotations / name).glob("*.png"))) for name in videos] == [4, 4, 4]
    assert sorted(path.name for path in subset.annotations.iterdir()) == list(videos)  # no partial copy left


def test_sweep_and_positive_control_run_end_to_end_on_a_tiny_configuration(tmp_path, recipe_checkpoint_path,
                                                                           monkeypatch):
    """The selection sweep (one share, one random seed), a positive control, the store columns and the re-entry
    columns on the tiny long benchmark (its objects are away for about 20 frames, so the returns here count from 10
    frames). Mutations checked: sweep rows without their P (the paper's 128 everywhere), and the control row without
    its bound, each fail here."""
    monkeypatch.setattr(study_benchmarks, "REENTRY_MIN_ABSENCE_FRAMES", 10)
    monkeypatch.setattr(study_benchmarks, "REENTRY_WINDOW_FRAMES", 15)
    result = run_study.main(["--model", str(recipe_checkpoint_path), "--out", str(tmp_path), "--size", "tiny",
                             "--benchmarks", "long", "--rows", "stores_all", "control_two_recent_frames", "--sweep",
                             "--sweep_shares", "0.43", "--sweep_seeds", "1", "--bootstrap", "50", "--jobs", "2",
                             "eval.device=cpu"])
    rows = {entry["row"]: entry for entry in result["entries"]}
    # --jobs reaches run_ablations.py: rows ran side by side, each writing its eval.py output to its own log
    assert len(list(tmp_path.glob(f"long/**/{run_ablations.LOG_FILE}"))) == 6
    sweep = ["sweep_keep43_usage_potentiation", "sweep_keep43_random_seed0_potentiation",
             "sweep_keep43_usage_no_potentiation", "sweep_keep43_random_seed0_no_potentiation"]
    assert set(rows) == {"copy_first_mask", "stores_all", "control_two_recent_frames", *sweep}
    for name in ["stores_all", "control_two_recent_frames", *sweep]:
        entry = rows[name]
        assert entry["status"] == "done" and entry["jf_low"] <= entry["jf"] <= entry["jf_high"], entry
        assert entry["delta_low"] <= entry["delta"] <= entry["delta_high"]
        assert entry["returns"] == 4  # the four recorded returns of the two videos
        assert entry["reentry_jf_low"] <= entry["reentry_jf"] <= entry["reentry_jf_high"]
        assert 0 <= entry["away_fp_area"] <= 100
    # the stores as configured: the controls bound them, the sweep's P = 13 of 30 candidates fills long-term memory
    assert rows["control_two_recent_frames"]["working_elements_peak"] == 2 * 6
    assert rows["control_two_recent_frames"]["long_term_elements_peak"] == 0
    assert rows["sweep_keep43_usage_potentiation"]["long_term_elements_peak"] == 13
    assert rows["stores_all"]["working_bytes_peak"] > rows["control_two_recent_frames"]["working_bytes_peak"] > 0
    # the sweep's table and plot
    (gap,) = result["sweeps"][""]
    assert (gap["share"], gap["num_prototypes"]) == (13 / 30, 13)
    assert gap["selection_gap"] == pytest.approx((rows[sweep[0]]["jf"] - rows[sweep[1]]["jf"]) / 100)
    assert gap["potentiation_gap"] == pytest.approx((rows[sweep[0]]["jf"] - rows[sweep[2]]["jf"]) / 100)
    table = (tmp_path / "study.md").read_text()
    assert "### selection sweep: long" in table and "| 43.3% | 13 |" in table
    assert "re-entry J&F" in table and "| control_two_recent_frames |" in table
    assert result["sweep_plot"] == tmp_path / "study_sweep.png" and result["sweep_plot"].is_file()
    # the full model's memory trace: working memory fills to T_max - 1 frames, consolidates on frame 45 (its tenth
    # memory frame) into long-term memory, which stays within LT_max
    with open(tmp_path / "memory_trace_long.csv", newline="") as handle:
        trace = [row for row in csv.DictReader(handle) if row["video"] == "synth0000"]
    settings = miniature_memory_settings(6, 48)
    working = {int(row["frame"]): int(row["working_elements"]) for row in trace}
    long_term = {int(row["frame"]): int(row["long_term_elements"]) for row in trace}
    assert working[0] == 6 and working[40] == 9 * 6 and working[45] == 5 * 6
    assert long_term[45] == settings.num_prototypes == max(long_term.values()) <= settings.max_long_term_elements
    assert (tmp_path / "memory_trace_long.png").is_file()


def _sums(per_video: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(per_video), np.ones(len(per_video))


def test_the_sweep_runs_with_the_first_network_only(tmp_path, recipe_checkpoint_path, monkeypatch):
    """Mutation checked: `with_sweep=args.sweep` (every network) fails here."""
    calls = []

    def record(benchmark, rows, model, root, args, with_sweep):
        calls.append((benchmark.name, model, with_sweep))
        return [], []

    monkeypatch.setattr(run_study, "_row_sources", record)
    monkeypatch.setattr(run_study, "run_benchmark", lambda *args, **kwargs: run_study.BenchmarkResult(
        [], {}, [], {}, {}))
    monkeypatch.setattr(run_study, "write_plot", lambda entries, path: None)  # no rows ran: nothing to draw
    second = tmp_path / "second.pth"
    second.write_bytes(recipe_checkpoint_path.read_bytes())
    run_study.main(["--model", str(recipe_checkpoint_path), str(second), "--out", str(tmp_path / "out"), "--size",
                    "tiny", "--benchmarks", "long", "--rows", "stores_all", "--sweep"])
    assert calls == [("long", recipe_checkpoint_path.resolve(), True), ("long", second.resolve(), False)]


def test_pooled_verdicts_need_the_same_sign_on_every_network_and_an_interval_without_zero():
    """Mutations checked: a verdict from the pooled interval alone (ignoring the per-network signs) fails the
    'mixed' row; a verdict from the signs alone fails the 'noisy' row; a zero difference counted as a sign fails
    the 'same' and 'half_same' rows."""
    full = [0.5, 0.6, 0.7, 0.4]
    networks = [
        {"full": _sums(full), "better": _sums([v + 0.1 for v in full]), "mixed": _sums([v + 0.2 for v in full]),
         "noisy": _sums([full[0] + 0.3, full[1] - 0.25, full[2] + 0.05, full[3] - 0.02]), "same": _sums(full),
         "half_same": _sums(full)},
        {"full": _sums(full), "better": _sums([v + 0.1 for v in full]), "mixed": _sums([v - 0.01 for v in full]),
         "noisy": _sums([full[0] + 0.3, full[1] - 0.25, full[2] + 0.05, full[3] - 0.02]), "same": _sums(full),
         "half_same": _sums([v + 0.1 for v in full])},
    ]
    verdicts = study_statistics.pooled_verdicts(networks, "full", num_resamples=500)
    assert set(verdicts) == {"better", "mixed", "noisy", "same", "half_same"}
    assert verdicts["same"]["verdict"] == "no difference: the same score as full on every network"
    assert verdicts["half_same"]["verdict"] == "not reproduced: the sign differs between networks"
    assert verdicts["better"]["deltas"] == pytest.approx([0.1, 0.1])
    assert verdicts["better"]["verdict"] == "reproduced: higher than full on every network"
    assert verdicts["better"]["delta_low"] == pytest.approx(0.1) == verdicts["better"]["delta_high"]
    assert verdicts["mixed"]["verdict"] == "not reproduced: the sign differs between networks"
    assert verdicts["mixed"]["delta"] == pytest.approx((0.2 - 0.01) / 2)
    assert verdicts["mixed"]["delta_low"] > 0  # the pooled interval alone would have called it reproduced
    assert verdicts["noisy"]["verdict"] == "not reproduced: the pooled interval includes 0"
    markdown = study_report.format_verdicts(verdicts, "verdicts", ["network 1", "network 2"])
    assert "| better | +10.0 | +10.0 | +10.0 | +10.0 to +10.0 | reproduced" in markdown


def test_sweep_rows_set_p_and_lt_max_from_the_share_kept():
    rows, points = study_rows.sweep_rows([0.01, 0.43], 3, elements_per_frame=60, num_frames=400)
    assert len(rows) == 2 * (1 + 3) * 2 and len({row.name for row in rows}) == len(rows)
    by_name = {row.name: row.inference for row in rows}
    assert by_name["sweep_keep1_usage_potentiation"] == dict(
        num_prototypes=3, max_long_term_elements=2 * 3, prototype_selection="usage", use_potentiation=True)
    assert by_name["sweep_keep43_random_seed2_no_potentiation"] == dict(
        num_prototypes=129, max_long_term_elements=2 * 129, prototype_selection="random", use_potentiation=False,
        seed=2)
    assert [(point.num_prototypes, point.share) for point in points] == [(3, 0.01), (129, 0.43)]
    assert points[0].rows[("random", True)] == tuple(f"sweep_keep1_random_seed{seed}_potentiation" for seed in range(3))
    for row in rows:  # every generated row is a valid config
        load_config(overrides=[f"inference.{key}={value}" for key, value in row.inference.items()])
    with pytest.raises(ValueError, match="--sweep_seeds 0"):
        study_rows.sweep_rows([0.1], 0, 60, 400)


def test_no_sensory_rows_keep_the_store_rows_settings_without_their_checkpoint(tmp_path):
    rows = {row.name: row for row in study_rows.no_sensory_rows()}
    assert set(rows) == set(study_rows.NO_SENSORY_ROWS)
    assert rows["stores_working_only"].inference == {"enable_long_term": False}
    assert rows["stores_long_term_only"].inference == {"min_working_frames": 1, "max_working_frames": 2}
    assert rows["stores_working_long_term"].inference == {}
    assert all(row.model == {"hidden_dim": 0} for row in rows.values())  # eval.py checks the checkpoint has none
    for row in rows.values():
        row.write(tmp_path)
    loaded = {row.name: row for row in ablation_rows.select_rows(None, tmp_path)}
    assert all(row.checkpoint is None for row in loaded.values())  # run with --no_sensory_model
    assert loaded["stores_working_only"].overrides == ("inference.enable_long_term=false", "model.hidden_dim=0")


def test_study_no_sensory_preset_trains_the_study_recipe_without_sensory_memory():
    study, no_sensory = load_config("study"), load_config("study_no_sensory")
    assert no_sensory.model.hidden_dim == 0 and study.model.hidden_dim > 0
    assert no_sensory.train.exp_id != study.train.exp_id
    assert study.train.stage3.readout_dropout > 0 and no_sensory.train.stage3.readout_dropout == 0
    study_without_dropout = dataclasses.replace(study.train, stage3=dataclasses.replace(
        study.train.stage3, readout_dropout=0.0, readout_dropout_iterations=0))
    same_budget = dataclasses.replace(no_sensory.train, exp_id=study.train.exp_id)
    assert same_budget == study_without_dropout  # the same data, schedule and iterations; no readout dropout


def test_the_no_sensory_network_starts_from_a_calibrated_init_without_sensory_weights(tmp_path):
    """study_prepare.py --config study_no_sensory: its initial network has no hidden-state updaters (so train.py
    with model.hidden_dim 0 loads it), and the printed command trains that preset."""
    plan = dataclasses.replace(synthetic_plan.DEFAULT_PLAN, preset=study_prepare.NO_SENSORY_PRESET, height=32,
                               width=48, static_images_per_source=4, train_videos=0, held_out_videos=0,
                               calibration_clips=2)
    folders = synthetic_plan.make_data(plan, tmp_path)
    clips = synthetic_plan.calibration_clips(folders.static_root, 32, plan.calibration_clips)
    path = batchnorm_calibration.calibrated_initial_network(clips, tmp_path / "init.pth", torch.device("cpu"),
                                                            seed=synthetic_plan.CALIBRATION_SEED,
                                                            hidden_dim=load_config(plan.preset).model.hidden_dim)
    network = build_network_from_state_dict(torch.load(path, weights_only=True))
    assert network.hidden_dim == 0
    arguments = study_prepare.train_arguments(folders, path, tmp_path / "saves", [], study_prepare.NO_SENSORY_PRESET)
    assert arguments[:2] == ["--config", "study_no_sensory"]


def test_statistics_module_docstring_example_runs():
    import doctest

    results = doctest.testmod(study_statistics, extraglobs={"np": np})
    assert results.attempted > 0 and results.failed == 0


def test_rows_that_conflict_with_the_miniature_budgets_are_left_out_with_a_note():
    notes: list[str] = []
    overrides = miniature_memory_settings(60, 400).overrides()  # P 5, LT_max 10
    rows = run_study.runnable_rows(run_study.study_rows(["sizes_num_prototypes_*", "stores_all"], "long"),
                                   overrides, notes, "long")
    assert rows == {str(ablation_rows.ABLATION_DIR): ["stores_all"]}
    assert len(notes) == 2 and "sizes_num_prototypes_256 left out" in notes[0] and "got 256 and 10" in notes[0]
    paper = run_study.runnable_rows(run_study.study_rows(["sizes_num_prototypes_*"], "long"), [], [], "long")
    assert sorted(paper[str(ablation_rows.ABLATION_DIR)]) == ["sizes_num_prototypes_256",
                                                                       "sizes_num_prototypes_64"]


NO_SENSORY_PREFIXES = ("decoder.hidden_update.", "value_encoder.hidden_reinforce.")
DECODER_FUSER_INPUTS_WITHOUT_HIDDEN = 1024 + 512  # [f16 | readout]; the hidden channels come last


def test_no_sensory_rows_run_once_beside_every_main_networks_rows(tmp_path, recipe_state_dict, recipe_checkpoint_path):
    """--no_sensory_model: the paper's store rows run with a network without sensory memory, in every main network's
    table, but evaluated once (a random-weight stand-in: the recipe weights without the hidden-state updaters).
    Mutation checked: the no-sensory outputs under each network's folder evaluate them again for network 2."""
    from model.checkpoint import save_network

    weights = {key: tensor for key, tensor in recipe_state_dict.items() if not key.startswith(NO_SENSORY_PREFIXES)}
    for key in ("decoder.fuser.block1.conv1.weight", "decoder.fuser.block1.downsample.weight"):
        weights[key] = weights[key][:, :DECODER_FUSER_INPUTS_WITHOUT_HIDDEN]
    no_sensory = tmp_path / "no_sensory.pth"
    save_network(build_network_from_state_dict(weights), no_sensory)
    second = tmp_path / "second.pth"
    second.write_bytes(recipe_checkpoint_path.read_bytes())
    result = run_study.main(["--model", str(recipe_checkpoint_path), str(second), "--no_sensory_model",
                             str(no_sensory), "--out", str(tmp_path / "study"), "--size", "tiny", "--benchmarks",
                             "held_out", "--rows", "stores_all", "--bootstrap", "20", "eval.device=cpu"])
    for network, status in (("network 1", "done"), ("network 2", "done (earlier run)")):
        rows = {entry["row"]: entry for entry in result["entries"] if entry["network"] == network}
        assert set(rows) == {"copy_first_mask", "stores_all", *study_rows.NO_SENSORY_ROWS}
        for name in study_rows.NO_SENSORY_ROWS:
            assert rows[name]["status"] == status and "retrained without sensory memory" in rows[name]["label"]
            assert rows[name]["delta_low"] <= rows[name]["delta"] <= rows[name]["delta_high"]
    assert any("one retrained network's" in note for note in result["notes"])  # pooled over main seeds only
    resolved = (tmp_path / "study" / "held_out" / "no_sensory" / "stores_working_only" / "config.yaml").read_text()
    assert str(no_sensory) in resolved and "hidden_dim: 0" in resolved


def test_memory_traces_read_the_trace_columns_by_name(tmp_path):
    """Mutation checked: reading the first three columns by position (`row[:3]`) fails on this reordered record."""
    writer = ResultWriter(tmp_path, "davis")
    writer.finish_video("reordered", {MEMORY_TRACE_KEY: {
        "columns": ["working_elements", "frame", "consolidations", "long_term_elements"],
        "rows": [[10, 0, 0, 0], [20, 5, 1, 8]]}})
    writer.finish_video("no_trace", {})
    traces = run_study.memory_traces(tmp_path, ["reordered", "no_trace", "unfinished"])
    assert traces == {"reordered": [[0, 10, 0], [5, 20, 8]]}
