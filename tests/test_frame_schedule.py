"""The frame schedule on its own: which frames are memory frames, deep updates and decoder updates, per mode.

Each row runs `plan_frame` over a short video, moving the counters as `InferenceCore.step` does (the last memory
frame on each memory frame, the last deep update on each deep update), and compares the frame lists.

Mutations checked: the config refusing negative mem_every / deep_update_every (as before) fails the rows built with
`from_config`; `from_config` syncing deep updates only for n == -1 fails the -5 and -2 rows.
"""
import doctest

import pytest

import inference.frame_schedule as frame_schedule_module
from configs.schema import InferenceConfig
from configs.loader import load_config
from inference.frame_schedule import (DeepUpdateMode, FrameActions, FrameCounters, FrameSchedule, MemoryFrameMode,
                                      plan_frame)

EVERY_R, ANNOTATED_ONLY = MemoryFrameMode.EVERY_R, MemoryFrameMode.ANNOTATED_ONLY
WITH_MEMORY, DEFERRED = DeepUpdateMode.WITH_MEMORY_FRAMES, DeepUpdateMode.EVERY_N_DEFERRED
IMMEDIATE, NEVER = DeepUpdateMode.EVERY_N_IMMEDIATE, DeepUpdateMode.NEVER
FIRST_FRAME_ONLY = DeepUpdateMode.FIRST_FRAME_ONLY


def _simulate(schedule: FrameSchedule, num_frames: int, mask_frames=(0,)) -> dict[str, list[int]]:
    """Frame lists of a video with one object annotated on `mask_frames` (the last frame ends the video)."""
    counters = schedule.initial_counters()
    lists = {"memory": [], "deep": [], "normal": [], "extra_pass": [], "segment": []}
    for index in range(num_frames):
        actions = plan_frame(index, counters, schedule, mask_given=index in mask_frames,
                             has_unannotated_objects=index not in mask_frames, is_last_frame=index == num_frames - 1)
        for name, flag in (("memory", actions.is_memory_frame), ("deep", actions.is_deep_update),
                           ("normal", actions.is_normal_update), ("extra_pass", actions.needs_extra_value_pass),
                           ("segment", actions.need_segment)):
            if flag:
                lists[name].append(index)
        if actions.is_memory_frame:
            counters = FrameCounters(index, counters.last_deep_update_frame)
        if actions.is_deep_update:
            counters = FrameCounters(counters.last_memory_frame, index)
    return lists


ALL_BUT_LAST = list(range(11))  # of a 12-frame video

SCHEDULES = [
    # (name, schedule, mask frames, memory frames, deep-update frames, decoder-update frames, extra value passes)
    ("original defaults: r=5, deep update with memory frames, decoder update skipped there",
     FrameSchedule(EVERY_R, 5, WITH_MEMORY, -1), (0,), [0, 5, 10], [0, 5, 10], [1, 2, 3, 4, 6, 7, 8, 9], []),
    ("original --mem_every 0: every frame is a memory frame",
     FrameSchedule(EVERY_R, 0, WITH_MEMORY, -1), (0,), ALL_BUT_LAST, ALL_BUT_LAST, [], []),
    ("original --mem_every 1: every frame", FrameSchedule(EVERY_R, 1, WITH_MEMORY, -1), (0,), ALL_BUT_LAST,
     ALL_BUT_LAST, [], []),
    ("original --mem_every -3: every frame (any r below 1)", FrameSchedule(EVERY_R, -3, WITH_MEMORY, -1), (0,),
     ALL_BUT_LAST, ALL_BUT_LAST, [], []),
    ("r counts from the last memory frame, annotated frames included",
     FrameSchedule(EVERY_R, 3, WITH_MEMORY, -1), (0, 4), [0, 3, 4, 7, 10], [0, 3, 4, 7, 10],
     [1, 2, 5, 6, 8, 9], []),
    ("original --deep_update_every 3: due every 3 frames, deferred to the next memory frame",
     FrameSchedule(EVERY_R, 2, DEFERRED, 3), (0,), [0, 2, 4, 6, 8, 10], [0, 4, 8], ALL_BUT_LAST, []),
    ("original --deep_update_every 0: deep update on every memory frame and decoder update on every frame",
     FrameSchedule(EVERY_R, 5, DEFERRED, 0), (0,), [0, 5, 10], [0, 5, 10], ALL_BUT_LAST, []),
    ("original --deep_update_every -5: synced with memory frames, as -1",
     FrameSchedule.from_config(InferenceConfig(mem_every=5, deep_update_every=-5)), (0,), [0, 5, 10], [0, 5, 10],
     [1, 2, 3, 4, 6, 7, 8, 9], []),
    ("original --mem_every -1 --deep_update_every -2: every frame a memory frame and a deep update",
     FrameSchedule.from_config(InferenceConfig(mem_every=-1, deep_update_every=-2)), (0,), ALL_BUT_LAST,
     ALL_BUT_LAST, [], []),
    ("immediate every 4 frames: an extra value pass off memory frames",
     FrameSchedule(EVERY_R, 3, IMMEDIATE, 4), (0,), [0, 3, 6, 9], [0, 4, 8], ALL_BUT_LAST, [4, 8]),
    ("immediate every frame",
     FrameSchedule(EVERY_R, 5, IMMEDIATE, 1), (0,), [0, 5, 10], ALL_BUT_LAST, ALL_BUT_LAST,
     [1, 2, 3, 4, 6, 7, 8, 9]),
    ("never: only the decoder updates the sensory memory",
     FrameSchedule(EVERY_R, 5, NEVER, -1), (0,), [0, 5, 10], [], ALL_BUT_LAST, []),
    ("first frame only (the repaired 'never' row): frame 0 initialises the sensory memory, the decoder does the rest",
     FrameSchedule(EVERY_R, 5, FIRST_FRAME_ONLY, -1), (0,), [0, 5, 10], [0], ALL_BUT_LAST, []),
    ("first frame only: a later annotation is a memory frame but no deep update",
     FrameSchedule(EVERY_R, 5, FIRST_FRAME_ONLY, -1), (0, 3), [0, 3, 8], [0], ALL_BUT_LAST, []),
    ("immediate every 5 frames with r = 3 (the r rows): deep updates on 0, 5, 10 whatever r",
     FrameSchedule(EVERY_R, 3, IMMEDIATE, 5), (0,), [0, 3, 6, 9], [0, 5, 10], ALL_BUT_LAST, [5, 10]),
    ("annotated frames only: r is ignored",
     FrameSchedule(ANNOTATED_ONLY, 1, WITH_MEMORY, -1), (0, 6), [0, 6], [0, 6], [1, 2, 3, 4, 5, 7, 8, 9, 10], []),
]


@pytest.mark.parametrize("name, schedule, mask_frames, memory, deep, normal, extra_pass", SCHEDULES,
                         ids=[row[0] for row in SCHEDULES])
def test_schedule_table(name, schedule, mask_frames, memory, deep, normal, extra_pass):
    lists = _simulate(schedule, 12, mask_frames)
    assert (lists["memory"], lists["deep"], lists["normal"], lists["extra_pass"]) == (memory, deep, normal, extra_pass)


def test_the_last_frame_writes_and_updates_nothing_but_is_segmented():
    schedule = FrameSchedule(EVERY_R, 5, IMMEDIATE, 1)
    counters = FrameCounters(last_memory_frame=5, last_deep_update_frame=9)
    actions = plan_frame(10, counters, schedule, mask_given=True, has_unannotated_objects=True, is_last_frame=True)
    assert actions == FrameActions(is_memory_frame=False, need_segment=True, is_deep_update=False,
                                   is_normal_update=False)
    assert 10 not in _simulate(FrameSchedule(EVERY_R, 5, WITH_MEMORY, -1), 11)["memory"]


def test_segmentation_skips_step_zero_and_frames_annotating_every_object():
    lists = _simulate(FrameSchedule(EVERY_R, 5, WITH_MEMORY, -1), 8, mask_frames=(0, 3))
    assert lists["segment"] == [1, 2, 4, 5, 6, 7]


def test_the_repaired_never_row_deep_updates_frame_0_and_only_frame_0():
    """configs/ablations/deep_update_never.yaml on a long video with re-annotations (mutation checked: the mode
    returning no deep update at all, as the old row, fails here)."""
    schedule = FrameSchedule.from_config(load_config("ablations/deep_update_never").inference)
    assert schedule.deep_update is FIRST_FRAME_ONLY
    lists = _simulate(schedule, 200, mask_frames=(0, 50, 120))
    assert lists["deep"] == [0] and len(lists["memory"]) > 3
    assert lists["normal"] == list(range(199))  # the decoder updates the sensory memory everywhere


def test_initial_counters_make_a_deep_update_due_at_step_zero():
    assert FrameSchedule(EVERY_R, 5, DEFERRED, 7).initial_counters() == FrameCounters(0, -7)
    assert FrameSchedule(EVERY_R, 5, WITH_MEMORY, -1).initial_counters() == FrameCounters(0, 0)
    assert _simulate(FrameSchedule(EVERY_R, 1, DEFERRED, 7), 12)["deep"] == [0, 7]


def test_module_docstring_example_runs():
    results = doctest.testmod(frame_schedule_module)
    assert results.attempted > 0 and results.failed == 0


def test_the_r_rows_differ_only_in_their_memory_frames():
    """configs/ablations/sizes_mem_every_{3,5,10}: deep updates on frames 0, 5, 10, ... whatever r (mutation
    checked: the rows without `deep_update: immediate` deep-update on their memory frames and fail here)."""
    lists = {r: _simulate(FrameSchedule.from_config(load_config(f"ablations/sizes_mem_every_{r}").inference), 41)
             for r in (3, 5, 10)}
    for r, frames in lists.items():
        assert frames["deep"] == list(range(0, 40, 5)), r
        assert frames["memory"] == list(range(0, 40, r)), r
        assert frames["normal"] == list(range(40)), r
