"""MemoryStore (buffers, compaction, valid-from) and MemoryManager (read, consolidation, pruning) on random tensors."""
import pytest
import torch

from configs.schema import InferenceConfig, ModelConfig
from inference.memory_manager import MemoryManager, resolve_long_term_count_usage
from inference.memory_store import INITIAL_LIFE, MemoryStore, SlotGroup
from inference.object_manager import SlotRemap
from model.memory_util import get_similarity
from model.reference_memory import dense_top_k_read, term_by_term_similarity

KEY_DIM, VALUE_DIM = 64, 512
FEATURE_SIZE = (2, 3)  # h×w of the query frames: 6 elements per memory frame
ELEMENTS = FEATURE_SIZE[0] * FEATURE_SIZE[1]


def _store(capacity=8, *, count_usage=True, store_selection=True, growable=False, value_dim=4):
    return MemoryStore(
        key_dim=3, value_dim=value_dim, capacity=capacity, device="cpu", dtype=torch.float32,
        count_usage=count_usage, store_selection=store_selection, growable=growable,
    )


def _append(store, count, *, frame=0, start_value=1.0):
    """Append `count` elements of memory frame `frame`, valued `start_value` for the slots valid on that frame."""
    keys = torch.arange(count * 3, dtype=torch.float32).view(count, 3) + start_value
    values = torch.full((count, store.num_objects, store.value_dim), start_value)
    for slot, first in enumerate(store.first_frame):
        if frame < first:
            values[:, slot] = 0
    store.append(keys, torch.ones(count), torch.rand(count, 3), values, frame)
    store._check_invariants()


# ----------------------------------------------------------------------------------------------- MemoryStore
def test_append_fills_in_order_without_reallocating():
    store = _store()
    store.add_objects(2, first_frame=0)
    pointers = [buffer.data_ptr() for buffer in store._element_buffers()]
    _append(store, 3, frame=0, start_value=1)
    _append(store, 5, frame=1, start_value=2)
    assert store.size == store.capacity == 8
    assert store.live_values()[:3].eq(1).all() and store.live_values()[3:].eq(2).all()
    assert store.live_frame_index().tolist() == [0] * 3 + [1] * 5
    assert [buffer.data_ptr() for buffer in store._element_buffers()] == pointers


def test_full_fixed_store_refuses_to_grow():
    store = _store(capacity=4)
    store.add_objects(1, first_frame=0)
    _append(store, 4)
    with pytest.raises(RuntimeError, match="memory store full: 4 \\+ 1 elements exceed its capacity of 4"):
        _append(store, 1)


def test_growable_store_doubles_capacity_and_keeps_contents():
    store = _store(capacity=4, growable=True)
    store.add_objects(1, first_frame=0)
    _append(store, 3, frame=0, start_value=1)
    _append(store, 3, frame=1, start_value=2)
    assert store.capacity == 8 and store.size == 6
    assert store.live_values()[:3].eq(1).all() and store.live_values()[3:].eq(2).all()
    assert store.live_frame_index().tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(store.life_count[6:], torch.full((2,), INITIAL_LIFE))


def test_late_object_reads_from_its_first_frame_and_groups_hand_out_rows():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 3, frame=0)
    store.add_objects(1, first_frame=1)
    store._check_invariants()
    assert store.valid_from == [0, 3]
    _append(store, 2, frame=1)
    assert store.live_values()[:3, 1].eq(0).all() and store.live_values()[3:, 1].eq(1).all()
    store.add_objects(2, first_frame=2)
    assert store.slot_groups() == [SlotGroup((0,), 0, 0), SlotGroup((1,), 1, 3), SlotGroup((2, 3), 2, 5)]
    # Asked about a subset of rows (e.g. consolidation candidates 1, 2 and 4), the starts are positions in it.
    rows = torch.tensor([1, 2, 4])
    assert [group.start for group in store.slot_groups(rows)] == [0, 2, 3]


def test_objects_cannot_be_added_after_their_first_frame_was_written():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 2, frame=3)
    with pytest.raises(ValueError, match="new objects read memory frames ≥ 3, but the store already holds frame 3"):
        store.add_objects(1, first_frame=3)


def test_compact_keeps_order_in_place_and_validity_follows_the_frames():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 4, frame=0, start_value=1)
    store.add_objects(1, first_frame=1)
    _append(store, 4, frame=1, start_value=5)
    keys_before = store.live_keys().clone()
    pointer = store.keys.data_ptr()
    keep = torch.tensor([True, False, True, False, False, True, True, False])
    store.compact(keep)
    store._check_invariants()
    assert store.size == 4 and store.keys.data_ptr() == pointer
    assert torch.equal(store.live_keys(), keys_before[keep])
    assert store.valid_from == [0, 2]  # element 4 (the late object's first) is gone; element 5 is now at 2
    assert store.keys[4:].eq(0).all() and store.values[4:].eq(0).all() and store.frame_index[4:].eq(0).all()


def test_older_elements_are_merged_into_frame_order():
    """Prototypes of a formerly permanent frame are older than the newest long-term elements: they go before."""
    store = _store(capacity=10, store_selection=False)
    store.add_objects(1, first_frame=0)
    _append(store, 2, frame=0, start_value=1)
    store.add_objects(1, first_frame=4)
    _append(store, 3, frame=5, start_value=5)
    store.add_usage(torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0]))
    old_values = torch.zeros(2, 2, store.value_dim)
    old_values[:, 0] = 3  # frame 2 is valid for slot 0 only
    store.append(torch.full((2, 3), 3.0), torch.ones(2), None, old_values, torch.tensor([2, 2]))
    store._check_invariants()
    assert store.live_frame_index().tolist() == [0, 0, 2, 2, 5, 5, 5]
    assert store.live_values()[:, 0, 0].tolist() == [1, 1, 3, 3, 5, 5, 5]
    assert store.live_values()[:, 1, 0].tolist() == [0, 0, 0, 0, 5, 5, 5]
    assert store.live_keys()[2:4].eq(3).all() and store.use_count[:7].tolist() == [0, 0, 0, 0, 1, 2, 3]
    assert store.valid_from == [0, 4]


def test_compact_with_everything_kept_is_a_no_op():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 3)
    before = store.live_keys().clone()
    store.compact(torch.ones(3, dtype=torch.bool))
    assert store.size == 3 and torch.equal(store.live_keys(), before)


def test_compact_rejects_a_wrong_mask():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 3)
    with pytest.raises(ValueError, match="keep must be a bool mask of the 3 live elements, got shape \\(2,\\)"):
        store.compact(torch.ones(2, dtype=torch.bool))


def test_usage_is_use_over_life():
    store = _store()
    store.add_objects(1, first_frame=0)
    _append(store, 2)
    store.add_usage(torch.tensor([1.0, 3.0]))
    store.add_usage(torch.tensor([1.0, 0.0]))
    assert torch.allclose(store.normalized_usage(), torch.tensor([2.0, 3.0]) / (2 + INITIAL_LIFE))
    _append(store, 1)
    assert store.normalized_usage()[2] == 0


def test_usage_is_not_counted_when_switched_off():
    store = _store(count_usage=False)
    store.add_objects(1, first_frame=0)
    _append(store, 2)
    store.add_usage(torch.ones(2))
    assert store.use_count.eq(0).all()
    with pytest.raises(RuntimeError, match="does not count usage"):
        store.normalized_usage()


def test_keep_objects_reorders_slots():
    store = _store()
    store.add_objects(2, first_frame=0)
    _append(store, 2, frame=0)
    store.add_objects(1, first_frame=1)
    _append(store, 2, frame=1, start_value=7)
    store.keep_objects([2, 0])
    store._check_invariants()
    assert store.num_objects == 2 and store.valid_from == [2, 0] and store.first_frame == [1, 0]
    assert store.live_values()[2:, 0].eq(7).all() and store.live_values()[:2, 0].eq(0).all()


def test_store_argument_errors():
    with pytest.raises(ValueError, match="capacity of at least 1 element, got 0"):
        _store(capacity=0)
    store = _store()
    store.add_objects(2, first_frame=0)
    with pytest.raises(ValueError, match="values have 1 object columns, the store has 2 slots"):
        store.append(torch.zeros(1, 3), torch.ones(1), None, torch.zeros(1, 1, 4), 0)


# ----------------------------------------------------------------------------------------------- MemoryManager
def _manager(num_objects=2, *, count_long_term_usage=True, dtype=torch.float32, **overrides):
    settings = dict(max_working_frames=4, min_working_frames=2, num_prototypes=4, max_long_term_elements=10, top_k=5)
    settings.update(overrides)
    manager = MemoryManager(
        InferenceConfig(**settings), model_config=ModelConfig(), hidden_dim=8,
        count_long_term_usage=count_long_term_usage,
    )
    manager.add_objects(num_objects)
    manager.initialize(FEATURE_SIZE, key_dim=KEY_DIM, value_dim=VALUE_DIM, device=torch.device("cpu"), dtype=dtype)
    return manager


def _frame(generator, num_objects, scale=1.0):
    key = scale * torch.randn(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
    shrinkage = 1 + torch.rand(1, 1, *FEATURE_SIZE, generator=generator)
    selection = torch.rand(1, KEY_DIM, *FEATURE_SIZE, generator=generator)
    value = torch.randn(1, num_objects, VALUE_DIM, *FEATURE_SIZE, generator=generator)
    return key, shrinkage, selection, value


def _write_and_read(manager, generator, frames):
    for _ in range(frames):
        key, shrinkage, selection, value = _frame(generator, manager.num_objects)
        manager.read(key, selection)
        manager.add_memory(key, shrinkage, selection, value)
        for store in manager._stores():
            store._check_invariants()


def test_long_term_usage_decision_follows_the_original():
    defaults = InferenceConfig()
    assert not resolve_long_term_count_usage(defaults, 60)
    assert resolve_long_term_count_usage(defaults, 391) and not resolve_long_term_count_usage(defaults, 390)
    assert resolve_long_term_count_usage(defaults, None)
    assert not resolve_long_term_count_usage(InferenceConfig(long_term_count_usage="off"), 10_000)
    assert resolve_long_term_count_usage(InferenceConfig(long_term_count_usage="on"), 1)
    assert not resolve_long_term_count_usage(InferenceConfig(enable_long_term=False, long_term_count_usage="on"), 1)


def test_consolidation_keeps_the_first_frame_and_the_newest_frames():
    generator = torch.Generator().manual_seed(0)
    manager = _manager()
    frames = [_frame(generator, 2) for _ in range(4)]
    for key, shrinkage, selection, value in frames[:3]:
        manager.add_memory(key, shrinkage, selection, value)
    manager.working.add_usage(torch.arange(manager.working.size, dtype=torch.float32))  # later = more used
    manager.add_memory(*frames[3])
    working, long_term = manager.working, manager.long_term
    assert working.size == 2 * ELEMENTS and long_term.size == 4  # T_min frames; P prototypes
    assert torch.equal(working.live_keys()[:ELEMENTS], frames[0][0].flatten(2)[0].t())
    assert torch.equal(working.live_keys()[ELEMENTS:], frames[3][0].flatten(2)[0].t())
    # candidates = frames 1 and 2; the 4 most used are the last 4 elements of frame 2, in chronological order
    assert torch.equal(long_term.live_keys(), frames[2][0].flatten(2)[0].t()[2:])


def test_prototypes_without_potentiation_keep_their_own_values():
    generator = torch.Generator().manual_seed(1)
    manager = _manager(use_potentiation=False)
    frames = [_frame(generator, 2) for _ in range(4)]
    for frame in frames:
        manager.add_memory(*frame)
    candidates_values = torch.cat([value[0].flatten(2).permute(2, 0, 1) for *_, value in frames[1:3]])
    candidates_keys = torch.cat([key.flatten(2)[0].t() for key, *_ in frames[1:3]])
    for key, value in zip(manager.long_term.live_keys(), manager.long_term.live_values()):
        match = (candidates_keys == key).all(dim=1).nonzero().item()
        assert torch.equal(value, candidates_values[match])


def test_potentiated_prototypes_are_softmax_averages_of_the_candidates():
    generator = torch.Generator().manual_seed(2)
    manager = _manager()
    frames = [_frame(generator, 2) for _ in range(4)]
    for frame in frames:
        manager.add_memory(*frame)
    keys = torch.cat([key.flatten(2)[0].t() for key, *_ in frames[1:3]])
    shrinkage = torch.cat([s.flatten() for _, s, _, _ in frames[1:3]])
    selection = torch.cat([e.flatten(2)[0].t() for *_, e, _ in frames[1:3]])
    values = torch.cat([value[0].flatten(2).permute(2, 0, 1) for *_, value in frames[1:3]])
    prototype_rows = [(keys == key).all(dim=1).nonzero().item() for key in manager.long_term.live_keys()]
    similarity = get_similarity(keys.t()[None], shrinkage[None, None], keys[prototype_rows].t()[None],
                                selection[prototype_rows].t()[None])[0]
    affinity = similarity.softmax(dim=0)
    expected_values = torch.einsum("rnc,rp->pnc", values, affinity)
    assert torch.allclose(manager.long_term.live_values(), expected_values, atol=1e-5)
    assert torch.allclose(manager.long_term.live_shrinkage(), shrinkage @ affinity, atol=1e-5)


def test_random_prototypes_are_seeded():
    def prototype_keys(seed):
        generator = torch.Generator().manual_seed(3)
        manager = _manager(prototype_selection="random", seed=seed)
        for _ in range(4):
            manager.add_memory(*_frame(generator, 2))
        return manager.long_term.live_keys().clone()

    assert torch.equal(prototype_keys(0), prototype_keys(0))
    assert not torch.equal(prototype_keys(0), prototype_keys(1))


def test_pruning_removes_every_element_tied_at_the_threshold():
    manager = _manager()
    long_term = manager.long_term
    long_term.append(torch.zeros(6, KEY_DIM), torch.ones(6), None, torch.zeros(6, 2, VALUE_DIM), 0)
    long_term.add_usage(torch.tensor([0.5, 0.1, 0.1, 0.9, 0.1, 0.7]))
    manager.prune_long_term(4)  # the 2 smallest are 0.1 and 0.1, but all three 0.1 go
    long_term._check_invariants()
    assert torch.allclose(long_term.normalized_usage(), torch.tensor([0.5, 0.9, 0.7]) / (1 + INITIAL_LIFE))


def test_pruning_with_nothing_to_remove_is_a_no_op():
    manager = _manager()
    manager.long_term.append(torch.zeros(4, KEY_DIM), torch.ones(4), None, torch.zeros(4, 2, VALUE_DIM), 0)
    manager.prune_long_term(4)
    assert manager.long_term.size == 4


def test_pruning_without_usage_drops_the_oldest():
    manager = _manager(count_long_term_usage=False)
    keys = torch.arange(6, dtype=torch.float32)[:, None].expand(6, KEY_DIM)
    manager.long_term.append(keys, torch.ones(6), None, torch.zeros(6, 2, VALUE_DIM), 0)
    manager.prune_long_term(4)
    assert torch.equal(manager.long_term.live_keys()[:, 0], torch.tensor([2.0, 3.0, 4.0, 5.0]))


def test_memory_stays_bounded_with_a_late_object_and_pruning():
    generator = torch.Generator().manual_seed(4)
    manager = _manager(num_objects=1)
    _write_and_read(manager, generator, 3)
    manager.add_objects(1)  # appears on the fourth memory frame, then lives through consolidation and pruning
    for _ in range(40):
        _write_and_read(manager, generator, 1)
        assert 2 * ELEMENTS <= manager.working.size <= 3 * ELEMENTS
        assert manager.long_term.size <= 10
    assert manager.long_term.valid_from[1] < manager.long_term.size  # the late object reached long-term memory


def _dense_read(manager, key, selection, slot):
    """(readout C^v×M, usage of every live element [long-term; working]) of one object: the reference read
    (term-by-term similarity, dense top-k affinity) over the elements valid for it."""
    stores = [store for store in manager._stores() if store.size > 0]
    keys = torch.cat([store.live_keys()[store.valid_from[slot]:] for store in stores])
    shrinkage = torch.cat([store.live_shrinkage()[store.valid_from[slot]:] for store in stores])
    values = torch.cat([store.live_values()[store.valid_from[slot]:, slot] for store in stores])
    similarity = term_by_term_similarity(keys.t()[None], shrinkage[None, None], key.flatten(2), selection.flatten(2))
    memory_readout, usage = dense_top_k_read(similarity, values.t()[None], manager.config.top_k)
    return memory_readout[0], usage[0]


def test_read_equals_the_reference_read_of_each_objects_valid_elements_including_usage():
    generator = torch.Generator().manual_seed(5)
    manager = _manager(num_objects=1)
    _write_and_read(manager, generator, 5)  # long-term memory engaged
    manager.add_objects(1)
    _write_and_read(manager, generator, 2)  # the late object has 2 working frames only
    assert manager.long_term.size > 0 and manager.working.valid_from[1] > 0
    key, _, selection, _ = _frame(generator, 2)
    use_before = [store.use_count[: store.size].clone() for store in manager._stores()]
    memory_readout = manager.read(key, selection)[0].flatten(2)
    usage = torch.cat([store.use_count[: store.size] - before for store, before in zip(manager._stores(), use_before)])
    for slot in range(2):
        expected_readout, expected_usage = _dense_read(manager, key, selection, slot)
        assert torch.allclose(memory_readout[slot], expected_readout, atol=1e-5)
        if slot == 0:  # the object that reads every element counts usage
            assert torch.allclose(usage, expected_usage, atol=1e-5)


def test_read_with_fewer_elements_than_top_k_and_very_negative_similarities_is_finite():
    generator = torch.Generator().manual_seed(7)
    manager = _manager(top_k=30)
    key, shrinkage, selection, value = _frame(generator, 2, scale=100.0)
    manager.add_memory(key, shrinkage, selection, value)
    memory_readout = manager.read(-key, selection)  # similarities far below −100, 6 < k elements
    assert torch.isfinite(memory_readout).all()


def test_object_without_memory_reads_zeros_and_removal_keeps_the_rest():
    generator = torch.Generator().manual_seed(8)
    manager = _manager()
    _write_and_read(manager, generator, 2)
    manager.add_objects(1)
    key, _, selection, _ = _frame(generator, 3)
    before = manager.read(key, selection)
    assert before[0, 2].eq(0).all()
    manager.keep_objects(SlotRemap((2, 1)))
    assert manager.num_objects == 2 and manager.sensory.shape[1] == 2
    assert torch.allclose(manager.read(key, selection)[0, 1], before[0, 1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_counters_stay_float32_and_reads_stay_close(dtype, usage_recount):
    """Half-precision stores (as under AMP) through reads, consolidation, potentiation and pruning: the usage each
    read computes equals a float64 recount to 1e-6, usage and life counts are float32, shrinkage is stored
    float32, and the readout stays within half-precision rounding of the float32 run.

    Mutations checked: `top_k_readout` summing usage with a half-precision scatter_add_ (weights and zeros in
    the autocast dtype) fails the recount; the store keeping shrinkage in the key dtype fails the shrinkage dtype."""
    def run(store_dtype, autocast):
        generator = torch.Generator().manual_seed(9)
        manager = _manager(dtype=store_dtype)
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            for _ in range(12):  # consolidates 4 times, prunes from the third
                key, shrinkage, selection, value = (tensor.to(store_dtype) for tensor in _frame(generator, 2))
                manager.read(key, selection)
                manager.add_memory(key, shrinkage, selection, value)
            key, _, selection, _ = (tensor.to(store_dtype) for tensor in _frame(generator, 2))
            return manager, manager.read(key, selection).float()

    manager, half_readout = run(dtype, True)
    _, exact_readout = run(torch.float32, False)
    assert usage_recount.reads > 0 and usage_recount.counter_updates > 0
    assert usage_recount.worst_usage_error < 1e-6
    for store in manager._stores():
        store._check_invariants()  # float32 use and life counts
        assert store.keys.dtype == dtype and torch.isfinite(store.normalized_usage()).all()
        assert store.shrinkage.dtype == torch.float32
    assert manager.long_term.size > 0 and torch.isfinite(half_readout).all()
    # Readouts have mean |x| 0.42. Measured mean |Δ| 5.0e-3 (bfloat16, 8 mantissa bits) and 7.3e-4 (float16, 11
    # bits), max |Δ| 3.3e-2 and 5.2e-3; bounds with 4× and 3× margin above bfloat16's. A float16 usage count or a
    # broken consolidation moves the readout by O(0.1–1).
    difference = (half_readout - exact_readout).abs()
    assert float(difference.mean()) < 2e-2 and float(difference.max()) < 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_under_autocast_shrinkage_is_stored_float32_and_an_equal_key_reads_finitely(dtype):
    """Shrinkage is written to both stores in float32 (not rounded to the key dtype), and a query equal to a stored
    key whose shrinkage is beyond float16's 65504 reads a finite value.

    Mutation checked: the store allocating shrinkage in the key dtype (the old rule) fails the exact comparison
    (both dtypes) and, in float16, gives inf shrinkage and a NaN readout (0 · inf)."""
    generator = torch.Generator().manual_seed(4)
    manager = _manager(dtype=dtype, top_k=1)
    written = []
    with torch.autocast("cpu", dtype=dtype):
        for _ in range(6):  # consolidates once: potentiated prototype shrinkage reaches long-term memory
            key, shrinkage, selection, value = _frame(generator, 2)
            manager.add_memory(key.to(dtype), shrinkage, selection.to(dtype), value.to(dtype))
            written.append(shrinkage.flatten())
        for store in manager._stores():
            assert store.shrinkage.dtype == torch.float32 and store.size > 0
        newest = manager.working.live_shrinkage()[-ELEMENTS:]
        assert torch.equal(newest, written[-1])  # exact: no rounding to the key dtype
        huge = torch.full((1, 1, *FEATURE_SIZE), 1e5)  # s_i above float16's 65504
        key, _, selection, value = _frame(generator, 2)
        key = key.to(dtype)
        manager.add_memory(key, huge, selection.to(dtype), value.to(dtype))
        assert torch.equal(manager.working.live_shrinkage()[-ELEMENTS:], huge.flatten())
        memory_readout = manager.read(key, torch.ones_like(selection, dtype=dtype))  # the query equals the key
    assert torch.isfinite(memory_readout).all()
