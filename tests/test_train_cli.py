"""train.py end to end on generator data: two tiny stages (0 then 3), snapshots, sidecars, TensorBoard, printed
paths; and the error contract: bad data fails with one `error:` line before anything is written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from configs import load_config
from configs.common import run_cli
from dataset.static_dataset import REFERENCE_STATIC_SOURCES
from dataset.synthetic import get_preset, make_videos, without_late_entries
from dataset.synthetic_layouts import make_static_classes, write_davis, write_static_flat, write_static_fss
from dataset.synthetic_layouts import write_youtube_train
from dataset.training_data import phase_schedule
from model.checkpoint import load_network

FRAME_HEIGHT, FRAME_WIDTH = 72, 96
CROP = 64
YOUTUBE_FRAMES = 20  # YouTube-VOS keeps every 5th frame: 4 frames per video


def _write_training_data(root: Path) -> dict[str, Path]:
    """Static image sources (every folder of the reference mix), DAVIS 2017 train and YouTube-VOS train."""
    easy = without_late_entries(get_preset("easy"))
    static_root = root / "static"
    for index, (folder, layout, _) in enumerate(REFERENCE_STATIC_SOURCES):
        if layout == "class_folders":
            write_static_fss(static_root / folder, make_static_classes(1, 2, seed=index, height=FRAME_HEIGHT,
                                                                       width=FRAME_WIDTH, difficulty=easy))
        else:
            images = make_videos(2, seed=index, num_frames=1, height=FRAME_HEIGHT, width=FRAME_WIDTH,
                                 difficulty=easy)
            write_static_flat(static_root / folder, images)
    davis_root = root / "DAVIS"
    write_davis(davis_root, make_videos(2, seed=10, num_frames=6, height=FRAME_HEIGHT, width=FRAME_WIDTH,
                                        difficulty=easy), {})
    youtube_root = root / "YouTube"
    write_youtube_train(youtube_root, make_videos(2, seed=11, num_frames=YOUTUBE_FRAMES, height=FRAME_HEIGHT,
                                                  width=FRAME_WIDTH, difficulty=easy, first_index=2))
    return {"static": static_root, "davis": davis_root, "youtube": youtube_root}


def _scalar_tags(log_dir: Path) -> set[str]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return set(events.Tags()["scalars"]) | {f"image:{tag}" for tag in events.Tags()["images"]}


REPOSITORY = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 300


def test_two_tiny_stages_end_to_end(tmp_path, capsys):
    roots = _write_training_data(tmp_path / "data")
    overrides = [
        "train.stages=03", "train.imagenet_init=false", "train.device=cpu", f"train.save_dir={tmp_path / 'saves'}",
        "train.exp_id=tiny", "train.log_text_interval=1", "train.log_image_interval=2",
        "train.save_network_interval=0", "train.save_checkpoint_interval=0",
        f"train.data.static_root={roots['static']}", f"train.data.davis_root={roots['davis']}",
        f"train.data.yv_root={roots['youtube']}", f"train.data.crop_size={CROP}", "train.data.num_workers=2",
        "train.stage0.batch_size=2", "train.stage0.iterations=2",
        "train.stage3.batch_size=2", "train.stage3.iterations=2", "train.stage3.finetune_iterations=1",
        "train.stage3.num_frames=3", "train.stage3.num_ref_frames=2", "train.stage3.lr_steps=[2]",
    ]
    train.main(overrides)

    run = tmp_path / "saves" / "tiny"
    printed = capsys.readouterr().out
    for label, name in (("final network snapshot", "tiny_s03_3.pth"), ("resume checkpoint",
                                                                        "tiny_s03_checkpoint_3.pth")):
        size_mb = (run / name).stat().st_size / 1e6
        assert f"{label}: {run / name} ({size_mb:.1f} MB)" in printed
    stage0, stage3 = run / "tiny_s0_2.pth", run / "tiny_s03_3.pth"
    assert stage0.is_file() and stage3.is_file()
    assert (run / "tiny_s0_checkpoint_2.pth").is_file() and (run / "tiny_s03_checkpoint_3.pth").is_file()
    assert load_network(stage0).value_encoder.conv1.weight.shape[1] == 5  # stage-0 weights, widened on load
    assert load_network(stage3, single_object=False).hidden_dim == 64
    assert load_config(stage0.with_suffix(".yaml")).model.single_object  # the sidecar is a valid config preset
    assert not load_config(stage3.with_suffix(".yaml")).model.single_object

    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["train"]["stage3"]["iterations"] == 2 and resolved["train"]["data"]["crop_size"] == CROP
    environment = yaml.safe_load((run / "environment.yaml").read_text())
    assert {"git_commit", "torch", "python", "command", "world_size"} <= set(environment)

    for stage, frames in (("0", 3), ("3", 3)):
        tags = _scalar_tags(run / "tensorboard" / f"stage{stage}")
        losses = {"loss/total_loss", "loss/p"} | {f"loss/{kind}_loss_{t}" for kind in ("ce", "dice")
                                                  for t in range(1, frames)}
        assert losses | {"train/lr", "train/s_per_it", "train/nonfinite_steps",
                         "image:train/rgb_prediction_truth"} <= tags, stage


def test_cli_errors_name_the_bad_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="config preset 'train/no_such_recipe' not found"):
        train.main(["--config", "train/no_such_recipe"])
    with pytest.raises(ValueError, match="train.device='tpu': unknown device 'tpu'"):
        train.main(["train.device=tpu", f"train.save_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="static image root"):
        train.main(["train.device=cpu", "train.imagenet_init=false", f"train.save_dir={tmp_path}",
                    f"train.data.static_root={tmp_path / 'missing'}"])
    assert list(tmp_path.iterdir()) == []  # a failed start leaves no config.yaml / environment.yaml behind


def test_missing_data_root_is_one_error_line_and_writes_nothing(tmp_path):
    saves = tmp_path / "saves"
    finished = subprocess.run(
        [sys.executable, "train.py", "train.stages=3", "train.device=cpu", "train.imagenet_init=false",
         f"train.save_dir={saves}", f"train.data.davis_root={tmp_path / 'no_davis'}"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert finished.returncode == 1
    assert re.fullmatch(r"error: DAVIS 2017 trainval not found under .*no_davis.*\n", finished.stderr)
    assert not saves.exists()


def _generic_folder(root: Path, videos: dict[str, int]) -> Path:
    """A DAVIS-layout folder of 4-frame videos; `videos` maps a name to how many extra masks (without a frame)
    its annotation folder holds (-1: one frame lacks its mask)."""
    easy = without_late_entries(get_preset("easy"))
    made = make_videos(len(videos), seed=3, num_frames=4, height=FRAME_HEIGHT, width=FRAME_WIDTH, difficulty=easy)
    write_davis(root, dict(zip(videos, made.values())), {})
    for name, extra in videos.items():
        masks = sorted((root / "Annotations" / "480p" / name).glob("*.png"))
        if extra < 0:
            masks[-1].unlink()
        for index in range(extra):
            (masks[0].parent / f"{90 + index:05d}.png").write_bytes(masks[0].read_bytes())
    return root


def _generic_run(tmp_path: Path, generic_root: Path, *extra: str) -> list[str]:
    return ["train.stages=3", "train.device=cpu", "train.imagenet_init=false", f"train.save_dir={tmp_path / 'saves'}",
            f"train.data.generic_root={generic_root}", f"train.data.crop_size={CROP}", "train.data.num_workers=0",
            "train.stage3.batch_size=1", "train.stage3.iterations=1", "train.stage3.finetune_iterations=0",
            "train.stage3.num_frames=3", "train.stage3.num_ref_frames=2", "train.stage3.lr_steps=[]",
            "train.stage3.skip_fractions=[]", "train.stage3.skip_values=[]", "train.log_image_interval=0", *extra]


def test_videos_whose_masks_do_not_pair_with_frames_are_skipped_with_a_warning_naming_them(tmp_path, capsys):
    generic = _generic_folder(tmp_path / "generic", {"good": 0, "extra_masks": 2, "missing_mask": -1})
    with pytest.warns(UserWarning) as warned:
        train.main(_generic_run(tmp_path, generic))
    messages = [str(warning.message) for warning in warned]
    assert any(re.search(r"video 'extra_masks' skipped: its 6 masks outnumber its 4 frames", m) for m in messages)
    assert any(re.search(r"video 'missing_mask' skipped: 1 of its 4 frames have no mask", m) for m in messages)
    assert "final network snapshot" in capsys.readouterr().out

    unusable = _generic_folder(tmp_path / "unusable", {"extra_masks": 1, "missing_mask": -1})
    arguments = _generic_run(tmp_path, unusable, "train.exp_id=unusable")
    with pytest.warns(UserWarning) as warned:
        assert run_cli(train.main, arguments) == 1
    assert sorted(re.search(r"video '(\w+)' skipped", str(warning.message))[1] for warning in warned) == [
        "extra_masks", "missing_mask"]
    stderr = capsys.readouterr().err
    assert re.fullmatch(r"error: no usable folder:unusable video in .*: 2 selected, 2 skipped because their masks "
                        r"do not pair with their frames .*\n", stderr)
    assert not (tmp_path / "saves" / "unusable").exists()


def test_a_stage_with_fewer_clips_than_one_batch_fails_before_writing(tmp_path, capsys):
    generic = _generic_folder(tmp_path / "generic", {"only": 0})
    arguments = _generic_run(tmp_path, generic, "train.stage3.batch_size=2")
    assert run_cli(train.main, arguments) == 1
    assert capsys.readouterr().err == ("error: stage 3: the training set has 1 samples, fewer than one global batch "
                                       "of train.stage3.batch_size=2; add data or lower the batch size\n")
    assert not (tmp_path / "saves").exists()


def test_reference_curriculum_and_fine_tune_phase():
    phase_at = phase_schedule(load_config().train.stage3)  # 100k iterations + 10k fine-tuning
    skips = {iteration: phase_at(iteration).max_skip for iteration in (0, 9_999, 10_000, 29_999, 30_000, 89_999,
                                                                       90_000, 109_999)}
    assert skips == {0: 5, 9_999: 5, 10_000: 10, 29_999: 10, 30_000: 15, 89_999: 15, 90_000: 5, 109_999: 5}
    assert not phase_at(99_999).finetune and phase_at(100_000).finetune
    assert phase_at(0) == phase_at(9_999) != phase_at(10_000)  # phases compare by value (the loop relies on it)
    stage1 = phase_schedule(load_config().train.stage1)  # switches at 0.1 / 0.3 / 0.8 of 250k
    assert [stage1(i).max_skip for i in (24_999, 25_000, 75_000, 200_000)] == [5, 10, 15, 5]


def test_shipped_training_presets_resolve():
    finetune = load_config("train/finetune_generic")
    assert finetune.train.stages == "3" and finetune.train.load_network is not None
    assert finetune.train.data.generic_root is not None
    assert load_config("train/recipe_03").train.stages == "03"
