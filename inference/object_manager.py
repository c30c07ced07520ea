"""User object ids <-> tensor slots, and the only place where a slot becomes a probability channel.

Words (fixed across the project): an `object_id` is the user's label (any positive int: 1, 5, 255, 1000; 0 is
background); a `slot` is the 0-based position of an object in every per-object tensor (memory values, sensory
memory); a `channel` indexes a probability tensor whose channel 0 is the background, so channel = slot + 1.
Slots are given in order of first appearance and repacked (order kept) when objects are removed.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable

import torch

BACKGROUND_ID = 0
BACKGROUND_CHANNEL = 0
_FIRST_OBJECT_CHANNEL = BACKGROUND_CHANNEL + 1


def channel_of_max(prob: torch.Tensor) -> torch.Tensor:
    """The channel of the largest probability at each pixel: int64 H×W from float C×H×W; a tie goes to the first.

    `max(dim=0).indices` (as the original), not `argmax(dim=0)`: both return the first of tied maxima, but on CPU
    argmax over a few channels is a slow strided reduction, several times slower at 480p.
    """
    return prob.max(dim=0).indices


@dataclass(frozen=True)
class SlotRemap:
    """How slots move when objects are removed.

    Attributes:
        kept_slots: the old slot of each new slot, in new-slot order (pass to `index_select` on the slot dim).
    """

    kept_slots: tuple[int, ...]

    @property
    def old_to_new(self) -> dict[int, int]:
        """Old slot -> new slot of every surviving object."""
        return {old: new for new, old in enumerate(self.kept_slots)}

    def apply(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Select the surviving slots of a per-object tensor along `dim` (e.g. sensory memory 1×N×C^h×h×w, dim 1)."""
        index = torch.as_tensor(self.kept_slots, dtype=torch.long, device=tensor.device)
        return tensor.index_select(dim, index)


def _check_object_id(object_id: object) -> int:
    """The id as an int, or TypeError/ValueError when it is not a positive integer."""
    try:
        value = operator.index(object_id)
    except TypeError:
        value = None
    if value is None or isinstance(object_id, bool):
        raise TypeError(f"object ids must be positive integers, got {object_id!r} of type {type(object_id).__name__}")
    if value <= BACKGROUND_ID:
        raise ValueError(f"object ids must be positive integers (0 is background), got {value}")
    return value


class ObjectManager:
    """Maps the user's object ids to tensor slots (order of first appearance) and back.

    Example:
        >>> objects = ObjectManager()
        >>> objects.add_objects([5, 255])
        [0, 1]
        >>> objects.remove_objects([5]).kept_slots
        (1,)
        >>> objects.object_ids
        [255]
    """

    def __init__(self) -> None:
        self._object_ids: list[int] = []

    @property
    def object_ids(self) -> list[int]:
        """Object ids in slot order (a copy)."""
        return list(self._object_ids)

    @property
    def num_objects(self) -> int:
        """N, the number of objects (= slots)."""
        return len(self._object_ids)

    def has_object(self, object_id: int) -> bool:
        """Whether `object_id` is currently tracked."""
        return int(object_id) in self._object_ids

    def slot_of(self, object_id: int) -> int:
        """The slot of a tracked object.

        Raises:
            KeyError: the id is not tracked.
        """
        object_id = int(object_id)
        if object_id not in self._object_ids:
            raise KeyError(f"object id {object_id} is not tracked; tracked ids are {self._object_ids}")
        return self._object_ids.index(object_id)

    def add_objects(self, object_ids: Iterable[int]) -> list[int]:
        """Track new objects; they get the next slots, in the given order.

        Args:
            object_ids: ids not tracked yet, each a positive int.
        Returns:
            Their slots.
        Raises:
            TypeError / ValueError: an id is not a positive int, repeats, or is already tracked.
        """
        new_ids = [_check_object_id(object_id) for object_id in object_ids]
        if len(set(new_ids)) != len(new_ids):
            raise ValueError(f"object ids to add repeat: {new_ids}; give each id once")
        known = [object_id for object_id in new_ids if object_id in self._object_ids]
        if known:
            raise ValueError(f"object ids {known} are already tracked; tracked ids are {self._object_ids}")
        first_slot = len(self._object_ids)
        self._object_ids.extend(new_ids)
        return list(range(first_slot, len(self._object_ids)))

    def remove_objects(self, object_ids: Iterable[int]) -> SlotRemap:
        """Stop tracking objects; the remaining ones keep their order and are repacked into slots 0..N'-1.

        Returns:
            The SlotRemap every holder of per-object tensors applies.
        Raises:
            KeyError: an id is not tracked.
        """
        removed = {int(object_id) for object_id in object_ids}
        unknown = sorted(removed - set(self._object_ids))
        if unknown:
            raise KeyError(f"cannot remove object ids {unknown}: not tracked; tracked ids are {self._object_ids}")
        kept_slots = tuple(slot for slot, object_id in enumerate(self._object_ids) if object_id not in removed)
        self._object_ids = [self._object_ids[slot] for slot in kept_slots]
        return SlotRemap(kept_slots)

    # ------------------------------------------------------------------------------- slots <-> channels
    def object_probabilities(self, prob_with_background: torch.Tensor) -> torch.Tensor:
        """The object rows of a probability tensor with background: (N+1)×H×W -> N×H×W in slot order."""
        return prob_with_background[_FIRST_OBJECT_CHANNEL:]

    def by_ascending_id(self, prob_with_background: torch.Tensor) -> tuple[torch.Tensor, list[int], torch.Tensor]:
        """Probabilities with the objects in ascending id order (as result files store them) and their id mask.

        Args:
            prob_with_background: float (N+1)×H×W, background first, channels in the current slot order.
        Returns:
            (prob (N+1)×H×W with channel i+1 = object ids[i], the N ids ascending, int64 H×W mask of ids from the
            argmax over the reordered channels: a tie goes to the smaller id, 0 = background).
        Raises:
            ValueError: the channel count is not N+1.
        """
        self._check_channels(prob_with_background)
        order = sorted(range(self.num_objects), key=lambda slot: self._object_ids[slot])
        ids = [self._object_ids[slot] for slot in order]
        prob = prob_with_background[[BACKGROUND_CHANNEL] + [slot + _FIRST_OBJECT_CHANNEL for slot in order]]
        lookup = torch.tensor([BACKGROUND_ID, *ids], dtype=torch.long, device=prob.device)
        return prob, ids, lookup[channel_of_max(prob)]

    def _check_channels(self, prob_with_background: torch.Tensor) -> None:
        if prob_with_background.dim() != 3 or prob_with_background.shape[0] != self.num_objects + 1:
            raise ValueError(
                f"prob must be (N+1)×H×W with N={self.num_objects} tracked objects, got {tuple(prob_with_background.shape)}"
            )

    def prob_to_mask(self, prob_with_background: torch.Tensor) -> torch.Tensor:
        """Index mask of user ids from probabilities: argmax over channels, channel 0 -> 0 (background).

        Args:
            prob_with_background: float (N+1)×H×W, background first, channels in the current slot order.
        Returns:
            int64 H×W of object ids (0 = background).
        Raises:
            ValueError: the channel count is not N+1.
        """
        self._check_channels(prob_with_background)
        lookup = torch.tensor([BACKGROUND_ID, *self._object_ids], dtype=torch.long, device=prob_with_background.device)
        return lookup[channel_of_max(prob_with_background)]
