"""The ablation study's pieces: its training preset, the long synthetic benchmark and (below) the study command."""
from __future__ import annotations

import csv
import dataclasses
import os
import subprocess

import numpy as np
import pytest

from configs.loader import load_config
from inference.frame_schedule import FrameSchedule, plan_frame
from inference.metrics import ObjectScores
from dataset.image_io import read_mask_ids
from scripts import quickstart, run_study, study_curve, study_prepare
from dataset.synthetic import PRESETS, SyntheticVideo, Timing
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
        assert [step / scale for step in stage.lr_steps] == pytest.approx(list(paper.lr_steps))
        assert (stage.num_frames, stage.num_ref_frames) == (paper.num_frames, paper.num_ref_frames)
        assert (stage.skip_fractions, stage.skip_values) == (paper.skip_fractions, paper.skip_values)
    # a resume checkpoint at least every 50 iterations (the study's bound on lost work), never only at stage ends
    assert 0 < train.save_checkpoint_interval <= 50


def test_study_held_out_set_starts_with_the_quickstarts_held_out_videos(tmp_path):
    plan = quickstart.DEFAULT_PLAN
    ours = study_prepare.held_out_videos(study_prepare.STUDY_PLAN.held_out_videos,
                                         study_prepare.STUDY_PLAN.held_out_video_frames, plan.height, plan.width)
    theirs = quickstart.make_data(dataclasses.replace(plan, static_images_per_source=0, train_videos=0),
                                  tmp_path)  # the quickstart's own data step, reduced to its held-out videos
    listed = theirs.held_out_list.read_text().split()
    assert listed == list(ours)[:plan.held_out_videos] == [f"synth{i:04d}" for i in range(plan.held_out_videos)]
    for name in listed:
        written = sorted((theirs.held_out_annotations / name).glob("*.png"))
        assert len(written) == ours[name].num_frames == plan.held_out_video_frames
        assert np.array_equal(read_mask_ids(written[-1]), ours[name].frame(ours[name].num_frames - 1)[1])


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
    statistics = run_study.bootstrap({"full": full, "better": better}, "full", num_resamples=500)
    assert statistics["full"]["jf"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert statistics["full"]["jf_low"] < statistics["full"]["jf"] < statistics["full"]["jf_high"]
    # every resample moves both rows together, so the paired difference has no spread at all
    assert statistics["better"]["delta"] == pytest.approx(0.1)
    assert statistics["better"]["delta_low"] == pytest.approx(0.1)
    assert statistics["better"]["delta_high"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="'partial' has no score for videos \\['b'\\]"):
        run_study.bootstrap({"full": full, "partial": full[:2]}, "full", num_resamples=10)


def test_first_frame_only_row_reads_nothing_but_the_annotated_frame():
    row = load_config(run_study.BASELINE_DIR / "first_frame_only.yaml").inference
    assert (row.enable_long_term, row.use_sensory_memory) == (False, False)
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
                             "--rows", "stores_all", "first_frame_only", "--bootstrap", "50", "eval.device=cpu"])
    table = (tmp_path / "study.md").read_text()
    for benchmark in ("held_out", "long"):
        assert f"### {benchmark}" in table
        rows = {entry["row"]: entry for entry in result["entries"] if entry["benchmark"] == benchmark}
        assert set(rows) == {"copy_first_mask", "stores_all", "first_frame_only"}
        for entry in rows.values():
            assert entry["jf_low"] <= entry["jf"] <= entry["jf_high"], entry
        assert rows["stores_all"]["delta"] == 0
        assert rows["first_frame_only"]["status"] == "done"
    # the long benchmark is scored on its sparse ground truth: frames 4 and 8 (0 is the input, the last is excluded)
    assert all(entry["videos"] == 2 for entry in result["entries"])
    assert (tmp_path / "study.csv").is_file()
    assert result["plot"] == tmp_path / "study.png" and result["plot"].is_file()  # matplotlib: a dev requirement
    # the bootstrap's point estimate is eval.py's J&F (the same masks, the same DAVIS-mode scoring)
    for benchmark in ("held_out", "long"):
        with open(tmp_path / benchmark / "ablations" / "ablations.csv", newline="") as handle:
            evaluated = {row["row"]: float(row["jf"]) for row in csv.DictReader(handle)}
        ours = {entry["row"]: entry["jf"] for entry in result["entries"] if entry["benchmark"] == benchmark}
        assert ours["stores_all"] == pytest.approx(evaluated["stores_all"], abs=0.051)


def test_study_rows_can_be_scoped_to_one_benchmark():
    patterns = ["stores_all", "long:long_term_*", "held_out:deep_update_never"]
    held_out, long = ({folder: sorted(rows) for folder, rows in run_study.study_rows(patterns, name).items()}
                      for name in ("held_out", "long"))
    ablations = str(run_study.run_ablations.ABLATION_DIR)
    assert held_out == {ablations: ["deep_update_never", "stores_all"]}
    assert long == {ablations: ["long_term_full", "long_term_no_potentiation", "long_term_off",
                                "long_term_random_prototypes", "stores_all"]}
    assert run_study.study_rows(["long:long_term_off"], "held_out") == {}  # only copy-first-mask runs there
    with pytest.raises(ValueError, match="benchmark 'short'"):
        run_study.study_rows(["short:stores_all"], "long")
    with pytest.raises(ValueError, match="matches no study row"):
        run_study.study_rows(["long:no_such_row"], "held_out")


def test_study_train_command_runs_in_the_background_on_the_chosen_threads(tmp_path):
    command = study_prepare.train_command(["--config", "study"], tmp_path / "train.log", resume=True, threads=2)
    assert "OMP_NUM_THREADS=2 " in command and command.endswith("2>&1 &")
    assert " --config study --resume >> " in command


def test_a_seed_override_draws_the_initial_network_and_reaches_the_train_command(tmp_path, monkeypatch):
    """Mutation checked: calibrating with the default seed (no `seed=` argument) fails the first assertion."""
    seeds = []

    def calibrated_initial_network(plan, folders, crop_size, path, device, seed=quickstart.CALIBRATION_SEED):
        seeds.append(seed)
        return path

    monkeypatch.setattr(study_prepare, "make_study_data", lambda plan, out: quickstart.DataFolders(
        out / "static", out / "train", out / "held_out"))
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
