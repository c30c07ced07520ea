"""train.py end to end on generator data: two tiny stages (0 then 3), snapshots, sidecars, TensorBoard, errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from configs import load_config
from dataset.static_dataset import REFERENCE_STATIC_SOURCES
from dataset.synthetic import get_preset, make_videos, without_late_entries
from dataset.synthetic_layouts import make_static_classes, write_davis, write_static_flat, write_static_fss
from dataset.synthetic_layouts import write_youtube_train
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


def test_two_tiny_stages_end_to_end(tmp_path):
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
        assert losses | {"train/lr", "train/s_per_it", "image:train/rgb_prediction_truth"} <= tags, stage


def test_cli_errors_name_the_bad_value(tmp_path):
    with pytest.raises(FileNotFoundError, match="config preset 'train/no_such_recipe' not found"):
        train.main(["--config", "train/no_such_recipe"])
    with pytest.raises(ValueError, match="train.device='tpu': expected auto, cpu or cuda"):
        train.main(["train.device=tpu", f"train.save_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="static image root"):
        train.main(["train.device=cpu", "train.imagenet_init=false", f"train.save_dir={tmp_path}",
                    f"train.data.static_root={tmp_path / 'missing'}"])


def test_reference_curriculum_and_fine_tune_phase():
    phase_at = train.phase_schedule(load_config().train.stage3)  # 100k iterations + 10k fine-tuning
    skips = {iteration: phase_at(iteration).max_skip for iteration in (0, 9_999, 10_000, 29_999, 30_000, 89_999,
                                                                       90_000, 109_999)}
    assert skips == {0: 5, 9_999: 5, 10_000: 10, 29_999: 10, 30_000: 15, 89_999: 15, 90_000: 5, 109_999: 5}
    assert not phase_at(99_999).finetune and phase_at(100_000).finetune
    assert phase_at(0) == phase_at(9_999) != phase_at(10_000)  # phases compare by value (the loop relies on it)
    stage1 = train.phase_schedule(load_config().train.stage1)  # switches at 0.1 / 0.3 / 0.8 of 250k
    assert [stage1(i).max_skip for i in (24_999, 25_000, 75_000, 200_000)] == [5, 10, 15, 5]


def test_shipped_training_presets_resolve():
    finetune = load_config("train/finetune_generic")
    assert finetune.train.stages == "3" and finetune.train.load_network is not None
    assert finetune.train.data.generic_root is not None
    assert load_config("train/recipe_03").train.stages == "03"
