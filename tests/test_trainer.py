"""The training iteration and loop: clip plans, frozen BatchNorm, learning, errors, non-finite losses under AMP,
exact resume, DDP on Gloo.

Every test uses the full architecture on small crops (32×32, three or four frames) and CPU.
"""
from __future__ import annotations

import math
import os

import cv2
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import train
from configs import Config, StageConfig, config_from_dict, config_to_dict, load_config
from configs.common import per_rank_batch_size
from dataset.training_data import DataPhase, GlobalBatchSampler, StageData, training_loader
from model.checkpoint import build_network_from_state_dict
from model.network import XMem
from model.training.logger import image_grid
from model.training.run_folder import RunDirectory, validate_stages
from model.training.trainer import Trainer, learning_rate_factor, readout_scale, sample_clip_plan

CROP = 32
NUM_OBJECTS = 2


def _batch(batch_size: int, num_frames: int, *, seed: int = 0, num_objects: int = NUM_OBJECTS) -> dict:
    """A clip of moving squares, one per object, on a textured background (exact masks)."""
    generator = torch.Generator().manual_seed(seed)
    rgb = 0.3 * torch.randn(batch_size, num_frames, 3, CROP, CROP, generator=generator)
    class_maps = torch.zeros(batch_size, num_frames, 1, CROP, CROP, dtype=torch.int64)
    for sample in range(batch_size):
        for slot in range(num_objects):
            top, left = torch.randint(0, CROP // 2, (2,), generator=generator).tolist()
            colour = torch.randn(3, 1, 1, generator=generator)
            for frame in range(num_frames):
                rows = slice(top + frame, top + frame + CROP // 3)
                columns = slice(left + slot, left + slot + CROP // 3)
                rgb[sample, frame, :, rows, columns] = colour
                class_maps[sample, frame, 0, rows, columns] = slot + 1
    first_frame_gt = torch.stack([(class_maps[:, 0, 0] == slot + 1).float() for slot in range(num_objects)], 1)
    return {"rgb": rgb, "first_frame_gt": first_frame_gt.unsqueeze(1), "cls_gt": class_maps,
            "selector": torch.ones(batch_size, num_objects),
            "info": {"num_objects": torch.full((batch_size,), num_objects)}}


def _config(*, batch_size: int, num_frames: int = 3, num_ref_frames: int = 2, lr: float = 1e-5,
            stage3: dict | None = None, **train_settings) -> Config:
    """The default config with stage 3 set to a small clip (the trainer is built for stage 3), plus `stage3`'s
    settings."""
    stage3 = {"batch_size": batch_size, "num_frames": num_frames, "num_ref_frames": num_ref_frames, "lr": lr,
              **(stage3 or {})}
    return config_from_dict({"train": {**train_settings, "stage3": stage3}})


def _network(seed: int = 0) -> XMem:
    torch.manual_seed(seed)
    return XMem().eval()


# ---------------------------------------------------------------------------------------------- clip plans

def test_plan_reads_all_previous_frames_then_first_plus_random_distinct_earlier_ones():
    plan = sample_clip_plan(batch_size=4, num_frames=8, num_ref_frames=3, deep_update_prob=0.5,
                            generator=torch.Generator().manual_seed(0))
    assert plan.memory_frames[:3] == (None, None, None)  # query frames 1..3 read every previous frame
    for frame in range(4, 8):
        frames = plan.memory_frames[frame - 1]
        assert frames.shape == (4, 3)
        assert (frames[:, 0] == 0).all()  # the annotated first frame is always in memory
        for sample in frames:
            earlier = sample[1:].tolist()
            assert len(set(earlier)) == 2 and all(1 <= index < frame for index in earlier)
    assert len(plan.deep_update) == 6  # frames 1..6 are value-encoded; the last frame is not


def test_plan_draws_come_from_the_generator_and_deep_update_prob_is_honoured():
    def draw(seed, probability):
        return sample_clip_plan(2, 8, 3, probability, torch.Generator().manual_seed(seed))

    first, again = draw(5, 0.5), draw(5, 0.5)
    assert first.deep_update == again.deep_update
    assert all(torch.equal(a, b) for a, b in zip(first.memory_frames[3:], again.memory_frames[3:]))
    assert not any(draw(1, 0.0).deep_update) and all(draw(1, 1.0).deep_update)
    sliced = first.for_samples(1, 2)
    assert torch.equal(sliced.memory_frames[5], first.memory_frames[5][1:2])
    assert sliced.deep_update == first.deep_update


def test_plan_rejects_a_clip_without_query_frames():
    with pytest.raises(ValueError, match="a training clip needs num_frames ≥ 2 and num_ref_frames ≥ 1, got "
                                         "num_frames=1"):
        sample_clip_plan(1, 1, 3, 0.2, torch.Generator())


def test_readout_schedule_is_zero_then_ramps_to_one_and_dropout_zeroes_samples_until_its_end():
    ramped = StageConfig(readout_warmup=2, readout_ramp=4)
    factors = [readout_scale(iteration, ramped, batch_size=3, seed=0) for iteration in range(7)]
    assert [factor.tolist() for factor in factors[:5]] == [[0.0] * 3, [0.0] * 3, [0.25] * 3, [0.5] * 3, [0.75] * 3]
    assert factors[5] is None and factors[6] is None  # ramped in: the readout as read
    assert readout_scale(0, StageConfig(), batch_size=3, seed=0) is None  # the original
    assert readout_scale(0, StageConfig(readout_warmup=1), 2, 0).tolist() == [0.0, 0.0]  # no ramp: 0, then 1
    assert readout_scale(1, StageConfig(readout_warmup=1), 2, 0) is None

    dropped = StageConfig(readout_dropout=0.3, readout_dropout_iterations=10)
    coins = readout_scale(9, dropped, batch_size=2000, seed=4)
    assert set(coins.tolist()) == {0.0, 1.0} and 0.25 < (coins == 0).float().mean().item() < 0.35
    assert torch.equal(coins, readout_scale(9, dropped, 2000, 4))  # a function of (seed, iteration): resumable
    assert not torch.equal(coins, readout_scale(8, dropped, 2000, 4))
    assert readout_scale(10, dropped, 2000, 4) is None  # dropout ends at readout_dropout_iterations


def test_zero_readout_cuts_the_memory_read_out_of_the_gradient_and_keeps_the_plan_draws():
    """During the readout warm-up the keys, shrinkage and selection (only the memory read uses them) get no
    gradient; everything else still learns, and the clip plan's generator advances as without the warm-up."""
    trainers = {}
    for warmup in (0, 5):
        trainers[warmup] = Trainer(_network(), _config(batch_size=2, num_frames=4, lr=1e-4,
                                                       stage3={"readout_warmup": warmup}), "3")
        trainers[warmup].train_step(_batch(2, 4))
    key_projection = {warmup: [parameter.grad for parameter in trainer.network.key_proj.parameters()]
                      for warmup, trainer in trainers.items()}
    assert all(gradient.abs().sum() > 0 for gradient in key_projection[0])
    assert all(torch.equal(gradient, torch.zeros_like(gradient)) for gradient in key_projection[5])
    assert trainers[5].network.decoder.fuser.block1.conv1.weight.grad.abs().sum() > 0
    assert torch.equal(trainers[0].generator.get_state(), trainers[5].generator.get_state())


# ---------------------------------------------------------------------------------------------- the step

def test_step_keeps_batchnorm_statistics_and_changes_parameters():
    network = _network()
    buffers = {name: buffer.clone() for name, buffer in network.named_buffers()}
    parameters = {name: parameter.detach().clone() for name, parameter in network.named_parameters()}
    trainer = Trainer(network, _config(batch_size=1, lr=1e-4), "3")
    losses = trainer.train_step(_batch(1, 3))

    assert set(losses) == {"total_loss", "p", "ce_loss_1", "dice_loss_1", "ce_loss_2", "dice_loss_2"}
    assert not network.training  # eval mode (frozen BatchNorm) during training, as the original
    assert trainer.iteration == 1
    for name, buffer in network.named_buffers():  # running_mean / running_var / num_batches_tracked
        assert torch.equal(buffer, buffers[name]), name
    changed = [name for name, parameter in network.named_parameters() if not torch.equal(parameter,
                                                                                          parameters[name])]
    assert len(changed) == len(parameters)


def test_batchnorm_batch_mode_trains_in_train_mode_and_updates_every_running_statistic():
    network = _network()
    running = {name: buffer.clone() for name, buffer in network.named_buffers() if name.endswith("running_var")}
    trainer = Trainer(network, _config(batch_size=2, lr=1e-4, batchnorm="batch"), "3")
    trainer.train_step(_batch(2, 3))

    assert network.training
    # every BatchNorm of both trunks ran on this batch and moved its running statistics towards the batch's
    assert [name for name, buffer in network.named_buffers()
            if name in running and torch.equal(buffer, running[name])] == []


def test_step_schedule_is_the_original_multisteplr():
    stage = StageConfig(iterations=20, lr_steps=(12, 5, 12))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    multistep = torch.optim.lr_scheduler.MultiStepLR(optimizer, [12, 5, 12], gamma=0.1)
    for iteration in range(20):
        assert learning_rate_factor(iteration, stage, 0.1) == pytest.approx(optimizer.param_groups[0]["lr"]), iteration
        optimizer.step()
        multistep.step()


def test_cosine_schedule_warms_up_then_falls_to_zero_over_the_whole_stage():
    stage = StageConfig(iterations=100, finetune_iterations=20, lr_schedule="cosine", lr_warmup=10)
    factors = [learning_rate_factor(iteration, stage, 0.1) for iteration in range(stage.total_iterations)]
    assert factors[0] == pytest.approx(0.1)  # 1 / lr_warmup
    assert all(later > earlier for earlier, later in zip(factors[:9], factors[1:10]))
    assert all(later < earlier for earlier, later in zip(factors[9:], factors[10:]))
    assert factors[60] == pytest.approx(0.5)  # half-way through the 120 iterations, fine-tune included
    assert factors[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 119 / 120))) and factors[-1] < 1e-3


def test_trainer_steps_the_configured_schedule_and_resumes_an_older_multisteplr_state():
    config = config_from_dict({"train": {"stage3": {"batch_size": 1, "num_frames": 3, "num_ref_frames": 2,
                                                    "lr": 1e-4, "lr_schedule": "cosine", "lr_steps": [],
                                                    "lr_warmup": 4, "iterations": 8}}})
    trainer = Trainer(_network(), config, "3")
    assert trainer.lr == pytest.approx(1e-4 * learning_rate_factor(0, config.train.stage3, 0.1))
    trainer.train_step(_batch(1, 3))
    assert trainer.lr == pytest.approx(1e-4 * learning_rate_factor(1, config.train.stage3, 0.1))

    state = trainer.state_dict()
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    older = torch.optim.lr_scheduler.MultiStepLR(sgd, [2])
    for _ in range(3):
        sgd.step()
        older.step()
    state["scheduler"] = older.state_dict()  # what checkpoints written before the schedule choice hold
    trainer.load_state_dict(state)
    trainer.scheduler.step()
    assert trainer.scheduler.last_epoch == 4
    assert trainer.lr == pytest.approx(1e-4 * learning_rate_factor(4, config.train.stage3, 0.1))


def test_loss_falls_on_a_fixed_batch():
    trainer = Trainer(_network(), _config(batch_size=1, lr=3e-5, deep_update_prob=0.0), "3")
    batch = _batch(1, 3, num_objects=1)
    losses = [trainer.train_step(batch)["total_loss"] for _ in range(12)]
    assert sum(losses[-3:]) / 3 < 0.3 * losses[0], losses


def test_non_finite_loss_names_iteration_and_terms():
    trainer = Trainer(_network(), _config(batch_size=1), "3")
    trainer.iteration = 41
    batch = _batch(1, 3)
    batch["rgb"][0, 1] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 41 of stage 3: .*total_loss=nan.*"
                                                 r"ce_loss_1=nan"):
        trainer.train_step(batch)


def _nan_batch(seed: int) -> dict:
    batch = _batch(1, 3, seed=seed)
    batch["rgb"][0, 1] = float("nan")
    return batch


def _amp_trainer(max_nonfinite_steps: int) -> Trainer:
    """A float32 trainer stepping through a real GradScaler, as AMP on CUDA does (autocast itself is CUDA-only)."""
    trainer = Trainer(_network(), _config(batch_size=1, lr=1e-4, max_nonfinite_steps=max_nonfinite_steps), "3")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    return trainer


def test_under_amp_a_non_finite_loss_skips_the_step_lowers_the_scale_and_is_counted():
    trainer = _amp_trainer(max_nonfinite_steps=3)
    parameters = {name: parameter.detach().clone() for name, parameter in trainer.network.named_parameters()}
    with pytest.warns(RuntimeWarning, match=r"non-finite loss at iteration 0 of stage 3: .*total_loss=nan.*; step "
                                            r"skipped by the AMP GradScaler \(1 in a row, training stops at 3\)"):
        losses = trainer.train_step(_nan_batch(0))

    assert math.isnan(losses["total_loss"]) and trainer.last_step_skipped
    assert trainer.iteration == 1 and trainer.nonfinite_steps == 1  # the iteration counts (data and schedule go on)
    assert trainer.scaler.get_scale() == 2.0 ** 7  # GradScaler's backoff
    for name, parameter in trainer.network.named_parameters():
        assert torch.equal(parameter, parameters[name]), name

    trainer.train_step(_batch(1, 3))  # a finite step trains and resets the run of non-finite ones
    assert not trainer.last_step_skipped and trainer.consecutive_nonfinite_steps == 0
    assert trainer.nonfinite_steps == 1
    assert any(not torch.equal(parameter, parameters[name]) for name, parameter in trainer.network.named_parameters())


def test_under_amp_max_nonfinite_steps_in_a_row_abort_naming_the_terms():
    trainer = _amp_trainer(max_nonfinite_steps=3)
    with pytest.warns(RuntimeWarning):
        trainer.train_step(_nan_batch(0))
        trainer.train_step(_batch(1, 3))  # resets the count: the next two do not abort
        trainer.train_step(_nan_batch(1))
        trainer.train_step(_nan_batch(2))
    with pytest.raises(FloatingPointError, match=r"non-finite loss at iteration 4 of stage 3: .*ce_loss_1=nan.*; 3 "
                                                 r"non-finite steps in a row \(train.max_nonfinite_steps=3\)"):
        trainer.train_step(_nan_batch(3))
    assert trainer.nonfinite_steps == 4


def test_bad_batches_are_rejected_with_what_was_expected():
    trainer = Trainer(_network(), _config(batch_size=2), "3")
    batch = _batch(2, 3)
    del batch["selector"]
    with pytest.raises(KeyError, match=r"training batch lacks \['selector'\]"):
        trainer.train_step(batch)
    with pytest.raises(ValueError, match="training batch has 1 clips, expected 2 per process"):
        trainer.train_step(_batch(1, 3))


def test_global_batch_must_divide_across_processes():
    assert per_rank_batch_size(8, 4) == 2
    with pytest.raises(ValueError, match=r"batch_size=6 \(global\) must be a positive multiple of the 4 processes"):
        per_rank_batch_size(6, 4)


def test_global_batch_sampler_splits_single_process_batches_across_ranks():
    single = list(GlobalBatchSampler(10, 4, seed=3, epoch=2))
    ranks = [list(GlobalBatchSampler(10, 4, rank=rank, world_size=2, seed=3, epoch=2)) for rank in range(2)]
    assert len(single) == 2  # the incomplete last batch is dropped
    assert [a + b for a, b in zip(*ranks)] == single
    assert list(GlobalBatchSampler(10, 4, seed=3, epoch=2, start_batch=1)) == single[1:]
    assert list(GlobalBatchSampler(10, 4, seed=3, epoch=3)) != single
    with pytest.raises(ValueError, match="the training set has 3 samples, fewer than one global batch of 4"):
        GlobalBatchSampler(3, 4)


class _OpenCvThreads(torch.utils.data.Dataset):
    """Every sample is the number of OpenCV threads of the process that loads it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return cv2.getNumThreads()


def test_data_loader_workers_run_opencv_single_threaded():
    inherited = cv2.getNumThreads()
    try:
        cv2.setNumThreads(0)
        single_threaded = cv2.getNumThreads()
        cv2.setNumThreads(4)  # what a forked worker would inherit without the worker start function
        assert cv2.getNumThreads() != single_threaded
        loader = training_loader(_OpenCvThreads(), GlobalBatchSampler(2, 2), num_workers=1, pin_memory=False)
        batches = [batch.tolist() for batch in loader]
    finally:
        cv2.setNumThreads(inherited)
    assert batches == [[single_threaded, single_threaded]]


def test_image_grid_has_rgb_prediction_and_truth_rows():
    batch = _batch(3, 3)
    predictions = [torch.rand(3, NUM_OBJECTS, CROP, CROP) for _ in range(2)]
    grid = image_grid(batch["rgb"], predictions, batch["cls_gt"], batch["first_frame_gt"][:, 0])
    padding = 2  # make_grid's default
    assert grid.shape == (3, 6 * (CROP + padding) + padding, 3 * (CROP + padding) + padding)  # 2 samples × 3 rows


# ---------------------------------------------------------------------------------------------- the loop, resume

RESUME_OVERRIDES = [
    "train.stages=3", "train.imagenet_init=false", "train.deep_update_prob=0.5", "train.log_text_interval=2",
    "train.log_image_interval=0", "train.save_network_interval=0", "train.save_checkpoint_interval=2",
    "train.stage3.batch_size=2", "train.stage3.iterations=3", "train.stage3.finetune_iterations=1",
    "train.stage3.num_frames=4", "train.stage3.num_ref_frames=2", "train.stage3.lr=1e-4",
    "train.stage3.lr_steps=[2]", "train.stage3.skip_fractions=[0.5]", "train.stage3.skip_values=[10]",
    # readout dropout on across the stop at iteration 2: a resumed run must draw the same coins (the study recipe)
    "train.stage3.readout_dropout=0.5", "train.stage3.readout_dropout_iterations=3",
]


class _Interrupted(Exception):
    pass


def _fake_data(stop_after: int | None = None):
    """StageData whose batches are a pure function of (phase, epoch, batch index); 2 batches per epoch."""
    served = []

    def phase_at(iteration: int) -> DataPhase:
        return DataPhase(10 if iteration >= 2 else 5, iteration >= 3)

    def batches(phase: DataPhase, epoch: int, start_batch: int):
        for index in range(start_batch, 2):
            if stop_after is not None and len(served) == stop_after:
                raise _Interrupted
            served.append((phase, epoch, index))
            yield _batch(2, 4, seed=1000 * epoch + 10 * index + phase.max_skip + phase.finetune)

    return (lambda stage: StageData(phase_at, batches)), served


def test_resume_is_bit_identical_to_training_straight_through(tmp_path):
    straight_config = load_config(overrides=RESUME_OVERRIDES + [f"train.save_dir={tmp_path / 'straight'}"])
    data, straight_batches = _fake_data()
    straight = train.run_training(straight_config, data).network

    config = load_config(overrides=RESUME_OVERRIDES + [f"train.save_dir={tmp_path / 'resumed'}"])
    data, _ = _fake_data(stop_after=2)
    with pytest.raises(_Interrupted):
        train.run_training(config, data)
    run = RunDirectory(config.train.save_dir, config.train.exp_id)
    assert [path.name for path in run.checkpoints()] == ["xmem_s3_checkpoint_2.pth"]
    data, resumed_batches = _fake_data()
    resumed = train.run_training(config, data, resume=True).network

    assert resumed_batches == straight_batches[2:]  # the data stream continues where it stopped
    for (name, parameter), expected in zip(resumed.state_dict().items(), straight.state_dict().values()):
        assert torch.equal(parameter, expected), name
    assert (run.root / "config.yaml").is_file() and (run.root / "xmem_s3_4.pth").is_file()

    with pytest.raises(ValueError, match=r"--resume: the config differs from the one of .*xmem_s3_checkpoint_4.pth: "
                                         r"train.stage3.lr \(checkpoint: 0.0001, now: 0.001\)"):
        changed = load_config(overrides=RESUME_OVERRIDES + [f"train.save_dir={tmp_path / 'resumed'}",
                                                            "train.stage3.lr=1e-3"])
        train.run_training(changed, data, resume=True)
    with pytest.raises(FileExistsError, match="already holds checkpoints of run 'xmem'; pass --resume"):
        train.run_training(config, data)


def test_resume_without_checkpoint_and_bad_stages_are_errors(tmp_path):
    config = load_config(overrides=[f"train.save_dir={tmp_path}", "train.exp_id=empty"])
    with pytest.raises(FileNotFoundError, match=r"--resume: no checkpoint 'empty_s\*_checkpoint_\*.pth' in "):
        train.run_training(config, _fake_data()[0], resume=True)
    with pytest.raises(ValueError, match="train.stages='04': expected distinct stage names from 0, 1, 2, 3"):
        validate_stages("04")


def test_resume_accepts_a_checkpoint_from_an_older_version_of_the_config(tmp_path):
    """A setting added since the checkpoint was written (at its default) or since removed does not block --resume;
    a changed setting does, naming it."""
    config = load_config(overrides=[f"train.save_dir={tmp_path}", "train.exp_id=old"])
    run = RunDirectory(config.train.save_dir, config.train.exp_id)
    current = config_to_dict(config)
    saved = config_to_dict(config)
    del saved["train"]["max_nonfinite_steps"]  # added since
    saved["inference"]["reference_compute"] = False  # removed since
    run.root.mkdir(parents=True)
    torch.save({"config": saved}, run.checkpoint("03", 10))
    with pytest.warns(UserWarning, match="no longer has .inference.reference_compute.; they are ignored"):
        assert run.start(current, resume=True) == {"config": saved}
    changed = config_to_dict(load_config(overrides=[f"train.save_dir={tmp_path}", "train.exp_id=old",
                                                    "train.max_nonfinite_steps=5"]))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"train.max_nonfinite_steps \(checkpoint: None, now: 5\)"):
        run.start(changed, resume=True)


# ---------------------------------------------------------------------------------------------- DDP (Gloo, CPU)

DDP_STEPS = 2
# In float64 the gradients of both runs agree to ~1e-15, so Adam (which turns any gradient, however tiny, into a
# step of about lr) cannot amplify rounding noise into differences of lr: the parameters must agree to 1e-6 while
# training moves them by ~2e-4. (In float32, elements whose gradient is at rounding-noise level differ by up to 1e-5.)
DDP_DTYPE = torch.float64


def _double_batch(batch_size: int, seed: int) -> dict:
    batch = _batch(batch_size, 3, seed=seed)
    batch["rgb"] = batch["rgb"].to(DDP_DTYPE)
    return batch


def _ddp_worker(rank: int, world_size: int, init_file: str, state_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        network = build_network_from_state_dict(torch.load(state_path, weights_only=True)).to(DDP_DTYPE)
        trainer = Trainer(network, _config(batch_size=2, lr=1e-4, deep_update_prob=0.0), "3", rank=rank,
                          world_size=world_size)
        for step in range(DDP_STEPS):
            batch = _double_batch(2, seed=step)
            local = {key: value[rank:rank + 1] for key, value in batch.items() if key != "info"}
            local["info"] = {"num_objects": batch["info"]["num_objects"][rank:rank + 1]}
            trainer.train_step(local)
        torch.save(network.state_dict(), os.path.join(out_dir, f"rank{rank}.pth"))
    finally:
        dist.destroy_process_group()


def test_ddp_on_two_gloo_processes_equals_a_single_process(tmp_path):
    network = _network(seed=7)
    state_path = tmp_path / "initial.pth"
    torch.save(network.state_dict(), state_path)
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), str(state_path), str(tmp_path)), nprocs=2)

    single = Trainer(network.to(DDP_DTYPE), _config(batch_size=2, lr=1e-4, deep_update_prob=0.0), "3")
    for step in range(DDP_STEPS):
        single.train_step(_double_batch(2, seed=step))
    ranks = [torch.load(tmp_path / f"rank{rank}.pth", weights_only=True) for rank in range(2)]
    for name, expected in single.network.state_dict().items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], expected, rtol=0, atol=1e-6, msg=name)
