"""Losses: the bootstrapped-CE schedule and pixel selection, dice, and the per-clip sum (reference section 4.5)."""
import pytest
import torch
import torch.nn.functional as F

from model.training.losses import bootstrap_fraction, bootstrapped_cross_entropy, clip_losses, dice_loss

START_WARM, END_WARM = 20_000, 70_000


@pytest.mark.parametrize("iteration, expected", [
    (0, 1.0), (19_999, 1.0), (20_000, 1.0), (30_000, 0.83), (45_000, 0.575), (70_000, 0.15), (150_000, 0.15),
])
def test_bootstrap_fraction_falls_linearly_between_warm_marks(iteration, expected):
    assert bootstrap_fraction(iteration, START_WARM, END_WARM) == pytest.approx(expected)


@pytest.mark.parametrize("start, end, final, message", [
    (10, 10, 0.15, "bootstrapped CE needs start_warm < end_warm, got start_warm=10, end_warm=10"),
    (0, 10, 0.0, r"bootstrap final fraction must be in \(0, 1\], got 0.0"),
])
def test_bootstrap_fraction_rejects_bad_schedules(start, end, final, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_fraction(5, start, end, final)


def test_bootstrapped_ce_averages_the_hardest_pixels():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 8, 10, generator=generator)
    target = torch.randint(0, 3, (1, 8, 10), generator=generator)
    per_pixel = F.cross_entropy(logits, target, reduction="none").flatten()
    assert bootstrapped_cross_entropy(logits, target, 1.0) == pytest.approx(per_pixel.mean().item(), rel=1e-6)
    kept = int(per_pixel.numel() * 0.25)  # 20 of 80 pixels
    hardest = per_pixel.sort(descending=True).values[:kept].mean()
    assert bootstrapped_cross_entropy(logits, target, 0.25) == pytest.approx(hardest.item(), rel=1e-6)


def test_dice_is_zero_for_perfect_and_empty_masks_and_near_one_for_disjoint():
    class_map = torch.zeros(1, 6, 6, dtype=torch.int64)
    class_map[0, :3] = 1
    perfect = (class_map == 1).float().unsqueeze(1)
    assert dice_loss(perfect, class_map).item() == pytest.approx(0.0)
    empty_slot = torch.zeros(1, 1, 6, 6)
    assert dice_loss(empty_slot, torch.zeros_like(class_map)).item() == pytest.approx(0.0)
    disjoint = 1 - perfect  # 18 predicted pixels, 18 true pixels, none shared
    assert dice_loss(disjoint, class_map).item() == pytest.approx(1 - 1 / 37)


def test_dice_averages_over_samples_and_slots():
    masks = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    class_map = torch.randint(0, 4, (2, 5, 5), generator=torch.Generator().manual_seed(2))
    expected = []
    for sample in range(2):
        for slot in range(3):
            truth = (class_map[sample] == slot + 1).float()
            expected.append(1 - (2 * (masks[sample, slot] * truth).sum() + 1) / (masks[sample, slot].sum()
                                                                                 + truth.sum() + 1))
    assert dice_loss(masks, class_map).item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-6)


def test_clip_losses_sum_terms_and_ignore_padded_objects_in_ce():
    generator = torch.Generator().manual_seed(3)
    batch, frames, objects, size = 2, 3, 3, 8
    class_maps = torch.randint(0, 2, (batch, frames, 1, size, size), generator=generator)
    logits = [torch.randn(batch, objects + 1, size, size, generator=generator) for _ in range(frames - 1)]
    masks = [torch.rand(batch, objects, size, size, generator=generator) for _ in range(frames - 1)]
    losses = clip_losses(logits, masks, class_maps, num_objects=[1, 1], fraction=1.0)

    assert set(losses) == {"total_loss", "p", "ce_loss_1", "dice_loss_1", "ce_loss_2", "dice_loss_2"}
    terms = sum(losses[f"{kind}_loss_{frame}"] for kind in ("ce", "dice") for frame in (1, 2))
    assert losses["total_loss"].item() == pytest.approx(terms.item(), rel=1e-6)
    # With one real object, CE sees only the background and object-1 channels: padded logits do not matter.
    changed = [frame_logits.clone() for frame_logits in logits]
    for frame_logits in changed:
        frame_logits[:, 2:] += 100
    assert clip_losses(changed, masks, class_maps, [1, 1], 1.0)["ce_loss_1"].item() == pytest.approx(
        losses["ce_loss_1"].item())
    expected_ce = sum(F.cross_entropy(logits[0][s:s + 1, :2], class_maps[s:s + 1, 1, 0]) for s in range(batch)) / batch
    assert losses["ce_loss_1"].item() == pytest.approx(expected_ce.item(), rel=1e-6)


def test_clip_losses_rejects_a_wrong_number_of_frames():
    class_maps = torch.zeros(1, 4, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="clip_losses needs 3 predicted frames for a 4-frame clip, got 2 logits"):
        clip_losses([torch.zeros(1, 2, 4, 4)] * 2, [torch.zeros(1, 1, 4, 4)] * 2, class_maps, [1], 1.0)
