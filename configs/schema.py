"""The typed configuration schema: every default of the project, in one place.

Sections:
- `model`: switches that change the network's weights or its memory-reading maths (recorded in checkpoint
  sidecars, since a plain state_dict cannot say whether selection or shrinkage was trained).
- `inference`: the per-frame algorithm and memory budgets of the streaming core (paper section 3).
- `eval`: benchmark reading, output writing and reporting of `eval.py`.
- `train`: the training recipe (stages 0-3), data roots and logging.

YAML presets in `configs/` hold only overrides of these defaults (see `configs/loader.py`). Paper symbols appear
in the comments: T_max, T_min, LT_max, P (prototypes), r (memory interval), k (top-k).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, Optional


SimilarityMode = Literal["l2", "dot"]


@dataclass(frozen=True)
class MemoryReading:
    """How a query frame reads memory: the similarity and its two XMem terms (paper eq. 4).

    One object carries these switches from the config to every reader (`model.memory_util.get_similarity`, the
    training read `XMem.read_memory` through `ClipUnroller`, the inference `MemoryManager`); checkpoint sidecars
    (`configs/sidecar.py`) and train.py's model switches list its fields. Adding a reading switch: a field here,
    its maths in `model/memory_util.py`, and an ablation YAML row that sets it under `model:`.
    """

    similarity: SimilarityMode = "l2"  # negative squared distance (XMem, STCN) or dot product (STM)
    use_shrinkage: bool = True  # scale each memory element's similarity by its shrinkage s_i (paper eq. 4)
    use_selection: bool = True  # weight key channels by the query's selection e_j (paper eq. 4)

    @property
    def uses_every_key_projection_output(self) -> bool:
        """Whether the read uses both the shrinkage and the selection the key projection computes (if not, their
        weights get no gradient, and DDP must look for unused parameters)."""
        return self.use_shrinkage and self.use_selection


@dataclass(frozen=True)
class NetworkShape:
    """The network's dims and input channels. The dims are normally read from a checkpoint's weights; these values
    are used for networks built from scratch."""

    key_dim: int = 64  # C^k, channels of keys and selection
    value_dim: int = 512  # C^v, channels of memory values
    hidden_dim: int = 64  # C^h, channels of the sensory memory; 0 = a model without sensory memory
    single_object: bool = False  # stage-0 models: value encoder sees [RGB, mask] (4 channels) instead of 5


@dataclass(frozen=True)
class ModelConfig(MemoryReading, NetworkShape):
    """The `model:` section: the network's shape (`NetworkShape`), then the memory reading it was trained with
    (`MemoryReading`), as flat keys (`model.use_selection`); `reading` is the reading switches alone."""

    @property
    def reading(self) -> MemoryReading:
        """The memory-reading switches of this model, as the one object every reader takes."""
        return MemoryReading(**{item.name: getattr(self, item.name) for item in fields(MemoryReading)})


@dataclass(frozen=True)
class InferenceConfig:
    """The streaming per-frame algorithm and its memory budgets. Defaults are the paper's."""

    top_k: Optional[int] = 30  # k: each query pixel reads its k most similar memory elements; null = all
    # r, the original's --mem_every: a working-memory frame is written once r frames have passed since the last one
    # (any r ≤ 1, negative included: every frame) and on every annotated frame.
    mem_every: int = 5
    # every_r: as the original (above); annotated_only: memory frames only where a mask is given (r is ignored).
    memory_frames: Literal["every_r", "annotated_only"] = "every_r"
    # n, the original's --deep_update_every: n < 0 (e.g. -1) = the value encoder deep-updates the sensory memory on
    # every memory frame, where it replaces the decoder's update; n >= 0 = a deep update is due once n frames have
    # passed since the last one (0: always due) and runs on the next memory frame, on top of the decoder's update on
    # every frame.
    deep_update_every: int = -1
    # on_memory_frames: as the original (above); immediate: a due deep update (n >= 0) runs on its own frame, with an
    # extra value-encoder pass off memory frames (n = 1: the paper's "deep update every frame"); first_frame_only: the
    # deep update initialises the sensory memory from the annotation on step 0 and never runs again, the decoder
    # updates it on every frame (the original with a very large n); never: only the decoder's update changes the
    # sensory memory, which starts from zero.
    deep_update: Literal["on_memory_frames", "immediate", "first_frame_only", "never"] = "on_memory_frames"
    enable_long_term: bool = True  # false: unbounded working memory, never consolidated (STCN-like)
    # Bounded baselines (with enable_long_term false): working memory alone, its oldest frames dropped to stay within
    # max_working_frames (T_max frames) or xmem_elements (T_max·h·w + LT_max elements, as many as the full XMem's
    # working and long-term memory together, in whole frames); off: unbounded, as the original's --disable_long_term.
    working_memory_bound: Literal["off", "max_working_frames", "xmem_elements"] = "off"
    # With a bound: the permanent annotation frames (frame 0 included) are never dropped (true), or are dropped like
    # any other frame when they are the oldest (false).
    bound_keeps_annotations: bool = True
    min_working_frames: int = 5  # T_min: working memory keeps this many frames after a consolidation
    max_working_frames: int = 10  # T_max: working memory is consolidated when it reaches this many frames
    max_long_term_elements: int = 10000  # LT_max: long-term memory is pruned by usage to stay within this
    num_prototypes: int = 128  # P: prototypes made from each consolidation
    # Whether long-term elements count their usage (needed for pruning). The original decides per video:
    # on iff num_frames / (T_max - T_min) * P >= LT_max, num_frames counting every frame of the video (those before
    # the first annotation too). `auto` does that when the video length is known, else on.
    long_term_count_usage: Literal["auto", "on", "off"] = "auto"
    prototype_selection: Literal["usage", "random"] = "usage"  # ablation: random candidates as prototypes
    use_potentiation: bool = True  # ablation off: prototypes keep their own values instead of attending
    use_sensory_memory: bool = True  # ablation off: the hidden state is kept at zero
    use_amp: Literal["auto", "on", "off"] = "auto"  # autocast: auto = on for CUDA, off elsewhere
    # Exact, optional accelerations of the network (model/acceleration.py); outputs change only by float rounding.
    channels_last: bool = False  # channels-last (NHWC) convolution weights and features; often faster on GPU
    compile_network: bool = False  # torch.compile the encoders and decoder; the first frame of each size compiles
    seed: int = 0  # random prototype selection draws from this
    # Annotation memory: the memory frame that introduces objects (frame 0's annotation, and a later frame whose
    # mask adds objects) stays in working memory while one of its objects is tracked, never consolidated. At most
    # max_permanent_frames such frames (and never more than T_max - T_min) stay, frame 0's always among them: beyond
    # that the oldest later introducing frame is consolidated like any other frame, so working memory stays bounded.
    # permanent_annotations false keeps only the video's first memory frame (the original's rule: a late object's
    # annotation frame is consolidated).
    permanent_annotations: bool = True
    max_permanent_frames: int = 3  # ≥ 1; frame 0 counts as one and is never the one dropped

    def __post_init__(self) -> None:
        """Range checks, so that a bad value fails where the config is loaded (one line naming the key)."""
        problem = _inference_problem(self)
        if problem:
            raise ValueError(problem)


def _inference_problem(config: InferenceConfig) -> str | None:
    """The first out-of-range setting of `config`, as a one-line message naming its key, or None."""
    if config.deep_update == "immediate" and config.deep_update_every < 0:
        return (f"config key 'inference.deep_update': 'immediate' needs inference.deep_update_every ≥ 0 (the frames "
                f"between deep updates), got {config.deep_update_every}")
    if config.working_memory_bound != "off" and config.enable_long_term:
        return (f"config key 'inference.working_memory_bound': {config.working_memory_bound!r} bounds working memory "
                "alone; set inference.enable_long_term=false with it (or working_memory_bound=off)")
    if config.working_memory_bound != "off" and config.max_working_frames < 2:
        return (f"config key 'inference.max_working_frames': got {config.max_working_frames}, a bounded working "
                "memory needs ≥ 2 frames (the annotation and the newest frame)")
    if config.top_k is not None and config.top_k < 1:
        return f"config key 'inference.top_k': got {config.top_k}, expected ≥ 1 (or null for all elements)"
    if config.enable_long_term and not 1 <= config.min_working_frames < config.max_working_frames:
        return (f"config keys 'inference.min_working_frames' and 'inference.max_working_frames': need 1 ≤ "
                f"min_working_frames < max_working_frames, got {config.min_working_frames} and "
                f"{config.max_working_frames}")
    if config.enable_long_term and not 1 <= config.num_prototypes <= config.max_long_term_elements:
        return (f"config keys 'inference.num_prototypes' and 'inference.max_long_term_elements': need 1 ≤ "
                f"num_prototypes ≤ max_long_term_elements, got {config.num_prototypes} and "
                f"{config.max_long_term_elements}")
    if config.max_permanent_frames < 1:
        return (f"config key 'inference.max_permanent_frames': got {config.max_permanent_frames}, expected ≥ 1 "
                "(frame 0's annotation always stays in working memory)")
    return None


NATIVE_EVAL_SIZE = -1  # eval.size meaning "do not resize"
MIN_EVAL_SIZE = 16  # the network's stride: a smaller shorter side leaves less than one feature pixel


@dataclass(frozen=True)
class EvalConfig:
    """What `eval.py` reads, writes and reports."""

    model: str = "./saves/XMem.pth"  # checkpoint to evaluate
    dataset: Literal["D16", "D17", "Y18", "Y19", "LV1", "LV3", "LVOS1", "LVOS2", "G"] = "D17"
    split: Literal["val", "test"] = "val"
    output: Optional[str] = None  # default: ../output/<dataset>_<split>
    d16_path: str = "../DAVIS/2016"
    d17_path: str = "../DAVIS/2017"
    y18_path: str = "../YouTube2018"
    y19_path: str = "../YouTube"
    lv_path: str = "../long_video_set"
    lvos_path: str = "../LVOS"
    generic_path: Optional[str] = None
    size: int = 480  # shorter side the frames are resized to; -1 = native resolution
    save_all: bool = False  # YouTube-VOS: save every frame, not only the sparse evaluated ones
    use_all_masks: bool = False  # generic data: masks after the first frame add objects
    save_scores: bool = False  # also write per-frame probabilities for multi-scale merging
    flip: bool = False  # horizontal-flip test-time augmentation
    overwrite: bool = False  # redo videos whose outputs already exist
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    # write report.html (and its images in report/) beside the outputs, see inference/evaluation/report_page.py
    report: bool = True
    davis_compat_decay: bool = False  # reproduce the DAVIS toolkit's uint8-wrapped decay (NaN on long videos)
    io_queue_frames: int = 4  # frames read ahead of / written behind the compute (threads); 0 = no overlap
    rank_timeout_s: float = 300.0  # torchrun: a rank silent (no heartbeat) this long counts as dead; job ends
    # A video whose input masks give more objects is refused before it runs. Memory values, sensory memory and the
    # decoder run once per object, so time and memory grow linearly with it; benchmark videos have at most a few
    # dozen, while hundreds of ids usually mean an instance or class map was given as masks. Raise it knowingly.
    max_objects: int = 32

    def __post_init__(self) -> None:
        """Range checks, so that a bad value fails where the config is loaded (one line naming the key)."""
        if self.size != NATIVE_EVAL_SIZE and self.size < MIN_EVAL_SIZE:
            raise ValueError(f"config key 'eval.size': got {self.size}, expected -1 (native resolution) or a shorter "
                             f"side of at least {MIN_EVAL_SIZE} px")
        if self.max_objects < 1:
            raise ValueError(f"config key 'eval.max_objects': got {self.max_objects}, expected ≥ 1")


KNOWN_STAGES = ("0", "1", "2", "3")  # the training stages by name, `TrainConfig.stage0` .. `stage3`
# Stage 0 pre-trains on static images (no frame skip, no fine-tune phase) with the single-object network (a
# 4-channel value encoder, widened to 5 channels by the stage after it).
STATIC_STAGE = "0"


@dataclass(frozen=True)
class StageConfig:
    """Settings of one training stage. Batch sizes are global (divided across ranks)."""

    batch_size: int = 8
    iterations: int = 100_000
    finetune_iterations: int = 0  # extra iterations at the end without per-frame affine augmentation
    lr: float = 1e-5
    # "step": the original's schedule, lr times train.gamma at each of lr_steps (iterations); "cosine": lr down to 0
    # along half a cosine over the whole stage, fine-tune phase included (no lr_steps).
    lr_schedule: Literal["step", "cosine"] = "step"
    lr_steps: tuple[int, ...] = ()
    lr_warmup: int = 0  # the first lr_warmup iterations ramp the lr linearly up to the schedule's (0: as the original)
    num_frames: int = 8  # frames per training clip
    num_ref_frames: int = 3  # memory frames read per query frame
    start_warm: int = 20_000  # bootstrapped CE: plain CE before this iteration
    end_warm: int = 70_000  # bootstrapped CE: keeps the hardest 15% of pixels after this iteration
    # max_skip curriculum: frames of a clip are at most max_skip apart; skip_values[i] takes over once the
    # iteration passes skip_fractions[i] * iterations (YouTube-VOS divides max_skip by 5).
    initial_max_skip: int = 5
    skip_fractions: tuple[float, ...] = (0.1, 0.3, 0.9, 100.0)
    skip_values: tuple[int, ...] = (10, 15, 5, 5)
    # Readout schedule, a departure from the original for networks trained from a random init (configs/study.yaml,
    # issue 24): the memory readout reaches the decoder multiplied by 0 for the first readout_warmup iterations,
    # then by a factor rising linearly to 1 over the next readout_ramp iterations; and for the first
    # readout_dropout_iterations, each sample's readout is zeroed with probability readout_dropout. Both push the
    # decoder to segment from the sensory memory as well as from the readout. 0 everywhere: as the original.
    readout_warmup: int = 0
    readout_ramp: int = 0
    readout_dropout: float = 0.0
    readout_dropout_iterations: int = 0

    @property
    def total_iterations(self) -> int:
        """The stage's length: its iterations, then the fine-tune phase's."""
        return self.iterations + self.finetune_iterations


def _stage_problem(key: str, stage: StageConfig) -> str | None:
    """What is wrong with the settings of the stage at config key `key` ('train.stage3'), or None."""
    for name in ("lr_warmup", "readout_warmup", "readout_ramp", "readout_dropout_iterations"):
        if getattr(stage, name) < 0:
            return f"config key '{key}.{name}': got {getattr(stage, name)}, expected ≥ 0"
    if not 0.0 <= stage.readout_dropout < 1.0:
        return f"config key '{key}.readout_dropout': got {stage.readout_dropout}, expected a probability in [0, 1)"
    if stage.lr_schedule == "cosine" and stage.lr_steps:
        return (f"config key '{key}.lr_steps': got {list(stage.lr_steps)}, expected [] with lr_schedule cosine "
                f"(steps belong to lr_schedule step)")
    return None


def _stage0() -> StageConfig:
    return StageConfig(batch_size=16, iterations=150_000, num_frames=3, num_ref_frames=2, skip_fractions=(),
                       skip_values=())


def _stage1() -> StageConfig:
    return StageConfig(batch_size=8, iterations=250_000, lr_steps=(200_000,), skip_fractions=(0.1, 0.3, 0.8, 100.0))


def _stage2() -> StageConfig:
    return StageConfig(batch_size=8, iterations=150_000, finetune_iterations=10_000, lr_steps=(120_000,))


def _stage3() -> StageConfig:
    return StageConfig(batch_size=8, iterations=100_000, finetune_iterations=10_000, lr_steps=(80_000,))


@dataclass(frozen=True)
class DataConfig:
    """Training data roots and augmentation sizes."""

    static_root: str = "../static"
    bl_root: str = "../BL30K"
    yv_root: str = "../YouTube"
    davis_root: str = "../DAVIS"
    generic_root: Optional[str] = None  # a user's own DAVIS-layout videos for fine-tuning
    yv_subset: Optional[str] = None  # a file listing the YouTube-VOS videos to train on; null = all
    crop_size: int = 384  # training crops are crop_size x crop_size
    max_num_objects: int = 3  # objects per training clip (stage 0: 1)
    davis_multiplier: int = 5  # DAVIS is repeated this often when mixed with YouTube-VOS
    num_workers: int = 16  # total data-loading workers, divided across ranks


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe. Stage 0: static images; 1: BL30K; 2: main long; 3: main short (released model: 03)."""

    exp_id: str = "xmem"
    save_dir: str = "./saves"  # the run's files go to <save_dir>/<exp_id>/
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps; torchrun ranks use cuda:LOCAL_RANK
    stages: str = "03"
    seed: int = 14159265
    weight_decay: float = 0.05
    gamma: float = 0.1  # lr_schedule step: the lr's factor at each of a stage's lr_steps
    deep_update_prob: float = 0.2  # probability that a training frame's value encoding deep-updates the hidden
    bootstrap_final_fraction: float = 0.15  # bootstrapped CE keeps this fraction of pixels after end_warm
    use_amp: bool = True  # on CUDA only
    clip_grad_norm: Optional[float] = None  # the original does not clip
    # frozen: BatchNorm's running statistics stay fixed for the whole of training (the original: ImageNet statistics
    # for ImageNet weights); batch: BatchNorm in train mode, normalising by batch statistics and updating the running
    # ones inference uses (for trunks trained from a random init, whose activations drift far from any fixed
    # statistics as the weights learn).
    batchnorm: Literal["frozen", "batch"] = "frozen"
    # Under AMP a non-finite loss skips its step (GradScaler lowers the loss scale and retries on the next batch);
    # training aborts after this many in a row. Isolated fp16 overflows or bad batches never come close: the
    # weights do not change during skips, so 20 consecutive non-finite losses mean broken data or weights, found
    # after seconds instead of hours. float32 training raises at the first non-finite loss.
    max_nonfinite_steps: int = 20
    log_text_interval: int = 100
    log_image_interval: int = 1000
    save_network_interval: int = 25_000
    save_network_interval_finetune: int = 1000
    save_checkpoint_interval: int = 50_000
    load_network: Optional[str] = None  # initial weights (e.g. a released checkpoint for fine-tuning)
    imagenet_init: bool = True  # start both trunks from torchvision's ImageNet weights (local cache only)
    stage0: StageConfig = field(default_factory=_stage0)
    stage1: StageConfig = field(default_factory=_stage1)
    stage2: StageConfig = field(default_factory=_stage2)
    stage3: StageConfig = field(default_factory=_stage3)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        """Checks every stage, so that a bad value fails where the config is loaded (one line naming the key)."""
        for name in KNOWN_STAGES:
            problem = _stage_problem(f"train.stage{name}", self.stage(name))
            if problem:
                raise ValueError(problem)

    def stage(self, name: str) -> StageConfig:
        """The settings of stage `name` ('0'..'3').

        Raises:
            ValueError: no such stage.
        """
        if name not in KNOWN_STAGES:
            raise ValueError(f"training stage {name!r}: expected one of {', '.join(KNOWN_STAGES)}")
        return getattr(self, f"stage{name}")


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
