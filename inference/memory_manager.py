"""Sensory, working and long-term memory of one video: writing, reading (top-k), consolidation and pruning.

The algorithm (XMem §3; the original's `inference/memory_manager.py`, reference §2.5-2.7), on two `MemoryStore`s
whose frame budgets are turned into element budgets once, in `initialize`, when the feature size h×w is known:
- write (`add_memory`): a memory frame's h·w keys, shrinkage, selection and per-object values are appended to
  working memory. A frame that introduces objects (the first memory frame, and any later one whose mask adds
  objects) is permanent: it stays in working memory while one of its objects is tracked.
- read (`read`): the query frame's similarity to every long-term and working element (anisotropic L2 with
  shrinkage and selection), then per query pixel a softmax over its k most similar elements and the weighted sum
  of their values. Each object reads only the elements written since it appeared (the stores hand out the
  groups of objects that read the same rows); the objects that read every element share one top-k, whose
  attention is added to each element's usage.
- consolidate (`_consolidate`): when working memory reaches T_max frames, every non-permanent frame but the newest
  T_min − 1 is a candidate; the P candidates with the highest usage (use / life) become long-term prototypes and
  the candidates leave working memory.
- potentiate: each prototype's value (per object) and shrinkage become the softmax-weighted average of the
  candidates its key and selection attend to (full softmax, no top-k).
- prune (`prune_long_term`): before consolidating, long-term memory is cut to LT_max − P elements by usage.
- bounded baselines (`working_memory_bound`, long-term memory off): working memory drops its oldest frames, with or
  without the permanent annotation frames, to stay within T_max frames or the full XMem's element budget.

Departures from the original, with the runs whose numbers they change (float32 runs whose objects are all given
on one frame: none of them changes a number beyond float rounding; the goldens check this):
- top-k softmax subtracts the maximum (finite for any similarity; the original gives NaN below about −100);
  changes nothing where the original is finite;
- the read gathers only the k selected values per query pixel (`model.memory_util.top_k_readout`, one function
  for one or two stores) instead of a dense affinity; float rounding only;
- fewer than k memory elements or fewer than P candidates use all of them (the original's topk raises);
- long-term pruning with nothing to remove is a no-op (the original raises IndexError), pruning works with
  objects that appeared late (the original raises NotImplementedError, reference §2.7 a), and long-term memory
  that does not count usage but must be pruned drops its oldest elements (the original raises);
- late objects (changes runs where an object enters after the first memory frame and consolidation happens
  after it): every element carries the memory frame it comes from, and stores keep elements in frame order
  (prototypes too, rather than by usage), so each object's valid elements stay aligned with their keys (the
  original misaligns a late group's prototypes, §2.7 c, and pairs its first-frame values with frame 0's keys,
  §2.7 b, and when the group holds exactly T_min+1 frames drops one unconsolidated, §2.7 d). The frame that
  introduces a late object is permanent like frame 0 (the paper's reason: an annotation is the only memory that
  is certainly right; Cutie keeps every annotation). Bounded: at most min(max_permanent_frames, T_max − T_min)
  frames are permanent, frame 0's among them: beyond that the oldest later introducing frame is consolidated
  normally (frame 0's never is), and removing the last object a permanent frame introduced releases it.
  `permanent_annotations: false` keeps only the first memory frame (the original's rule). With no consolidation
  after the late object enters, results equal the original's;
- mixed precision (changes AMP runs only): under autocast the similarity product runs in the autocast dtype but
  its scalings, every softmax (top-k and potentiation), the potentiation averages, usage and life counts run in
  float32, and both stores keep shrinkage in float32. The original (CUDA, with selection) also runs its top-k
  softmax, usage and potentiation softmax in float32 (its `qk.pow(2)` and sum promote the similarity); only its
  readout products (the read and potentiation's averages) and its prototypes' shrinkage are float16.

Length: one module on purpose: the manager is the only owner of memory state (the inference core, the benchmarks
and the speed tools call its operations: `read`, `add_memory`, `update_sensory`, `fill_to_bound`), so a change of
the store layout, a consolidation or eviction policy, or the sensory policy is made here and in memory_store.py
alone.
"""
from __future__ import annotations

import torch

from configs.schema import InferenceConfig, ModelConfig
from inference.memory_store import MemoryStore
from inference.object_manager import SlotRemap
from model.memory_util import get_similarity, softmax_affinity, top_k_readout

FIRST_MEMORY_FRAME = 0  # index of a video's first memory frame (its first annotation): always permanent


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
    `add_objects` and dropped with `keep_objects`; a slot reads only memory frames written after it was added,
    and the first memory frame written after it was added is the frame that introduces it (permanent, see the
    module docstring).

    Args:
        config: the inference settings (budgets, top_k, annotation memory, ablation switches).
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
        self.reading = model_config.reading  # the similarity switches every read and potentiation use
        self.hidden_dim = hidden_dim
        self.count_long_term_usage = count_long_term_usage
        self.num_objects = 0
        self.feature_size: tuple[int, int] | None = None
        # Element budgets (h·w elements per frame), set by `initialize`: the only frames → elements conversion.
        self.elements_per_frame = 0
        self.max_working_elements = 0  # T_max frames: consolidate when working memory reaches this
        self.recent_elements = 0  # the newest T_min − 1 frames, never consolidation candidates
        self.max_bounded_frames: int | None = None  # a bounded working memory's frames (None: no bound)
        # Permanent frames beyond T_max − T_min would leave no candidate to consolidate.
        self.max_permanent_frames = max(
            1, min(config.max_permanent_frames, config.max_working_frames - config.min_working_frames)
        )
        self.working: MemoryStore | None = None
        self.long_term: MemoryStore | None = None
        self.sensory: torch.Tensor | None = None  # 1×N×C^h×h×w, None before `initialize` or when C^h = 0
        self.next_memory_frame = 0  # index of the next memory frame `add_memory` writes
        self.permanent_frames: list[int] = []  # memory frames kept in working memory, oldest first
        self._prototype_generator = torch.Generator().manual_seed(config.seed)
        # Running totals, read by the eval runner after each frame to trace memory (inference/video_runner.py).
        self.consolidations = 0
        self.pruned_elements = 0

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

    @property
    def working_bytes(self) -> int:
        """Bytes of the live working-memory elements (`MemoryStore.live_bytes`)."""
        return 0 if self.working is None else self.working.live_bytes

    @property
    def long_term_bytes(self) -> int:
        """Bytes of the live long-term elements (`MemoryStore.live_bytes`)."""
        return 0 if self.long_term is None else self.long_term.live_bytes

    @property
    def stores_selection(self) -> bool:
        """Whether memory frames keep their selection (consolidation's potentiation reads it), so that the key
        encoding of a memory frame must compute it even when the frame is not segmented."""
        return self.config.enable_long_term

    def initialize(
        self, feature_size: tuple[int, int], *, key_dim: int, value_dim: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        """Allocate the stores for features of size h×w (= `feature_size`) and the current objects."""
        height, width = feature_size
        self.feature_size = (height, width)
        self.elements_per_frame = height * width
        self.max_working_elements = self.config.max_working_frames * self.elements_per_frame
        self.recent_elements = (self.config.min_working_frames - 1) * self.elements_per_frame
        long_term = self.config.enable_long_term
        bound = self.config.working_memory_bound
        if bound != "off":  # whole frames within T_max frames, or within the full XMem's working + long-term elements
            extra_elements = self.config.max_long_term_elements if bound == "xmem_elements" else 0
            extra_frames = extra_elements // self.elements_per_frame
            self.max_bounded_frames = self.config.max_working_frames + extra_frames
        capacity = self.max_working_elements if self.max_bounded_frames is None else (
            self.max_bounded_frames * self.elements_per_frame)
        self.working = MemoryStore(
            key_dim=key_dim,
            value_dim=value_dim,
            capacity=capacity,
            device=device,
            dtype=dtype,
            count_usage=long_term,
            store_selection=self.stores_selection,
            growable=not long_term and self.max_bounded_frames is None,
        )
        self.working.add_objects(self.num_objects, first_frame=self.next_memory_frame)
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
            self.long_term.add_objects(self.num_objects, first_frame=self.next_memory_frame)
        if self.hidden_dim > 0:
            self.sensory = torch.zeros(1, self.num_objects, self.hidden_dim, height, width, device=device)

    def add_objects(self, count: int) -> None:
        """Add `count` object slots: zero sensory memory, reading memory from the next memory frame on."""
        self.num_objects += count
        for store in self._stores():
            store.add_objects(count, first_frame=self.next_memory_frame)
        if self.sensory is not None and count > 0:
            zeros = self.sensory.new_zeros(1, count, *self.sensory.shape[2:])
            self.sensory = torch.cat([self.sensory, zeros], dim=1)

    def keep_objects(self, remap: SlotRemap) -> None:
        """Apply an object removal: keep only `remap.kept_slots` (in that order) in every store and the sensory memory.

        A permanent frame none of whose objects is kept any more becomes an ordinary frame (consolidated next).
        """
        self.num_objects = len(remap.kept_slots)
        for store in self._stores():
            store.keep_objects(remap.kept_slots)
        if self.sensory is not None:
            self.sensory = remap.apply(self.sensory, dim=1)
        if self.working is not None:
            introducing = set(self.working.first_frame)
            self.permanent_frames = [frame for frame in self.permanent_frames if frame in introducing]

    def _stores(self) -> list[MemoryStore]:
        return [store for store in (self.long_term, self.working) if store is not None]

    def live_elements(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every live element in the order `read` stacks them (long-term, then working memory), as new tensors.

        For reference computations and checks (e.g. scripts/speed/speed_compare.py reads them the original's way).

        Returns:
            keys n×C^k, shrinkage n (float32 under AMP), values n×N×C^v (zero where an element is not valid for
            an object).
        """
        stores = self._stores()
        return (torch.cat([store.live_keys() for store in stores]),
                torch.cat([store.live_shrinkage() for store in stores]),
                torch.cat([store.live_values() for store in stores]))

    # ----------------------------------------------------------------------------------------------- sensory
    @property
    def keeps_sensory_memory(self) -> bool:
        """Whether updates change the sensory memory: the network has one (C^h > 0) and `use_sensory_memory` is on
        (off, an ablation: it stays zero)."""
        return self.hidden_dim > 0 and self.config.use_sensory_memory

    def update_sensory(self, hidden: torch.Tensor | None) -> None:
        """Take the sensory memory that the decoder's normal update or a deep update computed.

        Ignored unless `keeps_sensory_memory` (no sensory memory, or it is held at zero), or when `hidden` is None.

        Args:
            hidden: 1×N×C^h×h×w, or None (no update was computed).
        """
        if hidden is not None and self.keeps_sensory_memory:
            self.sensory = hidden

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
            reading=self.reading,
        )[0]

    def read(self, query_key: torch.Tensor, query_selection: torch.Tensor | None) -> torch.Tensor:
        """Memory readout of one query frame for every object, and usage counting (the original's match_memory).

        Each group of objects reads the long-term and working rows valid for it (`MemoryStore.slot_groups`); the
        group that reads every row (as the original's first object group) counts usage, with a read for usage
        only when no tracked object reads every row.

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
        sizes = [store.size for store in stores]
        store_rows = similarity.split(sizes)  # each store's n_i×M block
        value_dim = stores[0].value_dim
        result = query_key.new_zeros(self.num_objects, value_dim, height * width)

        # Every store groups the slots by first frame, in the same order: zip them into (slots, start per store).
        reads = [
            (groups[0].slots, [group.start for group in groups])
            for groups in zip(*(store.slot_groups() for store in stores))
        ]
        someone_reads_everything = any(not any(starts) for _, starts in reads)
        if any(store.count_usage for store in stores) and not someone_reads_everything:
            reads.append(((), [0] * len(stores)))  # usage is counted on the full memory, read by no object
        for slots, starts in reads:
            if starts == sizes:
                continue  # nothing written since these objects appeared: their readout stays zero
            reads_everything = not any(starts)
            if reads_everything:
                group_similarity = similarity
            else:
                group_similarity = torch.cat([rows[start:] for rows, start in zip(store_rows, starts)])
            tables = [store.live_values()[start:].flatten(start_dim=1) for store, start in zip(stores, starts)]
            group_readout, usage = top_k_readout(
                group_similarity, [table for table in tables if table.shape[0] > 0],
                self.config.top_k or group_similarity.shape[0],  # top_k None: every element (full softmax)
            )
            if slots:
                result[list(slots)] = group_readout.view(self.num_objects, value_dim, -1)[list(slots)].to(result.dtype)
            if reads_everything:
                for store, part in zip(stores, usage.split(sizes)):
                    store.add_usage(part)
        return result.view(1, self.num_objects, value_dim, height, width)

    # ----------------------------------------------------------------------------------------------- writing
    def add_memory(
        self,
        key: torch.Tensor,
        shrinkage: torch.Tensor,
        selection: torch.Tensor | None,
        value: torch.Tensor,
    ) -> None:
        """Write one memory frame to working memory; consolidate into long-term memory when it is full.

        The frame is permanent when it introduces objects (objects added since the previous memory frame) and
        permanent annotations are on, or when it is the video's first memory frame.

        Args:
            key: 1×C^k×h×w. shrinkage: 1×1×h×w (≥ 1). selection: 1×C^k×h×w, or None; kept only when
                `stores_selection` (ignored otherwise). value: 1×N×C^v×h×w, one value per object slot.
        """
        working = self.working
        frame = self.next_memory_frame
        self.next_memory_frame += 1
        keys = key.flatten(start_dim=2)[0].t()
        values = value[0].flatten(start_dim=2).permute(2, 0, 1)
        frame_selection = None if selection is None else selection.flatten(start_dim=2)[0].t()
        if self.max_bounded_frames is not None:
            self._drop_oldest_frames(self.max_bounded_frames - 1)  # room for this frame
        working.append(keys, shrinkage.flatten(), frame_selection, values, frame)
        introduces_objects = frame in working.first_frame
        if introduces_objects and (self.config.permanent_annotations or frame == FIRST_MEMORY_FRAME):
            self.permanent_frames.append(frame)
            if len(self.permanent_frames) > self.max_permanent_frames:
                # Beyond the cap the oldest later introducing frame becomes ordinary; the first memory frame (frame
                # 0's annotation) never does, as in the paper and the original.
                keeps_first = self.permanent_frames[0] == FIRST_MEMORY_FRAME
                del self.permanent_frames[1 if keeps_first else 0]
        if not self.config.enable_long_term:
            return
        if working.size >= self.max_working_elements:
            self.prune_long_term(self.config.max_long_term_elements - self.config.num_prototypes)
            self._consolidate()

    @torch.inference_mode()
    def fill_to_bound(self, generator: torch.Generator) -> int:
        """Write random memory frames until memory is as large as a long video makes it (speed and memory benchmarks).

        Every frame goes through `add_memory`, the real write path (permanence, consolidation, pruning, bounded
        dropping), so the stores end in the state a long video reaches. Only the content is random: keys N(0, 1),
        shrinkage in [1, 2), selection in [0, 1), values N(0, 1). Before each write the usage-counting stores get
        random usage in [0, 1) per element, standing in for the reads between memory frames (with none, all usage
        ties at zero and pruning, which drops ties at its threshold, would empty long-term memory).

        With long-term memory, frames are written until long-term memory has been pruned once (it then holds
        LT_max − P elements plus the newest prototypes, its steady state), then until working memory holds T_max − 1
        frames (the next memory frame consolidates). With a bounded working memory, until it holds its bound.

        Args:
            generator: draws the random content (CPU generator).
        Returns:
            the number of memory frames written.
        Raises:
            ValueError: the stores are not allocated yet (`initialize`), or working memory is unbounded (long-term
                memory off and `working_memory_bound` off), so there is no bound to fill to.
        """
        if not self.initialized:
            raise ValueError("fill_to_bound: the stores are not allocated yet; initialize the memory (or step the "
                             "first annotated frame) first")
        if self.long_term is None and self.max_bounded_frames is None:
            raise ValueError("fill_to_bound: working memory is unbounded (inference.enable_long_term=false and "
                             "inference.working_memory_bound=off), so there is no bound to fill to")
        pruned_before = self.pruned_elements
        written = 0
        while not self._at_bound(pruned_once=self.pruned_elements > pruned_before):
            for store in self._stores():
                store.add_usage(torch.rand(store.size, generator=generator).to(store.use_count.device))
            self.add_memory(*self._random_frame(generator))
            written += 1
        return written

    def _at_bound(self, *, pruned_once: bool) -> bool:
        """Whether `fill_to_bound` is done (see there)."""
        working_frames = self.working.size // self.elements_per_frame
        if self.long_term is None:
            return working_frames >= self.max_bounded_frames
        return pruned_once and working_frames >= self.config.max_working_frames - 1

    def _random_frame(self, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """key 1×C^k×h×w, shrinkage 1×1×h×w, selection 1×C^k×h×w, value 1×N×C^v×h×w of `fill_to_bound`."""
        working = self.working
        size = self.feature_size
        key = torch.randn(1, working.key_dim, *size, generator=generator)
        shrinkage = 1 + torch.rand(1, 1, *size, generator=generator)
        selection = torch.rand(1, working.key_dim, *size, generator=generator)
        value = torch.randn(1, self.num_objects, working.value_dim, *size, generator=generator)
        return key.to(working.keys), shrinkage.to(working.shrinkage), selection.to(working.keys), value.to(working.keys)

    def _drop_oldest_frames(self, max_frames: int) -> None:
        """Bounded working memory: drop its oldest frames until at most `max_frames` remain. With
        `bound_keeps_annotations` the permanent frames stay (unless nothing else is left to drop)."""
        frames = self.working.live_frame_index()
        held = torch.unique_consecutive(frames)  # ascending: the store keeps frame order
        excess = held.numel() - max_frames
        if excess <= 0:
            return
        droppable = held
        if self.config.bound_keeps_annotations:
            permanent = torch.tensor(self.permanent_frames, dtype=held.dtype, device=held.device)
            ordinary = held[~torch.isin(held, permanent)]
            droppable = ordinary if ordinary.numel() >= excess else held
        dropped = droppable[:excess]
        self.working.compact(~torch.isin(frames, dropped))
        gone = set(dropped.tolist())
        self.permanent_frames = [frame for frame in self.permanent_frames if frame not in gone]

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
        size_before = long_term.size
        long_term.compact(keep)
        self.pruned_elements += size_before - long_term.size

    def _consolidate(self) -> None:
        """Turn the non-permanent, non-recent working frames into P long-term prototypes (paper §3.3).

        Candidates: working elements of non-permanent frames, except the newest T_min − 1 frames. Prototypes: the
        P candidates with the highest usage (or P random ones), kept in frame order. Potentiation: per group of
        objects (`MemoryStore.slot_groups`), each valid prototype's value becomes the softmax-weighted average over
        the group's valid candidates that the prototype's key/selection attends to; its shrinkage the same average
        over all candidates. The candidates are then removed from working memory.
        """
        working, config = self.working, self.config
        frames = working.live_frame_index()
        permanent = torch.isin(frames, torch.tensor(self.permanent_frames, dtype=frames.dtype, device=frames.device))
        is_candidate = ~permanent
        is_candidate[working.size - self.recent_elements :] = False
        candidate_rows = is_candidate.nonzero().squeeze(1)
        num_candidates = candidate_rows.numel()
        num_prototypes = min(config.num_prototypes, num_candidates)
        if config.prototype_selection == "usage":
            usage = working.normalized_usage()[candidate_rows]
            _, indices = torch.topk(usage, k=num_prototypes, sorted=True)
        else:
            indices = torch.randperm(num_candidates, generator=self._prototype_generator)[:num_prototypes]
            indices = indices.to(candidate_rows.device)
        prototype_rows = candidate_rows[indices.sort().values]  # frame order, as the store keeps it
        prototype_keys = working.keys[prototype_rows]
        candidate_values = working.values[candidate_rows]

        if config.use_potentiation:
            candidate_shrinkage = working.shrinkage[candidate_rows]
            prototype_selection = working.selection[prototype_rows]
            similarity = self._similarity(
                working.keys[candidate_rows], candidate_shrinkage, prototype_keys.t(), prototype_selection.t()
            )  # candidates × prototypes: the candidates are the memory, the prototypes the queries
            prototype_values = candidate_values.new_zeros(num_prototypes, self.num_objects, working.value_dim)
            # The softmaxes and weighted averages run in float32 also under autocast (once per consolidation).
            with torch.autocast(similarity.device.type, enabled=False):
                full_affinity = softmax_affinity(similarity.unsqueeze(0))[0]
                prototype_shrinkage = candidate_shrinkage.to(full_affinity.dtype) @ full_affinity
                groups = zip(working.slot_groups(candidate_rows), working.slot_groups(prototype_rows))
                for candidates, prototypes in groups:  # the same slots, candidate and prototype starts
                    if prototypes.start == num_prototypes:
                        continue  # no prototype is valid for these objects
                    affinity = (
                        full_affinity if candidates.start == 0
                        else softmax_affinity(similarity[candidates.start :, prototypes.start :].unsqueeze(0))[0]
                    )
                    slots = list(candidates.slots)
                    group_values = candidate_values[candidates.start :, slots].to(affinity.dtype)  # rows × g × C^v
                    prototype_values[prototypes.start :, slots] = torch.einsum(
                        "rgc,rp->pgc", group_values, affinity
                    ).to(prototype_values.dtype)
        else:
            prototype_shrinkage = working.shrinkage[prototype_rows]
            prototype_values = working.values[prototype_rows]  # a late object's invalid rows are zero already

        self.long_term.append(prototype_keys, prototype_shrinkage, None, prototype_values, frames[prototype_rows])
        working.compact(~is_candidate)
        self.consolidations += 1
