"""Sensory, working and long-term memory of one video: reading (top-k), writing, consolidation and pruning.

The per-frame algorithm of the original (`inference/memory_manager.py` of XMem, reference §2.5-2.7), on
`MemoryStore`s. Frame budgets (T_min, T_max) are converted to element budgets once, when the feature size h×w is
known. Departures from the original, each exact where the original is well defined:
- top-k softmax subtracts the maximum (finite for any similarity; the original gives NaN below about −100);
- the read gathers only the k selected values per query pixel (no dense k-sparse affinity);
- fewer than k memory elements or fewer than P candidates use all of them (the original's topk raises);
- long-term pruning with nothing to remove is a no-op (the original raises IndexError), and pruning works with
  objects that appeared late (the original raises NotImplementedError, reference §2.7 a);
- prototypes are stored in chronological order rather than by usage, so each late object's valid prototypes are
  one suffix and stay aligned with their keys (the original misaligns them, §2.7 c). Reading is unaffected:
  top-k and pruning do not depend on element order;
- a late object keeps its values aligned with its own keys through consolidation: its frames are consolidated
  like any other non-permanent frame (only the video's first memory frame is permanent, for every object). The
  original keeps a late group's first-frame values but pairs them with the video's first-frame key (§2.7 b) and,
  when the group holds exactly T_min+1 frames, drops one frame without consolidating it (§2.7 d);
- long-term memory that does not count usage but must be pruned drops its oldest elements (the original raises).
"""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F

from configs.schema import InferenceConfig, ModelConfig
from inference.memory_store import MemoryStore
from inference.object_manager import SlotRemap
from model.memory_util import get_similarity, readout, softmax_affinity, top_k_readout


def resolve_long_term_count_usage(config: InferenceConfig, num_frames: int | None) -> bool:
    """Whether long-term memory counts usage: the original decides per video from its length.

    `auto`: on iff num_frames / (T_max − T_min) · P ≥ LT_max (long enough for pruning to be possible), and on
    when the length is unknown. `on` / `off` force it. Always off without long-term memory.
    """
    if not config.enable_long_term or config.long_term_count_usage == "off":
        return False
    if config.long_term_count_usage == "on" or num_frames is None:
        return True
    consolidated_frames = config.max_working_frames - config.min_working_frames
    return num_frames / consolidated_frames * config.num_prototypes >= config.max_long_term_elements


class MemoryManager:
    """The memories of one video: sensory memory (per object), working memory and long-term memory.

    Created empty; `initialize(h, w, ...)` on the first frame allocates the stores (working memory holds up to
    T_max frames of h·w elements, long-term memory up to LT_max elements). Object slots are added with
    `add_objects` and dropped with `keep_objects`; a slot added after elements exist is valid only from the
    next element written (it never reads memory written before it appeared).

    Args:
        config: the inference settings (budgets, top_k, ablation switches).
        model_config: the similarity switches the network was trained with.
        hidden_dim: C^h of the network (0: no sensory memory).
        count_long_term_usage: whether long-term memory counts usage (`resolve_long_term_count_usage`).
    """

    def __init__(
        self,
        config: InferenceConfig,
        *,
        model_config: ModelConfig,
        hidden_dim: int,
        count_long_term_usage: bool,
    ):
        self.config = config
        self.model_config = model_config
        self.hidden_dim = hidden_dim
        self.count_long_term_usage = count_long_term_usage
        self.num_objects = 0
        self.feature_size: tuple[int, int] | None = None
        self.elements_per_frame = 0  # h·w, known after `initialize`
        self.working: MemoryStore | None = None
        self.long_term: MemoryStore | None = None
        self.sensory: torch.Tensor | None = None  # 1×N×C^h×h×w, None before `initialize` or when C^h = 0
        self._prototype_generator = torch.Generator().manual_seed(config.seed)

    # ----------------------------------------------------------------------------------------------- setup
    @property
    def initialized(self) -> bool:
        """Whether the stores exist (the first frame has been seen)."""
        return self.working is not None

    @property
    def working_elements(self) -> int:
        """Elements in working memory (h·w per memory frame)."""
        return 0 if self.working is None else self.working.size

    @property
    def long_term_elements(self) -> int:
        """Elements (prototypes) in long-term memory."""
        return 0 if self.long_term is None else self.long_term.size

    def initialize(
        self, feature_size: tuple[int, int], *, key_dim: int, value_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        """Allocate the stores for features of size h×w (= `feature_size`) and the current objects."""
        height, width = feature_size
        self.feature_size = (height, width)
        self.elements_per_frame = height * width
        max_working_elements = self.config.max_working_frames * self.elements_per_frame
        long_term = self.config.enable_long_term
        self.working = MemoryStore(
            key_dim=key_dim,
            value_dim=value_dim,
            capacity=max_working_elements,
            device=device,
            dtype=dtype,
            count_usage=long_term,
            store_selection=long_term,
            growable=not long_term,
        )
        self.working.add_objects(self.num_objects)
        if long_term:
            self.long_term = MemoryStore(
                key_dim=key_dim,
                value_dim=value_dim,
                capacity=self.config.max_long_term_elements,
                device=device,
                dtype=dtype,
                count_usage=self.count_long_term_usage,
                store_selection=False,
            )
            self.long_term.add_objects(self.num_objects)
        if self.hidden_dim > 0:
            self.sensory = torch.zeros(1, self.num_objects, self.hidden_dim, height, width, device=device)

    def add_objects(self, count: int) -> None:
        """Add `count` object slots: zero sensory memory, values valid from the next memory frame."""
        self.num_objects += count
        for store in self._stores():
            store.add_objects(count)
        if self.sensory is not None and count > 0:
            zeros = self.sensory.new_zeros(1, count, *self.sensory.shape[2:])
            self.sensory = torch.cat([self.sensory, zeros], dim=1)

    def keep_objects(self, remap: SlotRemap) -> None:
        """Apply an object removal: keep only `remap.kept_slots` (in that order) in every store and the sensory memory."""
        self.num_objects = len(remap.kept_slots)
        for store in self._stores():
            store.keep_objects(remap.kept_slots)
        if self.sensory is not None:
            self.sensory = remap.apply(self.sensory, dim=1)

    def _stores(self) -> list[MemoryStore]:
        return [store for store in (self.long_term, self.working) if store is not None]

    # ----------------------------------------------------------------------------------------------- reading
    def _similarity(
        self,
        memory_key: torch.Tensor,
        memory_shrinkage: torch.Tensor,
        query_key: torch.Tensor,
        query_selection: torch.Tensor | None,
    ) -> torch.Tensor:
        """n×M similarity of n memory elements (n×C^k keys, n shrinkage) to M queries (C^k×M key/selection)."""
        return get_similarity(
            memory_key.t().unsqueeze(0),
            memory_shrinkage.view(1, 1, -1),
            query_key.unsqueeze(0),
            None if query_selection is None else query_selection.unsqueeze(0),
            mode=self.model_config.similarity,
            use_shrinkage=self.model_config.use_shrinkage,
            use_selection=self.model_config.use_selection,
        )[0]

    def read(self, query_key: torch.Tensor, query_selection: torch.Tensor | None) -> torch.Tensor:
        """Memory readout of one query frame for every object, and usage counting (the original's match_memory).

        Each object reads the long-term and working elements valid for it; objects valid on every element share
        one top-k affinity (as the original's first object group), whose row sums are the usage.

        Args:
            query_key: 1×C^k×h×w. query_selection: 1×C^k×h×w in (0, 1), or None (no selection term).
        Returns:
            readout 1×N×C^v×h×w (zero for an object without any valid memory element).
        """
        height, width = query_key.shape[-2:]
        stores = [store for store in self._stores() if store.size > 0]
        if not stores:
            return query_key.new_zeros(1, self.num_objects, self.working.value_dim, height, width)
        query_key = query_key.flatten(start_dim=2)[0]
        query_selection = None if query_selection is None else query_selection.flatten(start_dim=2)[0]
        if len(stores) == 1:
            memory_keys, memory_shrinkage = stores[0].live_keys(), stores[0].live_shrinkage()
        else:  # concatenating the keys (n×C^k) is far cheaper than concatenating two n_i×M similarities
            memory_keys = torch.cat([store.live_keys() for store in stores])
            memory_shrinkage = torch.cat([store.live_shrinkage() for store in stores])
        similarity = self._similarity(memory_keys, memory_shrinkage, query_key, query_selection)
        value_dim = stores[0].value_dim
        result = query_key.new_zeros(self.num_objects, value_dim, height * width)

        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for slot in range(self.num_objects):
            groups[tuple(store.valid_from[slot] for store in stores)].append(slot)
        everything = tuple(0 for _ in stores)
        counting = any(store.count_usage for store in stores)
        if counting and everything not in groups:
            groups[everything] = []  # usage is counted on the full memory even if no object reads all of it

        for starts, slots in groups.items():
            offsets = [0]
            for store in stores[:-1]:
                offsets.append(offsets[-1] + store.size)
            row_ranges = [(offset + start, offset + store.size) for offset, start, store in zip(offsets, starts, stores)]
            if all(begin == end for begin, end in row_ranges):
                continue
            if starts == everything:
                group_similarity = similarity
            else:
                group_similarity = torch.cat([similarity[begin:end] for begin, end in row_ranges])
            tables = [
                store.live_values()[start:].flatten(start_dim=1) for start, store in zip(starts, stores)
                if start < store.size
            ]
            group_readout, usage = self._read_values(group_similarity, tables)
            if slots:
                result[slots] = group_readout.view(self.num_objects, value_dim, -1)[slots].to(result.dtype)
            if starts == everything:
                for store, part in zip(stores, usage.split([store.size for store in stores])):
                    store.add_usage(part)
        return result.view(1, self.num_objects, value_dim, height, width)

    def _read_values(self, similarity: torch.Tensor, tables: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (or full) softmax read of n×M similarity over the rows of `tables` stacked in order.

        Args:
            similarity: n×M. tables: element-major values, n_i×D each, Σ n_i = n.
        Returns:
            (readout D×M, usage n float32).
        """
        top_k = self.config.top_k
        if top_k is None:
            affinity, usage = softmax_affinity(similarity.unsqueeze(0), return_usage=True)
            values = tables[0] if len(tables) == 1 else torch.cat(tables)
            return readout(affinity, values.t().unsqueeze(0))[0], usage[0].float()
        if len(tables) == 1:
            memory_readout, usage = top_k_readout(
                similarity.unsqueeze(0), tables[0].unsqueeze(0), top_k, element_major=True
            )
            return memory_readout[0], usage[0].float()
        return _gathered_read_from_tables(similarity, tables, top_k)

    # ----------------------------------------------------------------------------------------------- writing
    def add_memory(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor | None,
        value: torch.Tensor,
    ) -> None:
        """Write one memory frame to working memory; consolidate into long-term memory when it is full.

        Args:
            key: 1×C^k×h×w. shrinkage: 1×1×h×w (≥ 1). selection: 1×C^k×h×w, or None (kept only with long-term
                memory). value: 1×N×C^v×h×w, one value per object slot.
        """
        working = self.working
        keys = key.flatten(start_dim=2)[0].t()
        values = value[0].flatten(start_dim=2).permute(2, 0, 1)
        frame_selection = None if selection is None else selection.flatten(start_dim=2)[0].t()
        working.append(keys, shrinkage.flatten(), frame_selection, values)
        if not self.config.enable_long_term:
            return
        if working.size >= self.config.max_working_frames * self.elements_per_frame:
            self.prune_long_term(self.config.max_long_term_elements - self.config.num_prototypes)
            self._consolidate()

    def prune_long_term(self, max_elements: int) -> None:
        """Shrink long-term memory to at most `max_elements` by usage (no-op when it already fits).

        The original's rule: with u = use/life, find the (size − max_elements) smallest u; keep only elements with
        u strictly above the largest of them, so ties at the threshold all go and the store may end up smaller.
        Without usage counting the oldest elements go.
        """
        long_term = self.long_term
        excess = long_term.size - max_elements
        if excess <= 0:
            return
        if long_term.count_usage:
            usage = long_term.normalized_usage()
            threshold = torch.topk(usage, k=excess, largest=False, sorted=True).values[-1]
            keep = usage > threshold
        else:
            keep = torch.arange(long_term.size, device=long_term.keys.device) >= excess
        long_term.compact(keep)

    def _consolidate(self) -> None:
        """Turn the non-permanent, non-recent working frames into P long-term prototypes (paper §3.3).

        Candidates: working elements after the first memory frame (permanent) and before the newest T_min − 1
        frames. Prototypes: the P candidates with the highest usage (or P random ones). Potentiation: each
        prototype's value (per object) and shrinkage become the softmax-weighted average over the candidates
        that the prototype's key/selection attends to. The candidates are then removed from working memory.
        """
        working, config = self.working, self.config
        start = self.elements_per_frame
        end = working.size - (config.min_working_frames - 1) * self.elements_per_frame
        num_candidates = end - start
        num_prototypes = min(config.num_prototypes, num_candidates)
        candidate_keys = working.keys[start:end]
        candidate_shrinkage = working.shrinkage[start:end]
        candidate_values = working.values[start:end]
        if config.prototype_selection == "usage":
            _, indices = torch.topk(working.normalized_usage()[start:end], k=num_prototypes, sorted=True)
        else:
            indices = torch.randperm(num_candidates, generator=self._prototype_generator)[:num_prototypes]
            indices = indices.to(candidate_keys.device)
        indices = indices.sort().values  # chronological: each late object's valid prototypes form a suffix
        prototype_keys = candidate_keys[indices]

        # Per object: candidate rows valid for it start at `first_row`; prototypes drawn from before it are invalid.
        groups: dict[int, list[int]] = defaultdict(list)
        for slot, valid_from in enumerate(working.valid_from):
            groups[max(valid_from - start, 0)].append(slot)
        first_valid = [num_prototypes] * self.num_objects
        prototype_values = candidate_values.new_zeros(num_prototypes, self.num_objects, working.value_dim)

        if config.use_potentiation:
            prototype_selection = working.selection[start:end][indices]
            similarity = self._similarity(
                candidate_keys, candidate_shrinkage, prototype_keys.t(), prototype_selection.t()
            )  # candidates × prototypes: the candidates are the memory, the prototypes the queries
            full_affinity = softmax_affinity(similarity.unsqueeze(0))[0]
            prototype_shrinkage = candidate_shrinkage @ full_affinity
            for first_row, slots in groups.items():
                valid = indices >= first_row
                num_invalid = int((~valid).sum())
                if first_row >= num_candidates or num_invalid == num_prototypes:
                    continue
                affinity = (
                    full_affinity if first_row == 0
                    else softmax_affinity(similarity[first_row:, num_invalid:].unsqueeze(0))[0]
                )
                group_values = candidate_values[first_row:, slots]  # rows × g × C^v
                prototype_values[num_invalid:, slots] = torch.einsum("rgc,rp->pgc", group_values, affinity)
                for slot in slots:
                    first_valid[slot] = num_invalid
        else:
            prototype_shrinkage = candidate_shrinkage[indices]
            prototype_values = candidate_values[indices]  # invalid rows of a late object are zero already
            for first_row, slots in groups.items():
                num_invalid = int((indices < first_row).sum())
                for slot in slots:
                    first_valid[slot] = num_invalid

        self.long_term.append(prototype_keys, prototype_shrinkage, None, prototype_values, first_valid=first_valid)
        element = torch.arange(working.size, device=working.keys.device)
        working.compact((element < start) | (element >= end))


def _gathered_read_from_tables(
    similarity: torch.Tensor, tables: list[torch.Tensor], top_k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k read over several value tables (long-term and working memory) without concatenating them.

    One top-k over the n×M similarity, then one `embedding_bag` per table summing only the selected rows that lie
    in it (weights of rows in other tables are zeroed). Equal to the dense top-k read up to float rounding.

    Returns:
        (readout D×M, usage n float32).
    """
    num_elements = similarity.shape[0]
    top_similarity, top_indices = torch.topk(similarity, k=min(top_k, num_elements), dim=0)  # k×M each
    weights = torch.softmax(top_similarity.float(), dim=0)  # the max-subtracted top-k softmax
    memory_readout = None
    first_row = 0
    for table in tables:
        rows = table.shape[0]
        inside = (top_indices >= first_row) & (top_indices < first_row + rows)
        bag = F.embedding_bag(
            (top_indices - first_row).clamp(0, rows - 1).t(),  # M×k rows of this table (others weigh 0)
            table,
            per_sample_weights=(weights * inside).to(table.dtype).t(),
            mode="sum",
        ).t()
        memory_readout = bag if memory_readout is None else memory_readout + bag
        first_row += rows
    usage = weights.new_zeros(num_elements).scatter_add_(0, top_indices.flatten(), weights.flatten())
    return memory_readout, usage
