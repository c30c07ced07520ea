"""One key-value memory store, used for both working memory and long-term memory.

The store keeps preallocated buffers with a fill count (`size`): elements [0, size) are live and in the order
they were added. Elements are memory "pixels": one memory frame adds h·w of them (working memory), one
consolidation adds up to P prototypes (long-term memory). Keys, shrinkage and selection are shared by every
object; values are per object. A late object (added after the store already held elements) only has values
for the elements added since it appeared: its slot's `valid_from` index marks the first one, and every element
from there on is valid for it (compaction and appends keep that a suffix).

Compared with the original's ragged per-group value lists (§2.4 of the reference), this layout keeps shapes
static, never concatenates the whole memory per frame, and lets long-term pruning work with any number of
object groups (the original raises NotImplementedError there).
"""
from __future__ import annotations

from typing import Sequence

import torch

INITIAL_LIFE = 1e-7  # life count of a new element (as the original), so usage / life is defined before any read
GROWTH_FACTOR = 2  # a growable store doubles its capacity when full


class MemoryStore:
    """Preallocated memory of keys, shrinkage, selection, per-object values and usage counters.

    Fields (E = `capacity` elements; rows [0, size) are live, rows [size, E) are zero and unused):
        keys:       E×C^k, float (float16 under AMP); memory keys k_i.
        shrinkage:  E, float, ≥ 1; shrinkage s_i of each element.
        selection:  E×C^k float in (0, 1), or None when the store keeps no selection (long-term memory, or
                    working memory without long-term consolidation).
        values:     E×N×C^v float; values[i, slot] is object `slot`'s value at element i (zero where invalid).
        use_count:  E, float32; total attention each element received (when `count_usage`).
        life_count: E, float32; INITIAL_LIFE + number of reads since the element was added (when `count_usage`).
        valid_from: N python ints; element i holds a value of object `slot` iff valid_from[slot] ≤ i < size.
    Invariants (`_check_invariants`): 0 ≤ size ≤ capacity; every buffer has `capacity` rows; values has one
    column per slot; 0 ≤ valid_from[slot] ≤ size; counters are float32; rows ≥ size are zero in values.

    Args:
        key_dim: C^k.
        value_dim: C^v.
        capacity: rows to preallocate (E).
        device, dtype: of keys, shrinkage, selection and values.
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
        self.valid_from: list[int] = []
        self.keys = torch.zeros(capacity, key_dim, device=device, dtype=dtype)
        self.shrinkage = torch.zeros(capacity, device=device, dtype=dtype)
        self.selection = torch.zeros(capacity, key_dim, device=device, dtype=dtype) if store_selection else None
        self.values = torch.zeros(capacity, 0, value_dim, device=device, dtype=dtype)
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

    def normalized_usage(self) -> torch.Tensor:
        """size float32 usage of the live elements: use_count / life_count (the original's `get_usage`).

        Raises:
            RuntimeError: the store does not count usage.
        """
        if not self.count_usage:
            raise RuntimeError("this memory store does not count usage (count_usage=False)")
        return self.use_count[: self.size] / self.life_count[: self.size]

    # ----------------------------------------------------------------------------------------------- mutators
    def add_objects(self, count: int) -> None:
        """Append `count` object slots, valid from the next element added (their values so far are zero).

        Reallocates `values` (objects are added rarely; elements never reallocate a full fixed-size store).
        """
        if count <= 0:
            return
        extra = self.values.new_zeros(self.capacity, count, self.value_dim)
        self.values = torch.cat([self.values, extra], dim=1)
        self.valid_from.extend([self.size] * count)

    def keep_objects(self, kept_slots: Sequence[int]) -> None:
        """Keep only the slots `kept_slots`, in that order (new slot i = old slot kept_slots[i]); drop the rest."""
        if list(kept_slots) == list(range(self.num_objects)):
            return
        index = torch.as_tensor(list(kept_slots), dtype=torch.long, device=self.values.device)
        self.values = self.values.index_select(1, index).contiguous()
        self.valid_from = [self.valid_from[slot] for slot in kept_slots]

    def append(
        self,
        keys: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor | None,
        values: torch.Tensor,
        *,
        first_valid: Sequence[int] | None = None,
    ) -> None:
        """Append n elements at the end.

        Args:
            keys: n×C^k. shrinkage: n. selection: n×C^k (ignored when the store keeps no selection).
            values: n×N×C^v, one column per slot (zeros where a slot is not valid).
            first_valid: per slot, the first of the n new elements that holds a valid value (n = none);
                None = every new element is valid for every slot. A slot that already holds valid elements
                must be valid on all new ones, so its valid elements stay one suffix.
        Raises:
            RuntimeError: a fixed-size store is full (the memory manager's budgets were not respected).
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
        if first_valid is not None:
            for slot, offset in enumerate(first_valid):
                if self.valid_from[slot] == self.size:
                    self.valid_from[slot] = self.size + offset
                elif offset != 0:
                    raise ValueError(
                        f"slot {slot} holds valid elements, so all {count} appended elements must be valid for it "
                        f"(first valid offset {offset})"
                    )
        rows = slice(self.size, self.size + count)
        self.keys[rows] = keys
        self.shrinkage[rows] = shrinkage
        if self.selection is not None:
            self.selection[rows] = selection
        self.values[rows] = values
        self.use_count[rows] = 0
        self.life_count[rows] = INITIAL_LIFE
        self.size += count

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

        keep: size bool. Valid-from indices move with their elements; freed rows are zeroed. No-op when all kept.
        """
        if keep.shape != (self.size,):
            raise ValueError(f"keep must be a bool mask of the {self.size} live elements, got shape {tuple(keep.shape)}")
        if bool(keep.all()):
            return
        kept_before = torch.cat([keep.new_zeros(1, dtype=torch.long), keep.long().cumsum(0)]).tolist()
        index = keep.nonzero().squeeze(1)
        new_size = index.numel()
        # Advanced indexing gathers into a temporary first, so overlapping source and destination rows are safe.
        for buffer in self._element_buffers():
            buffer[:new_size] = buffer[index]
            buffer[new_size : self.size] = 0
        self.life_count[new_size : self.size] = INITIAL_LIFE
        self.valid_from = [kept_before[start] for start in self.valid_from]
        self.size = new_size

    # ----------------------------------------------------------------------------------------------- internals
    def _element_buffers(self) -> list[torch.Tensor]:
        buffers = [self.keys, self.shrinkage, self.values, self.use_count, self.life_count]
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
        self.use_count = grown(self.use_count)
        self.life_count = grown(self.life_count, INITIAL_LIFE)

    def _check_invariants(self) -> None:
        """Assert the documented invariants (tests call this after every mutation)."""
        assert 0 <= self.size <= self.capacity, (self.size, self.capacity)
        for buffer in self._element_buffers():
            assert buffer.shape[0] == self.capacity, (buffer.shape, self.capacity)
        assert self.keys.shape[1] == self.key_dim and self.values.shape[2] == self.value_dim
        assert self.selection is None or self.selection.shape == self.keys.shape
        assert len(self.valid_from) == self.num_objects, (self.valid_from, self.num_objects)
        assert all(0 <= start <= self.size for start in self.valid_from), (self.valid_from, self.size)
        assert self.use_count.dtype == torch.float32 and self.life_count.dtype == torch.float32
        assert not bool(self.values[self.size :].any()), "rows past the fill count must be zero"
        for slot, start in enumerate(self.valid_from):
            assert not bool(self.values[:start, slot].any()), f"slot {slot} has values before valid_from={start}"
