"""What the streaming core does on each frame: memory frame or not, segment or not, which sensory update.

A pure function of the frame counters and the schedule settings (no tensors), so the whole schedule is tested
on its own (tests/test_frame_schedule.py) and `InferenceCore.step` only carries it out.

The original's rules (reference §2.3), with r = `mem_every` and n = `deep_update_every`:
- a memory frame is one at least r frames after the last memory frame (any r ≤ 1, negative included: every
  frame), or an annotated frame; never the video's last frame;
- n < 0 (the default -1): every memory frame deep-updates the sensory memory, and the decoder's normal update is
  skipped there;
- n ≥ 0: a deep update is due once n frames have passed since the last one (n = 0: always due) and runs on the
  next memory frame; the decoder updates the sensory memory on every frame (memory frames included);
- step 0 is never segmented, nor a frame whose mask re-annotates every known object; the last frame updates
  nothing.
This project's departures are named modes of `configs.schema.InferenceConfig`: `memory_frames='annotated_only'`
(memory frames on annotated frames only), `deep_update='immediate'` (a due deep update runs on its own frame, with
an extra value-encoder pass off memory frames), `deep_update='first_frame_only'` (step 0 only, as the original with
a very large n) and `deep_update='never'`.

Example (the defaults: r = 5, deep updates with memory frames):

    >>> from configs.schema import InferenceConfig
    >>> schedule = FrameSchedule.from_config(InferenceConfig())
    >>> plan_frame(5, FrameCounters(last_memory_frame=0, last_deep_update_frame=0), schedule,
    ...            mask_given=False, has_unannotated_objects=True, is_last_frame=False)
    FrameActions(is_memory_frame=True, need_segment=True, is_deep_update=True, is_normal_update=False)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from configs.schema import InferenceConfig



class MemoryFrameMode(enum.Enum):
    """Which frames are written to working memory (besides annotated ones, which always are)."""

    EVERY_R = "every_r"  # the original: r frames after the last memory frame (r ≤ 1: every frame)
    ANNOTATED_ONLY = "annotated_only"  # only annotated frames


class DeepUpdateMode(enum.Enum):
    """When the value encoder deep-updates the sensory memory."""

    WITH_MEMORY_FRAMES = "with_memory_frames"  # original n < 0: every memory frame, instead of the decoder's update
    EVERY_N_DEFERRED = "every_n_deferred"  # original n ≥ 0: due every n frames, run on the next memory frame
    EVERY_N_IMMEDIATE = "every_n_immediate"  # due every n frames, run on that frame (extra pass off memory frames)
    FIRST_FRAME_ONLY = "first_frame_only"  # step 0 only (the original with a huge n); decoder update on every frame
    NEVER = "never"  # only the decoder's normal update


@dataclass(frozen=True)
class FrameSchedule:
    """The schedule settings, resolved from a config into named modes."""

    memory_frames: MemoryFrameMode
    memory_interval: int  # r (EVERY_R only)
    deep_update: DeepUpdateMode
    deep_update_interval: int  # n (EVERY_N_* only)

    @classmethod
    def from_config(cls, config: InferenceConfig) -> FrameSchedule:
        """The named modes that `config`'s memory_frames / mem_every / deep_update / deep_update_every stand for."""
        memory_frames = MemoryFrameMode(config.memory_frames)
        if config.deep_update == "never":
            deep_update = DeepUpdateMode.NEVER
        elif config.deep_update == "first_frame_only":
            deep_update = DeepUpdateMode.FIRST_FRAME_ONLY
        elif config.deep_update == "immediate":
            deep_update = DeepUpdateMode.EVERY_N_IMMEDIATE
        elif config.deep_update_every < 0:  # the original's test: any negative n syncs with memory frames
            deep_update = DeepUpdateMode.WITH_MEMORY_FRAMES
        else:
            deep_update = DeepUpdateMode.EVERY_N_DEFERRED
        return cls(memory_frames, config.mem_every, deep_update, config.deep_update_every)

    def initial_counters(self) -> FrameCounters:
        """The counters of a fresh video: a deep update is due at step n (the original's −n start)."""
        counting = self.deep_update in (DeepUpdateMode.EVERY_N_DEFERRED, DeepUpdateMode.EVERY_N_IMMEDIATE)
        return FrameCounters(last_memory_frame=0,
                             last_deep_update_frame=-self.deep_update_interval if counting else 0)


@dataclass(frozen=True)
class FrameCounters:
    """The frame indices the schedule counts from (steps since the first annotation)."""

    last_memory_frame: int
    last_deep_update_frame: int


@dataclass(frozen=True)
class FrameActions:
    """What to do on one frame.

    is_memory_frame: encode the frame's value and write it to working memory (needs the key's shrinkage).
    need_segment: read memory and decode (otherwise the frame's masks come only from its annotation).
    is_deep_update: the value encoder deep-updates the sensory memory on this frame (on a memory frame in its
        value encoding; off memory frames, only in the immediate mode, with an extra value-encoder pass).
    is_normal_update: the decoder updates the sensory memory (when it segments).
    """

    is_memory_frame: bool
    need_segment: bool
    is_deep_update: bool
    is_normal_update: bool

    @property
    def needs_extra_value_pass(self) -> bool:
        """A deep update off a memory frame: the value encoder runs only to update the sensory memory."""
        return self.is_deep_update and not self.is_memory_frame


def plan_frame(
    frame_index: int,
    counters: FrameCounters,
    schedule: FrameSchedule,
    *,
    mask_given: bool,
    has_unannotated_objects: bool,
    is_last_frame: bool,
) -> FrameActions:
    """The actions of step `frame_index` (0 = the first annotated frame).

    Args:
        frame_index: the step, counted from the first annotated frame.
        counters: the last memory and deep-update steps (see `FrameSchedule.initial_counters`).
        schedule: the resolved settings.
        mask_given: the frame carries an annotation.
        has_unannotated_objects: some tracked object is not annotated on this frame (so it must be segmented).
        is_last_frame: the video's last frame (writes and updates nothing, as the original).
    Returns:
        the frame's `FrameActions`; the caller moves the counters to `frame_index` when it writes memory or
        deep-updates.
    """
    if is_last_frame:
        return FrameActions(False, frame_index > 0 and has_unannotated_objects, False, False)
    if schedule.memory_frames is MemoryFrameMode.EVERY_R:
        memory_frame_due = frame_index - counters.last_memory_frame >= schedule.memory_interval
    else:
        memory_frame_due = False
    is_memory_frame = memory_frame_due or mask_given
    need_segment = frame_index > 0 and has_unannotated_objects
    mode = schedule.deep_update
    deep_update_due = frame_index - counters.last_deep_update_frame >= schedule.deep_update_interval
    if mode is DeepUpdateMode.WITH_MEMORY_FRAMES:
        return FrameActions(is_memory_frame, need_segment, is_memory_frame, not is_memory_frame)
    if mode is DeepUpdateMode.EVERY_N_DEFERRED:
        is_deep_update = deep_update_due and is_memory_frame
    elif mode is DeepUpdateMode.EVERY_N_IMMEDIATE:
        is_deep_update = deep_update_due
    elif mode is DeepUpdateMode.FIRST_FRAME_ONLY:
        is_deep_update = frame_index == 0 and is_memory_frame
    else:
        is_deep_update = False
    return FrameActions(is_memory_frame, need_segment, is_deep_update, True)
