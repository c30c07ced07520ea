"""One training iteration against the original implementation (fixtures/train_step_golden_deep{0,1}.npz).

With the recipe checkpoint and the stored batch, `Trainer.train_step` must reproduce every loss term and, for all
238 parameters, the norm and the sum of the gradient it stepped with. Tolerances and their reasons are in
tests/fixtures/README.md (section "Training-step goldens").
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from configs import config_from_dict
from model.checkpoint import build_network_from_state_dict
from model.training.trainer import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
LOSS_RTOL = 1e-5
GRADIENT_RTOL = 1e-3
# A gradient that is mathematically zero (key_proj.key_proj.bias: a shift added to memory keys and query keys
# alike cancels in their distance) comes out as float32 rounding noise of about 2e-8.
GRADIENT_ATOL = 1e-6
GOLDEN_NUM_FRAMES = 3
GOLDEN_NUM_REF_FRAMES = 2


def _golden_batch(golden) -> dict:
    batch = {key: torch.from_numpy(golden[key]) for key in ("rgb", "first_frame_gt", "cls_gt", "selector")}
    batch["info"] = {"num_objects": torch.from_numpy(golden["num_objects"])}
    return batch


@pytest.mark.parametrize("deep_update_prob", [0, 1])
def test_train_step_matches_original(deep_update_prob, recipe_state_dict):
    golden = np.load(FIXTURES / f"train_step_golden_deep{deep_update_prob}.npz")
    network = build_network_from_state_dict(recipe_state_dict)
    stage3 = {"num_frames": GOLDEN_NUM_FRAMES, "num_ref_frames": GOLDEN_NUM_REF_FRAMES,
              "batch_size": int(golden["rgb"].shape[0])}
    config = config_from_dict({"train": {"deep_update_prob": float(deep_update_prob), "use_amp": False,
                                         "stage3": stage3}})
    trainer = Trainer(network, config, "3")
    trainer.iteration = int(golden["it"])

    losses = trainer.train_step(_golden_batch(golden))

    for name in ("total_loss", "p", "ce_loss_1", "dice_loss_1", "ce_loss_2", "dice_loss_2"):
        assert losses[name] == pytest.approx(float(golden[f"loss/{name}"]), rel=LOSS_RTOL), name
    gradients = {name: parameter.grad.double() for name, parameter in network.named_parameters()}
    assert sorted(gradients) == sorted(golden["grad_names"].tolist())
    for name, norm, total in zip(golden["grad_names"], golden["grad_norms"], golden["grad_sums"]):
        gradient = gradients[name]
        assert abs(gradient.norm().item() - norm) <= GRADIENT_RTOL * norm + GRADIENT_ATOL, name
        # A sum of signed terms is only as precise as the sum of their magnitudes (its condition number).
        scale = max(abs(total), gradient.abs().sum().item())
        assert abs(gradient.sum().item() - total) <= GRADIENT_RTOL * scale + GRADIENT_ATOL, name
