"""InferenceCore: schedule, memory bounds over long videos, objects added/removed, padding, errors, propagate
(with dataset/video_io.py, its reader of frame folders, video files, lists and mask files).

Long videos run on `CheapNetwork`, a stand-in with XMem's method signatures and tensor shapes whose keys and
values come from pooled pixels (the memory logic is what is under test; the real network's numerics are
checked by test_inference_golden.py). Numerical equivalence of the sparse and dense reads uses the real
recipe network.
"""
import doctest
from dataclasses import replace
from functools import partial

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dataset.video_io as video_io_module
import eval as eval_cli
import inference.inference_core as inference_core_module
from configs.schema import InferenceConfig
from inference import InferenceCore, normalize_image, propagate
from model.aggregate import aggregate
from model.network import KeyEncoding, Segmentation
from model.reference import reference_encode_value, reference_segment

HEIGHT, WIDTH = 64, 112  # 4×7 = 28 memory elements per frame
ELEMENTS_PER_FRAME = (HEIGHT // 16) * (WIDTH // 16)
SMALL_MEMORY = InferenceConfig(
    mem_every=2, min_working_frames=2, max_working_frames=4, num_prototypes=8, max_long_term_elements=40,
    long_term_count_usage="on",
)


class CheapNetwork(nn.Module):
    """XMem's interface at XMem's dims with cheap maths, recording every call (frame-level spy)."""

    hidden_dim, value_dim, key_dim = 64, 512, 64

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.key_projection = nn.Parameter(torch.randn(self.key_dim, 3, generator=generator), requires_grad=False)
        self.value_projection = nn.Parameter(torch.randn(self.value_dim, generator=generator), requires_grad=False)
        self.calls = []

    def encode_key(self, image, *, need_shrinkage=True, need_selection=True):
        self.calls.append(("encode_key", need_shrinkage, need_selection))
        pooled = F.avg_pool2d(image, 16)  # 1×3×h×w
        key = torch.einsum("kc,bchw->bkhw", self.key_projection, pooled)
        shrinkage = 1 + pooled.mean(dim=1, keepdim=True).abs() if need_shrinkage else None
        selection = torch.sigmoid(key) if need_selection else None
        f8 = F.avg_pool2d(image, 8)
        f4 = F.avg_pool2d(image, 4)
        return KeyEncoding(key, shrinkage, selection, pooled, f8, f4)

    def encode_value(self, image, f16, hidden, masks, *, is_deep_update=True):
        self.calls.append(("encode_value", masks.shape[1], is_deep_update))
        pooled_masks = F.avg_pool2d(masks, 16)  # 1×N×h×w
        value = pooled_masks[:, :, None] * self.value_projection[None, None, :, None, None]
        return value, (hidden + 1 if is_deep_update else hidden)

    def segment(self, features, readout, hidden, *, update_hidden=True, strip_background=True):
        self.calls.append(("segment", readout.shape[1], update_hidden))
        object_evidence = readout.mean(dim=2) / self.value_projection.mean()
        prob = torch.sigmoid(8 * (F.interpolate(object_evidence, scale_factor=16, mode="nearest") - 0.5))
        logits, prob = aggregate(prob, dim=1)
        return Segmentation(hidden + 1 if update_hidden else None, logits, prob)


def _frame(index, height=HEIGHT, width=WIDTH):
    """A synthetic RGB frame: a bright square drifting over a dark gradient."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = np.linspace(0, 80, width, dtype=np.uint8)[None]
    top, left = 8 + (index % 20), 10 + (2 * index) % (width - 40)
    rgb[top : top + 20, left : left + 24] = (220, 200, 40)
    return rgb


def _blob_mask(object_id, top, left, height=HEIGHT, width=WIDTH):
    mask = np.zeros((height, width), dtype=np.int64)
    mask[top : top + 16, left : left + 16] = object_id
    return mask


# ----------------------------------------------------------------------------------------------- examples
@pytest.mark.parametrize("module", [inference_core_module, video_io_module])
def test_docstring_examples_run(module):
    results = doctest.testmod(module)
    assert results.attempted > 0 and results.failed == 0


# ----------------------------------------------------------------------------------------------- schedule
def _run_schedule(config, num_frames, mask_frames=(0,)):
    network = CheapNetwork()
    core = InferenceCore(network, config, num_frames=num_frames)
    per_frame = []
    for index in range(num_frames):
        network.calls.clear()
        mask = _blob_mask(1, 20, 30) if index in mask_frames else None
        core.step(normalize_image(_frame(index)), mask, end=index == num_frames - 1)
        per_frame.append(list(network.calls))
    return per_frame


def test_default_schedule_memory_and_deep_update_frames():
    per_frame = _run_schedule(InferenceConfig(mem_every=3), 10, mask_frames=(0, 4))
    memory_frames = [i for i, calls in enumerate(per_frame) if any(call[0] == "encode_value" for call in calls)]
    assert memory_frames == [0, 3, 4, 7]  # every r frames after the last memory frame, every mask frame, not the end
    for index, calls in enumerate(per_frame):
        names = [call[0] for call in calls]
        assert names[0] == "encode_key"
        assert calls[0][1] == (index in memory_frames)  # shrinkage only for memory frames
        if index == 0:
            assert "segment" not in names  # nothing to read at step 0
        elif index == 4:
            assert "segment" not in names  # the mask re-annotates the only object
        else:
            segment = next(call for call in calls if call[0] == "segment")
            # the decoder's sensory update is skipped on deep-update (= memory) frames and on the last frame
            assert segment[2] == (index not in memory_frames and index != 9)
        for call in calls:
            if call[0] == "encode_value":
                assert call[2] is True  # deep update synchronised with memory frames


def test_deep_update_every_n_frames_is_deferred_to_memory_frames():
    per_frame = _run_schedule(InferenceConfig(mem_every=2, deep_update_every=3), 12)
    deep = [i for i, calls in enumerate(per_frame) if ("encode_value", 1, True) in calls]
    shallow = [i for i, calls in enumerate(per_frame) if ("encode_value", 1, False) in calls]
    assert deep == [0, 4, 8] and shallow == [2, 6, 10]
    for index, calls in enumerate(per_frame[1:-1], start=1):
        assert ("segment", 1, True) in calls  # not synchronised: the decoder always updates


def _schedule_lists(per_frame):
    """(memory frames, deep-update frames, decoder-update frames) from the spy's calls of each frame."""
    memory = [i for i, calls in enumerate(per_frame) if calls[0][1]]  # encode_key asked for shrinkage
    deep = [i for i, calls in enumerate(per_frame) if any(c[0] == "encode_value" and c[2] for c in calls)]
    normal = [i for i, calls in enumerate(per_frame) if any(c[0] == "segment" and c[2] for c in calls)]
    return memory, deep, normal


EVERY_FRAME_BUT_FIRST_AND_LAST = list(range(1, 11))  # the decoder does not run at step 0 (nothing to read)
ORIGINAL_FLAG_SCHEDULES = [
    # (eval.py arguments, memory frames, deep-update frames, decoder-update frames) over 12 frames, mask on frame 0
    ([], [0, 5, 10], [0, 5, 10], [1, 2, 3, 4, 6, 7, 8, 9]),
    (["--mem_every", "0"], list(range(11)), list(range(11)), []),
    (["--mem_every", "3"], [0, 3, 6, 9], [0, 3, 6, 9], [1, 2, 4, 5, 7, 8, 10]),
    (["--deep_update_every", "-1", "--mem_every", "4"], [0, 4, 8], [0, 4, 8], [1, 2, 3, 5, 6, 7, 9, 10]),
    (["--deep_update_every", "0"], [0, 5, 10], [0, 5, 10], EVERY_FRAME_BUT_FIRST_AND_LAST),
    (["--deep_update_every", "3", "--mem_every", "2"], [0, 2, 4, 6, 8, 10], [0, 4, 8], EVERY_FRAME_BUT_FIRST_AND_LAST),
    (["--deep_update_every", "7", "--mem_every", "0"], list(range(11)), [0, 7], EVERY_FRAME_BUT_FIRST_AND_LAST),
    # This project's named modes.
    (["inference.memory_frames=annotated_only", "--mem_every", "0"], [0], [0], EVERY_FRAME_BUT_FIRST_AND_LAST),
    (["inference.deep_update=never"], [0, 5, 10], [], EVERY_FRAME_BUT_FIRST_AND_LAST),
    (["inference.deep_update=immediate", "--deep_update_every", "4"], [0, 5, 10], [0, 4, 8],
     EVERY_FRAME_BUT_FIRST_AND_LAST),
]


@pytest.mark.parametrize("arguments, memory, deep, normal", ORIGINAL_FLAG_SCHEDULES,
                         ids=[" ".join(row[0]) or "defaults" for row in ORIGINAL_FLAG_SCHEDULES])
def test_original_flags_give_the_originals_schedule(arguments, memory, deep, normal):
    """eval.py's spelling of the original flags, through its parser, into the core's calls (a spy network)."""
    config = eval_cli.resolve_config(arguments).inference
    assert _schedule_lists(_run_schedule(config, 12)) == (memory, deep, normal)


# ----------------------------------------------------------------------------------------------- memory bounds
def test_memory_stays_bounded_over_300_frames():
    network = CheapNetwork()
    core = InferenceCore(network, SMALL_MEMORY)
    config = SMALL_MEMORY
    core.step(normalize_image(_frame(0)), _blob_mask(1, 20, 30))
    manager = core.memory
    first_frame_keys = manager.working.live_keys().clone()
    pointers = None
    long_term_history = [0]
    for index in range(1, 300):
        prob = core.step(normalize_image(_frame(index)))
        assert torch.isfinite(prob).all()
        working_frames = core.working_memory_elements / ELEMENTS_PER_FRAME
        if core.long_term_memory_elements > 0:
            assert config.min_working_frames <= working_frames <= config.max_working_frames
            if pointers is None:
                pointers = [buffer.data_ptr() for store in manager._stores() for buffer in store._element_buffers()]
        assert core.long_term_memory_elements <= config.max_long_term_elements
        assert torch.equal(manager.working.live_keys()[:ELEMENTS_PER_FRAME], first_frame_keys)
        if core.long_term_memory_elements != long_term_history[-1]:
            long_term_history.append(core.long_term_memory_elements)
        for store in manager._stores():
            store._check_invariants()
    assert long_term_history[:5] == [0, 8, 16, 24, 32]  # +P per consolidation until pruning starts
    assert len(long_term_history) > 8  # pruning happened many times
    assert [buffer.data_ptr() for store in manager._stores() for buffer in store._element_buffers()] == pointers
    assert manager.working.capacity == config.max_working_frames * ELEMENTS_PER_FRAME
    assert manager.long_term.capacity == config.max_long_term_elements


def test_tiny_frames_with_fewer_elements_than_top_k_and_candidates_than_prototypes():
    config = InferenceConfig(mem_every=1, long_term_count_usage="on")  # P = 128, k = 30, LT_max = 10000
    core = InferenceCore(CheapNetwork(), config)
    for index in range(40):  # 32×32 frames: 4 elements per memory frame, 20 candidates per consolidation
        rgb = _frame(index)[:32, :32]
        prob = core.step(normalize_image(rgb), _blob_mask(1, 4, 4, 32, 32) if index == 0 else None)
        assert torch.isfinite(prob).all()
    assert core.long_term_memory_elements == 7 * 20  # consolidations at memory frames 9, 14, 19, ..., 39
    assert core.working_memory_elements == 5 * 4


def test_without_long_term_memory_working_memory_grows_and_is_never_consolidated():
    config = InferenceConfig(enable_long_term=False, mem_every=1, max_working_frames=2)
    core = InferenceCore(CheapNetwork(), config)
    for index in range(12):
        core.step(normalize_image(_frame(index)), _blob_mask(1, 20, 30) if index == 0 else None)
    assert core.working_memory_elements == 12 * ELEMENTS_PER_FRAME
    assert core.long_term_memory_elements == 0 and core.memory.long_term is None
    assert core.memory.working.capacity == 16 * ELEMENTS_PER_FRAME  # doubled from T_max frames: 2, 4, 8, 16
    assert core.memory.working.selection is None and not core.memory.working.count_usage


def test_sensory_memory_ablation_keeps_it_at_zero():
    core = InferenceCore(CheapNetwork(), replace(SMALL_MEMORY, use_sensory_memory=False))
    for index in range(6):
        core.step(normalize_image(_frame(index)), _blob_mask(1, 20, 30) if index == 0 else None)
    assert core.memory.sensory.eq(0).all()
    core = InferenceCore(CheapNetwork(), SMALL_MEMORY)
    for index in range(6):
        core.step(normalize_image(_frame(index)), _blob_mask(1, 20, 30) if index == 0 else None)
    assert core.memory.sensory.gt(0).all()


# ----------------------------------------------------------------------------------------------- objects
def test_objects_added_late_and_removed_with_consolidation_and_pruning():
    core = InferenceCore(CheapNetwork(), replace(SMALL_MEMORY, mem_every=1), num_frames=200)
    appear = {1: 0, 5: 7, 255: 40}
    seen_ids = set()
    for index in range(200):
        mask = None
        for object_id, frame in appear.items():
            if frame == index:
                mask = _blob_mask(object_id, 20 + index % 30, 10 + index % 60)
        if index == 120:
            core.remove_objects([5])
        prob = core.step(normalize_image(_frame(index)), mask, end=index == 199)
        expected_ids = [object_id for object_id, frame in appear.items() if frame <= index]
        if index >= 120:
            expected_ids.remove(5)
        assert core.object_ids == expected_ids
        assert prob.shape == (len(expected_ids) + 1, HEIGHT, WIDTH)
        assert torch.isfinite(prob).all() and torch.allclose(prob.sum(dim=0), torch.ones(HEIGHT, WIDTH), atol=1e-5)
        seen_ids |= set(core.prob_to_mask(prob).unique().tolist())
        if index == 40:
            assert (core.prob_to_mask(prob) == 255).any()
        assert core.long_term_memory_elements <= SMALL_MEMORY.max_long_term_elements
        for store in core.memory._stores():
            store._check_invariants()
            assert store.num_objects == len(expected_ids)
    assert seen_ids <= {0, 1, 5, 255}
    assert core.memory.long_term.valid_from[core.object_ids.index(255)] < core.long_term_memory_elements


def test_reannotating_a_known_object_replaces_its_prediction_only():
    core = InferenceCore(CheapNetwork(), SMALL_MEMORY)
    two_objects = _blob_mask(1, 10, 10) + _blob_mask(2, 40, 60)
    core.step(normalize_image(_frame(0)), two_objects)
    core.step(normalize_image(_frame(1)))
    prob = core.step(normalize_image(_frame(2)), _blob_mask(2, 30, 80))
    assert (core.prob_to_mask(prob)[30:46, 80:96] == 2).all()
    assert (core.prob_to_mask(prob)[40:56, 60:76] != 2).all()  # object 2's old place is no longer object 2


def test_frames_before_the_first_mask_are_background_and_not_counted():
    network = CheapNetwork()
    core = InferenceCore(network, InferenceConfig(mem_every=2))
    prob = core.step(normalize_image(_frame(0)))
    assert prob.shape == (1, HEIGHT, WIDTH) and prob.eq(1).all() and not network.calls
    core.step(normalize_image(_frame(1)), _blob_mask(3, 20, 20))
    core.step(normalize_image(_frame(2)))
    network.calls.clear()
    core.step(normalize_image(_frame(3)))  # step 2 after the first mask: a memory frame
    assert any(call[0] == "encode_value" for call in network.calls)


def test_soft_masks_with_ids_and_clear_memory():
    core = InferenceCore(CheapNetwork(), SMALL_MEMORY)
    soft = torch.zeros(2, HEIGHT, WIDTH)
    soft[0, :20, :20] = 0.9
    soft[1, 40:, 80:] = 0.7
    prob = core.step(normalize_image(_frame(0)), soft, objects=[1000, 7])
    assert core.object_ids == [1000, 7] and prob.shape == (3, HEIGHT, WIDTH)
    assert (core.prob_to_mask(prob)[:20, :20] == 1000).all()
    core.clear_memory()
    assert core.working_memory_elements == 0 and core.object_ids == [1000, 7]
    assert core.step(normalize_image(_frame(1)))[0].eq(1).all()


# ----------------------------------------------------------------------------------------------- padding
def test_padding_splits_floor_half_before_and_outputs_input_size():
    network = CheapNetwork()
    seen = []
    original = network.encode_key

    def spy(image, **kwargs):
        seen.append(image)
        return original(image, **kwargs)

    network.encode_key = spy
    core = InferenceCore(network, InferenceConfig())
    rgb = np.full((50, 70, 3), 200, dtype=np.uint8)  # pads 14 rows (7 + 7) and 10 columns (5 + 5)
    mask = np.zeros((50, 70), dtype=np.int64)
    mask[:, :3] = 4
    prob = core.step(normalize_image(rgb), mask)
    padded = seen[0][0]
    assert padded.shape == (3, 64, 80)
    assert padded[:, :7].eq(0).all() and padded[:, 57:].eq(0).all() and padded[:, 7:57, 5:75].ne(0).all()
    assert prob.shape == (2, 50, 70)
    assert torch.equal(core.prob_to_mask(prob), torch.from_numpy(mask))

    odd = InferenceCore(CheapNetwork(), InferenceConfig())
    odd.step(normalize_image(np.zeros((49, 71, 3), dtype=np.uint8)), np.ones((49, 71), dtype=np.int64))
    assert odd.step(normalize_image(np.zeros((49, 71, 3), dtype=np.uint8))).shape == (2, 49, 71)


# ----------------------------------------------------------------------------------------------- numerics
def test_a_video_through_the_optimised_and_the_reference_network_paths_agree(recipe_network, monkeypatch):
    """End to end over consolidation: the core with the network's fast paths vs. model/reference.py's."""
    config = InferenceConfig(mem_every=1, min_working_frames=2, max_working_frames=3, num_prototypes=8,
                             max_long_term_elements=20, long_term_count_usage="on")

    def run():
        core = InferenceCore(recipe_network, config)
        probs = []
        for index in range(9):
            mask = _blob_mask(1, 12, 20) + _blob_mask(2, 36, 70) if index == 0 else None
            probs.append(core.step(normalize_image(_frame(index)), mask))
        assert core.long_term_memory_elements > 0
        return torch.stack(probs)

    optimised = run()
    monkeypatch.setattr(recipe_network, "encode_value", partial(reference_encode_value, recipe_network))
    monkeypatch.setattr(recipe_network, "segment", partial(reference_segment, recipe_network))
    assert torch.allclose(optimised, run(), atol=1e-4)


def test_amp_setting_resolves_per_device():
    assert not InferenceCore(CheapNetwork(), InferenceConfig(use_amp="auto")).use_amp
    assert InferenceCore(CheapNetwork(), InferenceConfig(use_amp="on")).use_amp


# ----------------------------------------------------------------------------------------------- propagate
def test_propagate_over_a_folder_a_list_and_a_video(tmp_path):
    from PIL import Image

    frames = [_frame(index) for index in range(5)]
    frame_folder = tmp_path / "frames"
    frame_folder.mkdir()
    for index, rgb in enumerate(frames):
        Image.fromarray(rgb).save(frame_folder / f"{index:05d}.png")
    first_mask = _blob_mask(9, 20, 30)
    mask_path = tmp_path / "first.png"
    Image.fromarray(first_mask.astype(np.uint8), mode="L").save(mask_path)
    video_path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (WIDTH, HEIGHT))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()

    folder = list(propagate(CheapNetwork(), frame_folder, mask_path, SMALL_MEMORY))
    listed = list(propagate(CheapNetwork(), frames, first_mask, SMALL_MEMORY))
    video = list(propagate(CheapNetwork(), video_path, first_mask, SMALL_MEMORY))
    for results in (folder, listed, video):
        assert [index for index, _, _ in results] == list(range(5))
        assert all(prob.shape == (2, HEIGHT, WIDTH) and mask.shape == (HEIGHT, WIDTH) for _, prob, mask in results)
        assert torch.equal(results[0][2], torch.from_numpy(first_mask))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folder, listed))


def test_propagate_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image files"):
        list(propagate(CheapNetwork(), tmp_path, np.ones((4, 4), dtype=np.int64), SMALL_MEMORY))
    with pytest.raises(FileNotFoundError, match="not a frame folder or a video file"):
        list(propagate(CheapNetwork(), tmp_path / "missing.mp4", np.ones((4, 4), dtype=np.int64), SMALL_MEMORY))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="OpenCV cannot open this video"):
        list(propagate(CheapNetwork(), tmp_path / "broken.mp4", np.ones((4, 4), dtype=np.int64), SMALL_MEMORY))
    from PIL import Image

    height, width = _frame(0).shape[:2]
    Image.new("RGB", (width, height), (1, 2, 3)).save(tmp_path / "rgb_mask.png")
    with pytest.raises(ValueError, match="rgb_mask.png is an RGB image with colours that are not in the DAVIS palette"):
        list(propagate(CheapNetwork(), [_frame(0)], tmp_path / "rgb_mask.png", SMALL_MEMORY))


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "image, mask, objects, error, message",
    [
        (torch.zeros(HEIGHT, WIDTH), None, None, ValueError, "step expects a float 3×H×W normalised image"),
        (torch.zeros(3, HEIGHT, WIDTH, dtype=torch.uint8), None, None, ValueError, "use normalize_image"),
        (None, None, [1], ValueError, "objects=\\[1\\] given without a mask"),
        (None, np.zeros((HEIGHT, WIDTH), dtype=np.float32), None, TypeError, "integer index mask of object ids, got"),
        (None, np.zeros((10, 10), dtype=np.int64), None, ValueError,
         "mask given on frame 0 is 10x10 but its frame is 112x64; a mask "
         "must match its frame \\(within 4 px\\)"),
        (None, torch.zeros(2, HEIGHT, WIDTH), None, ValueError, "soft masks \\(2×H×W\\) need objects="),
        (None, torch.zeros(2, HEIGHT, WIDTH), [1], ValueError, "expected 1×64×112 \\(one mask per id"),
        (None, torch.zeros(2, HEIGHT, WIDTH), [3, 3], ValueError, "object ids in a mask repeat: \\[3, 3\\]"),
        (None, torch.zeros(1, HEIGHT, WIDTH), [0], ValueError, "must be positive integers \\(0 is background\\)"),
        (None, torch.zeros(1, 1, HEIGHT, WIDTH), None, ValueError, "mask must be H×W \\(index mask\\) or N×H×W"),
    ],
)
def test_step_rejects_malformed_input(image, mask, objects, error, message):
    core = InferenceCore(CheapNetwork(), InferenceConfig())
    image = normalize_image(_frame(0)) if image is None else image
    with pytest.raises(error, match=message):
        core.step(image, mask, objects)


def test_frame_size_must_not_change():
    core = InferenceCore(CheapNetwork(), InferenceConfig())
    core.step(normalize_image(_frame(0)), _blob_mask(1, 0, 0))
    with pytest.raises(ValueError, match="frame size 32×48 differs from this video's 64×112"):
        core.step(normalize_image(np.zeros((32, 48, 3), dtype=np.uint8)))


def test_normalize_image_rejects_non_rgb():
    with pytest.raises(ValueError, match="expects a uint8 H×W×3 RGB image, got dtype torch.float32"):
        normalize_image(np.zeros((4, 4, 3), dtype=np.float32))
    image = normalize_image(np.full((2, 2, 3), 255, dtype=np.uint8))
    assert torch.allclose(image[:, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(deep_update="immediate", deep_update_every=-2), r"'inference.deep_update': 'immediate' needs"),
        (dict(top_k=0), r"'inference.top_k': got 0, expected ≥ 1"),
        (dict(min_working_frames=5, max_working_frames=5), "need 1 ≤ min_working_frames < max_working_frames"),
        (dict(num_prototypes=200, max_long_term_elements=100), "need 1 ≤ num_prototypes ≤ max_long_term_elements"),
    ],
)
def test_invalid_memory_settings_are_rejected_when_the_config_is_built(overrides, message):
    with pytest.raises(ValueError, match=message):
        InferenceConfig(**overrides)


def test_remove_unknown_object_and_bad_device():
    core = InferenceCore(CheapNetwork(), InferenceConfig())
    with pytest.raises(KeyError, match="cannot remove object ids \\[4\\]"):
        core.remove_objects([4])
    with pytest.raises(ValueError, match="unknown device 'gpu0'; use auto, cpu, cuda, cuda:N or mps"):
        InferenceCore(CheapNetwork(), InferenceConfig(), device="gpu0")
