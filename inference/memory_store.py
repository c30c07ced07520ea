"""One key-value memory store, used for both working memory and long-term memory.

The store keeps preallocated buffers with a fill count (`size`): elements [0, size) are live. Elements are memory
"pixels": one memory frame adds h·w of them (working memory), one consolidation adds up to P prototypes
(long-term memory). Keys, shrinkage and selection are shared by every object; values are per object.

Which object reads which element is decided by time. Every element carries the index of the memory frame it
comes from (`frame_index`: the frame that wrote it, or for a prototype the frame of the candidate it was drawn
from), and every object slot the index of the first memory frame written after it appeared (`first_frame`).
Element i is valid for a slot iff frame_index[i] ≥ first_frame[slot]: an object reads only memory written since
it appeared. Live elements are kept in non-decreasing frame order, so each slot's valid elements are one suffix
[start, size) and the slots that share a first frame read exactly the same rows: `slot_groups` hands these groups
out, so that readers never do offset arithmetic.

Compared with the original's ragged per-group value lists (§2.4 of the reference), this layout keeps shapes
static, never concatenates the whole memory per frame, keeps every late object's keys and values aligned, and
lets long-term pruning work with any number of object groups (the original raises NotImplementedError there).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from model.memory_util import accumulation_dtype

INITIAL_LIFE = 1e-7  # life count of a new element (as the original), so usage / life is defined before any read
GROWTH_FACTOR = 2  # a growable store doubles its capacity when full


@dataclass(frozen=True)
class SlotGroup:
    """Object slots that read the same elements: rows[start:] of the rows they were asked about.

    Attributes:
        slots: the object slots, ascending.
        first_frame: their first memory frame.
        start: the first of the given rows (or of the live elements) that is valid for them; len(rows) if none is.
    """

    slots: tuple[int, ...]
    first_frame: int
    start: int


class MemoryStore:
    """Preallocated memory of keys, shrinkage, selection, per-object values, frame indices and usage counters.

    Fields (E = `capacity` elements; rows [0, size) are live, rows [size, E) are zero and unused):
        keys:        E×C^k, float (float16/bfloat16 under AMP); memory keys k_i.
        shrinkage:   E, float32 also under AMP (float64 for float64 stores), ≥ 1; shrinkage s_i of each element.
                     It scales every similarity: float16 would round it by 2^-11, overflow to inf above 65504 and
                     then give NaN where a query key equals a stored key (0 · inf).
        selection:   E×C^k float in (0, 1) in the key dtype (bounded, so half precision only rounds it), or None
                     when the store keeps no selection (long-term memory, or working memory without long-term
                     consolidation).
        values:      E×N×C^v float; values[i, slot] is object `slot`'s value at element i (zero where invalid).
        frame_index: E int64; the memory frame each element comes from (see the module docstring).
        use_count:   E, float32; total attention each element received (when `count_usage`).
        life_count:  E, float32; INITIAL_LIFE + number of reads since the element was added (when `count_usage`).
        first_frame: N python ints; element i is valid for `slot` iff frame_index[i] ≥ first_frame[slot].
    Invariants (`_check_invariants`): 0 ≤ size ≤ capacity; every buffer has `capacity` rows; values has one
    column per slot; frame_index is non-decreasing over the live rows; counters are float32; shrinkage is in
    `accumulation_dtype` of the keys' dtype; values are zero on
    rows ≥ size and wherever an element is not valid for a slot.

    Args:
        key_dim: C^k.
        value_dim: C^v.
        capacity: rows to preallocate (E).
        device, dtype: of keys, selection and values (shrinkage: `accumulation_dtype(dtype)`, float32 for half).
        count_usage: keep use/life counters (needed for consolidation and long-term pruning).
        store_selection: keep the selection of every element (working memory with long-term memory on).
        growable: when an append does not fit, double the capacity instead of raising (unbounded working
            memory when long-term memory is off).
    """

    def __init__(
        self,
        *,
        key_dim: int,
        value_dim: int,
        capacity: int,
        device: torch.device | str,
        dtype: torch.dtype,
        count_usage: bool,
        store_selection: bool,
        growable: bool = False,
    ):
        if capacity < 1:
            raise ValueError(f"a memory store needs a capacity of at least 1 element, got {capacity}")
        self.key_dim = key_dim
        self.value_dim = value_dim
        self.count_usage = count_usage
        self.growable = growable
        self.size = 0
        self.first_frame: list[int] = []
        self.keys = torch.zeros(capacity, key_dim, device=device, dtype=dtype)
        self.shrinkage = torch.zeros(capacity, device=device, dtype=accumulation_dtype(dtype))
        self.selection = torch.zeros(capacity, key_dim, device=device, dtype=dtype) if store_selection else None
        self.values = torch.zeros(capacity, 0, value_dim, device=device, dtype=dtype)
        self.frame_index = torch.zeros(capacity, device=device, dtype=torch.long)
        self.use_count = torch.zeros(capacity, device=device, dtype=torch.float32)
        self.life_count = torch.full((capacity,), INITIAL_LIFE, device=device, dtype=torch.float32)

    # ----------------------------------------------------------------------------------------------- queries
    @property
    def capacity(self) -> int:
        """Preallocated rows (E)."""
        return self.keys.shape[0]

    @property
    def num_objects(self) -> int:
        """Object slots (N)."""
        return self.values.shape[1]

    @property
    def bytes_per_element(self) -> int:
        """Bytes one element takes in the store's buffers (key, shrinkage, selection, N values, frame, counters)."""
        return sum(buffer[0].numel() * buffer.element_size() for buffer in self._element_buffers())

    @property
    def live_bytes(self) -> int:
        """Bytes of the live elements (`size` × `bytes_per_element`; the preallocated rest is not counted)."""
        return self.size * self.bytes_per_element

    def live_keys(self) -> torch.Tensor:
        """size×C^k keys of the live elements (a view)."""
        return self.keys[: self.size]

    def live_shrinkage(self) -> torch.Tensor:
        """size shrinkage of the live elements (a view)."""
        return self.shrinkage[: self.size]

    def live_selection(self) -> torch.Tensor | None:
        """size×C^k selection of the live elements (a view), or None when the store keeps none."""
        return None if self.selection is None else self.selection[: self.size]

    def live_values(self) -> torch.Tensor:
        """size×N×C^v values of the live elements (a view; zero where a slot is not valid)."""
        return self.values[: self.size]

    def live_frame_index(self) -> torch.Tensor:
        """size int64 memory frame of each live element (a view; non-decreasing)."""
        return self.frame_index[: self.size]

    def slot_groups(self, rows: torch.Tensor | None = None) -> list[SlotGroup]:
        """The object slots grouped by the elements they read, oldest objects first.

        Args:
            rows: ascending int64 indices of live elements (e.g. consolidation candidates); None = all live rows.
        Returns:
            one SlotGroup per distinct first frame: its slots read exactly rows[start:] among `rows` (the live
            rows [start, size) when `rows` is None).
        """
        frames = self.live_frame_index() if rows is None else self.frame_index[rows]
        first_frames = sorted(set(self.first_frame))
        if not first_frames:
            return []
        starts = torch.searchsorted(frames, torch.tensor(first_frames, device=frames.device)).tolist()
        return [
            SlotGroup(tuple(slot for slot, first in enumerate(self.first_frame) if first == frame), frame, start)
            for frame, start in zip(first_frames, starts)
        ]

    @property
    def valid_from(self) -> list[int]:
        """Per slot, the first live element valid for it (size when none is)."""
        starts = {group.first_frame: group.start for group in self.slot_groups()}
        return [starts[first] for first in self.first_frame]

    def normalized_usage(self) -> torch.Tensor:
        """size float32 usage of the live elements: use_count / life_count (the original's `get_usage`).

        Raises:
            RuntimeError: the store does not count usage.
        """
        if not self.count_usage:
            raise RuntimeError("this memory store does not count usage (count_usage=False)")
        return self.use_count[: self.size] / self.life_count[: self.size]

    # ----------------------------------------------------------------------------------------------- mutators
    def add_objects(self, count: int, *, first_frame: int) -> None:
        """Append `count` object slots that read elements of memory frames ≥ `first_frame` (values so far zero).

        Reallocates `values` (objects are added rarely; elements never reallocate a full fixed-size store).

        Raises:
            ValueError: a live element of a frame ≥ `first_frame` exists (it would be valid with a zero value).
        """
        if count <= 0:
            return
        if self.size > 0 and int(self.frame_index[self.size - 1]) >= first_frame:
            raise ValueError(
                f"new objects read memory frames ≥ {first_frame}, but the store already holds frame "
                f"{int(self.frame_index[self.size - 1])}; objects must be added before their first memory frame"
            )
        extra = self.values.new_zeros(self.capacity, count, self.value_dim)
        self.values = torch.cat([self.values, extra], dim=1)
        self.first_frame.extend([first_frame] * count)

    def keep_objects(self, kept_slots: Sequence[int]) -> None:
        """Keep only the slots `kept_slots`, in that order (new slot i = old slot kept_slots[i]); drop the rest."""
        if list(kept_slots) == list(range(self.num_objects)):
            return
        index = torch.as_tensor(list(kept_slots), dtype=torch.long, device=self.values.device)
        self.values = self.values.index_select(1, index).contiguous()
        self.first_frame = [self.first_frame[slot] for slot in kept_slots]

    def append(
        self,
        keys: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor | None,
        values: torch.Tensor,
        frame_index: int | torch.Tensor,
    ) -> None:
        """Add n elements, keeping the live elements in frame order (new ones go after older-or-equal frames).

        Args:
            keys: n×C^k. shrinkage: n. selection: n×C^k (ignored when the store keeps no selection).
            values: n×N×C^v, one column per slot; must be zero where an element is not valid for a slot.
            frame_index: the memory frame of every new element (int), or n non-decreasing int64 frames. New
                elements older than the newest live one (long-term prototypes of a formerly permanent frame) are
                merged into place, a stable reorder of all live rows.
        Raises:
            RuntimeError: a fixed-size store is full (the memory manager's budgets were not respected).
            ValueError: values have the wrong number of object columns.
        """
        count = keys.shape[0]
        if values.shape[1] != self.num_objects:
            raise ValueError(f"values have {values.shape[1]} object columns, the store has {self.num_objects} slots")
        if self.size + count > self.capacity:
            if not self.growable:
                raise RuntimeError(
                    f"memory store full: {self.size} + {count} elements exceed its capacity of {self.capacity}"
                )
            self._grow(self.size + count)
        rows = slice(self.size, self.size + count)
        self.keys[rows] = keys
        self.shrinkage[rows] = shrinkage
        if self.selection is not None:
            self.selection[rows] = selection
        self.values[rows] = values
        self.frame_index[rows] = frame_index
        self.use_count[rows] = 0
        self.life_count[rows] = INITIAL_LIFE
        older = count > 0 and self.size > 0 and bool(self.frame_index[self.size] < self.frame_index[self.size - 1])
        self.size += count
        if older:
            order = torch.sort(self.live_frame_index(), stable=True).indices
            for buffer in self._element_buffers():
                buffer[: self.size] = buffer[order]

    def add_usage(self, usage: torch.Tensor) -> None:
        """Add one read's attention to every live element: use_count += usage, life_count += 1.

        No-op when the store does not count usage. usage: size float (the affinity row sums of this read).
        """
        if not self.count_usage:
            return
        self.use_count[: self.size] += usage.float()
        self.life_count[: self.size] += 1

    def compact(self, keep: torch.Tensor) -> None:
        """Keep the live elements where `keep` is True, in order, packed at the front of the same buffers.

        keep: size bool. Freed rows are zeroed. No-op when all are kept.
        """
        if keep.shape != (self.size,):
            raise ValueError(f"keep must be a bool mask of the {self.size} live elements, got shape {tuple(keep.shape)}")
        if bool(keep.all()):
            return
        index = keep.nonzero().squeeze(1)
        new_size = index.numel()
        # Advanced indexing gathers into a temporary first, so overlapping source and destination rows are safe.
        for buffer in self._element_buffers():
            buffer[:new_size] = buffer[index]
            buffer[new_size : self.size] = 0
        self.life_count[new_size : self.size] = INITIAL_LIFE
        self.size = new_size

    # ----------------------------------------------------------------------------------------------- internals
    def _element_buffers(self) -> list[torch.Tensor]:
        buffers = [self.keys, self.shrinkage, self.values, self.frame_index, self.use_count, self.life_count]
        return buffers + ([self.selection] if self.selection is not None else [])

    def _grow(self, needed: int) -> None:
        new_capacity = self.capacity
        while new_capacity < needed:
            new_capacity *= GROWTH_FACTOR

        def grown(buffer: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
            new = buffer.new_full((new_capacity, *buffer.shape[1:]), fill)
            new[: self.size] = buffer[: self.size]
            return new

        self.keys = grown(self.keys)
        self.shrinkage = grown(self.shrinkage)
        self.selection = None if self.selection is None else grown(self.selection)
        self.values = grown(self.values)
        self.frame_index = grown(self.frame_index)
        self.use_count = grown(self.use_count)
        self.life_count = grown(self.life_count, INITIAL_LIFE)

    def _check_invariants(self) -> None:
        """Assert the documented invariants (tests call this after every mutation)."""
        assert 0 <= self.size <= self.capacity, (self.size, self.capacity)
        for buffer in self._element_buffers():
            assert buffer.shape[0] == self.capacity, (buffer.shape, self.capacity)
        assert self.keys.shape[1] == self.key_dim and self.values.shape[2] == self.value_dim
        assert self.selection is None or self.selection.shape == self.keys.shape
        assert len(self.first_frame) == self.num_objects, (self.first_frame, self.num_objects)
        frames = self.live_frame_index()
        assert bool((frames[1:] >= frames[:-1]).all()), "live elements must be in frame order"
        assert self.use_count.dtype == torch.float32 and self.life_count.dtype == torch.float32
        assert self.shrinkage.dtype == accumulation_dtype(self.keys.dtype), (self.shrinkage.dtype, self.keys.dtype)
        assert not bool(self.values[self.size :].any()), "rows past the fill count must be zero"
        for slot, first in enumerate(self.first_frame):
            invalid = frames < first
            assert not bool(self.live_values()[invalid, slot].any()), f"slot {slot} has values before frame {first}"
