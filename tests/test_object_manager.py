"""ObjectManager: user ids (gaps, 255, 1000) <-> slots, removal remaps, id masks."""
import numpy as np
import pytest
import torch

from inference.object_manager import ObjectManager, SlotRemap, channel_of_max


def test_ids_with_gaps_get_slots_in_order_of_appearance():
    objects = ObjectManager()
    assert objects.add_objects([5, 1]) == [0, 1]
    assert objects.add_objects([1000, 255]) == [2, 3]
    assert objects.object_ids == [5, 1, 1000, 255]
    assert [objects.slot_of(object_id) for object_id in (1, 5, 255, 1000)] == [1, 0, 3, 2]
    assert objects.add_objects([np.int64(7)]) == [4]


def test_removal_repacks_slots_and_returns_the_remap():
    objects = ObjectManager()
    objects.add_objects([1, 5, 255])
    remap = objects.remove_objects([5])
    assert remap.kept_slots == (0, 2) and remap.old_to_new == {0: 0, 2: 1}
    assert objects.object_ids == [1, 255] and objects.slot_of(255) == 1
    per_object = torch.tensor([[10.0], [50.0], [255.0]])
    assert torch.equal(remap.apply(per_object, dim=0), torch.tensor([[10.0], [255.0]]))


def test_prob_to_mask_gives_user_ids():
    objects = ObjectManager()
    objects.add_objects([255, 1000])
    prob = torch.zeros(3, 2, 2)
    prob[0, 0, 0] = prob[1, 0, 1] = prob[2, 1, :] = 1
    assert torch.equal(objects.prob_to_mask(prob), torch.tensor([[0, 255], [1000, 1000]]))
    with pytest.raises(ValueError, match="prob must be \\(N\\+1\\)×H×W with N=2 tracked objects, got \\(2, 2, 2\\)"):
        objects.prob_to_mask(prob[:2])


def test_masks_break_ties_to_the_first_channel_as_argmax():
    """Mutation checked: `channel_of_max` taking the last of tied maxima (max over the flipped channels) fails."""
    # Pixels: background ties object 1; objects 1 and 2 tie; background ties object 2; all three channels tie.
    prob = torch.tensor([
        [[0.5, 0.2, 0.4, 0.3]],
        [[0.5, 0.4, 0.1, 0.3]],
        [[0.0, 0.4, 0.4, 0.3]],
    ])
    first_of_ties = torch.tensor([[0, 1, 0, 0]])
    assert torch.equal(channel_of_max(prob), first_of_ties)
    assert torch.equal(channel_of_max(prob), prob.argmax(dim=0))
    objects = ObjectManager()
    objects.add_objects([255, 1000])
    assert torch.equal(objects.prob_to_mask(prob), torch.tensor([[0, 255, 0, 0]]))
    _, _, mask = objects.by_ascending_id(prob)
    assert torch.equal(mask, torch.tensor([[0, 255, 0, 0]]))


def test_object_channels_follow_the_background():
    objects = ObjectManager()
    objects.add_objects([9])
    prob = torch.tensor([[[0.25]], [[0.75]]])
    assert torch.equal(objects.object_probabilities(prob), torch.tensor([[[0.75]]]))


@pytest.mark.parametrize(
    "ids, error, message",
    [
        ([0], ValueError, "object ids must be positive integers \\(0 is background\\), got 0"),
        ([-3], ValueError, "got -3"),
        ([2.5], TypeError, "object ids must be positive integers, got 2.5 of type float"),
        ([True], TypeError, "got True of type bool"),
        ([4, 4], ValueError, "object ids to add repeat: \\[4, 4\\]"),
        ([1], ValueError, "object ids \\[1\\] are already tracked; tracked ids are \\[1\\]"),
    ],
)
def test_bad_ids_are_rejected(ids, error, message):
    objects = ObjectManager()
    objects.add_objects([1])
    with pytest.raises(error, match=message):
        objects.add_objects(ids)
    assert objects.object_ids == [1]


def test_unknown_ids_are_reported():
    objects = ObjectManager()
    objects.add_objects([1, 2])
    with pytest.raises(KeyError, match="cannot remove object ids \\[7\\]: not tracked; tracked ids are \\[1, 2\\]"):
        objects.remove_objects([7, 1])
    assert objects.object_ids == [1, 2]
    with pytest.raises(KeyError, match="object id 8 is not tracked"):
        objects.slot_of(8)


def test_slot_remap_apply_on_the_slot_dim():
    remap = SlotRemap((1,))
    hidden = torch.arange(2 * 3.0).view(1, 2, 3)
    assert torch.equal(remap.apply(hidden, dim=1), hidden[:, 1:])


def test_by_ascending_id_reorders_channels_and_breaks_ties_towards_the_smaller_id():
    objects = ObjectManager()
    objects.add_objects([7, 2])
    prob = torch.tensor([[[0.2, 0.1]], [[0.4, 0.45]], [[0.4, 0.45]]])  # channels: background, id 7, id 2
    reordered, ids, mask = objects.by_ascending_id(prob)
    assert ids == [2, 7]
    assert torch.equal(reordered, prob[[0, 2, 1]])
    assert mask.tolist() == [[2, 2]]  # tied 7 and 2: the smaller id wins, as in the written result files
